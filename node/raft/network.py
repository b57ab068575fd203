"""Raft messages between server peers: one long-lived stream per pair, in each direction.

Outbound, each destination has a bounded queue and one sender task that
keeps a ``/colonymesh/raft/1.0.0`` stream open and writes length-prefixed
codec frames; when the queue is full or the peer is unreachable, messages are
dropped and counted (Raft retransmits, and dropping beats building a backlog
of stale heartbeats). Inbound, a guarded handler (only admitted colony
connections reach it) reads frames and hands them to the driver after two
checks: the remote holds the ``server`` role, and the message's ``src`` is the
peer id its Noise handshake proved, so one member can never speak Raft as
another. A bad frame closes that stream; the peer keeps running.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import trio

from colonymesh.consensus import Message
from colonymesh.node.certs import Role
from colonymesh.node.errors import ColonymeshError, WireError
from colonymesh.node.peer.framing import encode_frame, split_frame
from colonymesh.node.peer.peer import Peer
from colonymesh.node.raft import codec
from colonymesh.node.transport.stream import MuxedStream

log = logging.getLogger("colonymesh.node.raft")

PROTOCOL_ID = "/colonymesh/raft/1.0.0"
_RECEIVE_BYTES = 256 * 1024


@dataclass(slots=True)
class NetworkStatistics:
    sent: int = 0
    received: int = 0
    dropped_queue_full: int = 0
    dropped_unreachable: int = 0
    refused_frames: int = 0


class PeerRaftNetwork:
    """Carries a :class:`~colonymesh.node.raft.driver.RaftDriver`'s messages over a :class:`Peer`."""

    def __init__(
        self,
        peer: Peer,
        nursery: trio.Nursery,
        deliver: Callable[[Message], None],
        *,
        queue_max: int = 1024,
        connect_timeout_s: float = 2.0,
    ) -> None:
        self.peer = peer
        self.stats = NetworkStatistics()
        self._nursery = nursery
        self._deliver = deliver
        self._queue_max = queue_max
        self._connect_timeout_s = connect_timeout_s
        self._queues: dict[str, trio.MemorySendChannel[bytes]] = {}
        peer.host.set_stream_handler(PROTOCOL_ID, peer.gatekeeper.guard(self._serve))

    def send(self, message: Message) -> None:
        queue = self._queues.get(message.dst)
        if queue is None:
            queue, receiver = trio.open_memory_channel[bytes](self._queue_max)
            self._queues[message.dst] = queue
            self._nursery.start_soon(self._sender, message.dst, receiver)
        try:
            queue.send_nowait(encode_frame(codec.encode(message), codec.FRAME_BYTES_MAX))
        except trio.WouldBlock:
            self.stats.dropped_queue_full += 1

    async def _sender(self, peer_id: str, queue: trio.MemoryReceiveChannel[bytes]) -> None:
        backoff_s = 0.05
        while True:
            frame = await queue.receive()
            try:
                deadline = trio.current_time() + self._connect_timeout_s
                connection = await self.peer.connections.connect(peer_id, deadline)
                stream = await connection.open_stream([PROTOCOL_ID])
            except (
                ColonymeshError,
                trio.BrokenResourceError,
                trio.ClosedResourceError,
                trio.TooSlowError,
                OSError,
            ) as error:
                self.stats.dropped_unreachable += 1 + _drain(queue)
                log.debug("raft: %s unreachable: %s", peer_id, error)
                await trio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, 1.0)
                continue
            backoff_s = 0.05
            try:
                async with stream:
                    while True:
                        batch = [frame]
                        while len(batch) < 256:  # one write for what queued up meanwhile
                            try:
                                batch.append(queue.receive_nowait())
                            except trio.WouldBlock:
                                break
                        await stream.send_all(b"".join(batch))
                        self.stats.sent += len(batch)
                        frame = await queue.receive()
            except (ColonymeshError, trio.BrokenResourceError, trio.ClosedResourceError) as error:
                log.debug("raft: stream to %s broke: %s", peer_id, error)

    async def _serve(self, stream: MuxedStream) -> None:
        connection = stream.connection
        remote = connection.remote_peer_id
        certificate = self.peer.gatekeeper.certificate_of(connection)
        if certificate is None or not certificate.has_role(Role.SERVER):
            log.warning("raft: refused a stream from %s, which is not a server peer", remote)
            self.stats.refused_frames += 1
            await stream.aclose()
            return
        buffer = b""
        try:
            while True:
                chunk = await stream.receive_some(_RECEIVE_BYTES)
                if not chunk:
                    return
                buffer += chunk
                while (split := split_frame(buffer, codec.FRAME_BYTES_MAX)) is not None:
                    frame, buffer = split
                    message = codec.decode(frame)
                    if message.src != remote:
                        raise WireError(
                            f"raft message claims src {message.src}, stream is from {remote}"
                        )
                    self.stats.received += 1
                    self._deliver(message)
        except WireError as error:
            self.stats.refused_frames += 1
            log.warning("raft: closing a stream from %s: %s", remote, error)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await stream.aclose()


def _drain(queue: trio.MemoryReceiveChannel[bytes]) -> int:
    dropped = 0
    while True:
        try:
            queue.receive_nowait()
        except trio.WouldBlock:
            return dropped
        dropped += 1
