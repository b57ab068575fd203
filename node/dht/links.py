"""Framed, long-lived colony streams to many peers, and who is connected: shared by the
DHT and gossip drivers.

`StreamLinks` carries opaque frames of one protocol. Outbound, each destination
has a bounded queue and one sender task that keeps a stream open (connecting
through the peer's connection manager), writes what queued up in one batch, and
ends after `idle_s` without traffic; a full queue or an unreachable peer drops
the frames and counts them (the cores retry or time out: a DHT request times
out, gossip repairs by IHAVE/IWANT). Every new stream starts with the owner's
`opening()` frame. Inbound, a guarded handler (only admitted colony connections
reach it) splits frames and hands each, with the connection it came on, to
`on_frame`; the sender is the connection's Noise-proven key, never a claim in
the frame, so one member cannot speak for another. `on_frame` raising
`WireError` closes that stream (counted); the peer keeps running.

`ConnectionWatch` turns the gatekeeper's admissions and connection closes into
`up(peer_id, connection)` / `down(peer_id)` calls, once per peer however many
connections it has.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Protocol, TypeVar

import trio

from colonymesh.node.certs import Certificate
from colonymesh.node.errors import ColonymeshError, MalformedFrame, WireError
from colonymesh.node.peer.framing import encode_frame
from colonymesh.node.peer.peer import Peer
from colonymesh.node.transport import errors as transport_errors
from colonymesh.node.transport.connection import Connection
from colonymesh.node.transport.stream import MuxedStream
from colonymesh.node.transport.varint import decode_uvarint

log = logging.getLogger("colonymesh.node.links")

_RECEIVE_BYTES = 256 * 1024
_BATCH_MAX = 128
_HEARD_ON_MAX = 1024
_SEND_ERRORS = (
    ColonymeshError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    trio.TooSlowError,
    OSError,
)


@dataclass(slots=True)
class LinkStatistics:
    sent: int = 0
    received: int = 0
    dropped_queue_full: int = 0
    dropped_unreachable: int = 0
    refused_frames: int = 0
    streams_opened: int = 0


class StreamLinks:
    """One framed protocol over a :class:`Peer` (see the module docs)."""

    def __init__(
        self,
        peer: Peer,
        protocol: str,
        frame_bytes_max: int,
        on_frame: Callable[[Connection, bytes], None],
        *,
        opening: Callable[[], bytes] | None = None,
        queue_max: int = 256,
        connect_timeout_s: float = 3.0,
        idle_s: float = 60.0,
    ) -> None:
        self.peer = peer
        self.protocol = protocol
        self.stats = LinkStatistics()
        self._frame_bytes_max = frame_bytes_max
        self._on_frame = on_frame
        self._opening = opening
        self._queue_max = queue_max
        self._connect_timeout_s = connect_timeout_s
        self._idle_s = idle_s
        self._queues: dict[str, trio.MemorySendChannel[bytes]] = {}
        self._nursery: trio.Nursery | None = None
        self._heard_on: OrderedDict[str, Connection] = OrderedDict()

    def start(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self.peer.set_stream_handler(self.protocol, self._serve)

    def send(self, peer_id: str, payload: bytes) -> bool:
        """Queue one frame for `peer_id`; False (counted) when it had to be dropped."""
        if self._nursery is None:
            raise RuntimeError("StreamLinks.start was not called")
        frame = encode_frame(payload, self._frame_bytes_max)
        queue = self._queues.get(peer_id)
        if queue is None:
            queue, receiver = trio.open_memory_channel[bytes](self._queue_max)
            self._queues[peer_id] = queue
            self._nursery.start_soon(self._sender, peer_id, queue, receiver)
        try:
            queue.send_nowait(frame)
        except trio.WouldBlock:
            self.stats.dropped_queue_full += 1
            return False
        return True

    def queued(self) -> int:
        return sum(q.statistics().current_buffer_used for q in self._queues.values())

    async def _sender(
        self,
        peer_id: str,
        queue: trio.MemorySendChannel[bytes],
        receiver: trio.MemoryReceiveChannel[bytes],
    ) -> None:
        try:
            while True:
                with trio.move_on_after(self._idle_s):
                    unsent = await self._deliver(peer_id, [await receiver.receive()], receiver)
                    if unsent:
                        # the stream broke under the batch: most often a connection that
                        # closed while idle (the remote restarted); retry once, fresh
                        unsent = await self._deliver(peer_id, unsent, receiver)
                        self.stats.dropped_unreachable += len(unsent)
                    continue
                return  # idle: the next send starts a new sender
        finally:
            if self._queues.get(peer_id) is queue:
                del self._queues[peer_id]
            self.stats.dropped_unreachable += _drain(receiver)

    async def _deliver(
        self, peer_id: str, frames: list[bytes], receiver: trio.MemoryReceiveChannel[bytes]
    ) -> list[bytes]:
        """Open a stream and write to it until it goes idle ([]) or breaks (the unsent batch)."""
        try:
            stream = await self._open(peer_id)
        except _SEND_ERRORS as error:
            # the remote may have connected to us meanwhile (a restarted peer, a client
            # back under the same key): use that connection rather than drop the batch
            try:
                if self._live_connection(peer_id) is None:
                    raise
                stream = await self._open(peer_id)
            except _SEND_ERRORS:
                self.stats.dropped_unreachable += len(frames) + _drain(receiver)
                log.debug("%s: %s unreachable: %s", self.protocol, peer_id, error)
                return []
        connection = stream.connection
        self.stats.streams_opened += 1
        log.debug("%s: stream to %s opened on %r", self.protocol, peer_id, connection)
        opening = encode_frame(self._opening(), self._frame_bytes_max) if self._opening else b""
        batch = frames
        try:
            async with stream:
                while True:
                    while len(batch) < _BATCH_MAX:
                        try:
                            batch.append(receiver.receive_nowait())
                        except trio.WouldBlock:
                            break
                    await stream.send_all(opening + b"".join(batch))
                    self.stats.sent += len(batch)
                    opening = b""
                    batch = []
                    with trio.move_on_after(self._idle_s):
                        batch = [await receiver.receive()]
                        continue
                    return []
        except _SEND_ERRORS as error:
            log.debug("%s: stream to %s broke: %s", self.protocol, peer_id, error)
            return batch

    def _live_connection(self, peer_id: str) -> Connection | None:
        """The connection the remote last spoke to us on if still usable, else any
        admitted one: both are live on both sides, unlike a dial of ours that may still
        be in progress (or backing off) to an address the remote no longer has."""
        connection = self._heard_on.get(peer_id)
        if connection is None or connection.going_away:
            connection = self.peer.connections.connection_to(peer_id)
        if connection is None or connection.going_away:
            return None
        return connection

    async def _open(self, peer_id: str) -> MuxedStream:
        deadline = trio.current_time() + self._connect_timeout_s
        with trio.fail_after(self._connect_timeout_s):
            connection = self._live_connection(peer_id)
            if connection is None:
                connection = await self.peer.connections.connect(peer_id, deadline)
            return await connection.open_stream([self.protocol])

    async def _serve(self, stream: MuxedStream) -> None:
        connection = stream.connection
        log.debug("%s: stream from %r", self.protocol, connection)
        self._heard_on[connection.remote_peer_id] = connection
        self._heard_on.move_to_end(connection.remote_peer_id)
        while len(self._heard_on) > _HEARD_ON_MAX:
            self._heard_on.popitem(last=False)
        buffer = bytearray()
        try:
            while True:
                chunk = await stream.receive_some(_RECEIVE_BYTES)
                if not chunk:
                    return
                buffer += chunk
                offset = 0
                while (found := _next_frame(buffer, offset, self._frame_bytes_max)) is not None:
                    frame, offset = found
                    self.stats.received += 1
                    self._on_frame(connection, frame)
                del buffer[:offset]
        except WireError as error:
            self.stats.refused_frames += 1
            log.warning(
                "%s: closing a stream from %s: %s", self.protocol, connection.remote_peer_id, error
            )
        except (trio.BrokenResourceError, trio.ClosedResourceError, ColonymeshError):
            pass
        finally:
            with suppress(*_SEND_ERRORS):
                await stream.aclose()


def _next_frame(buffer: bytearray, offset: int, frame_bytes_max: int) -> tuple[bytes, int] | None:
    """The frame starting at `offset` and the offset after it, or None if incomplete."""
    try:
        decoded = decode_uvarint(buffer, offset, frame_bytes_max)
    except (transport_errors.FrameTooLarge, transport_errors.MalformedMessage) as error:
        raise MalformedFrame(f"bad frame length prefix: {error}") from None
    if decoded is None:
        return None
    length, start = decoded
    if len(buffer) - start < length:
        return None
    return bytes(buffer[start : start + length]), start + length


def _drain(queue: trio.MemoryReceiveChannel[bytes]) -> int:
    dropped = 0
    while True:
        try:
            queue.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            return dropped
        dropped += 1


class ConnectionWatch:
    """Calls `up`/`down` as admitted connections to each peer come and go."""

    def __init__(
        self,
        peer: Peer,
        up: Callable[[str, Connection], None],
        down: Callable[[str], None],
    ) -> None:
        self.peer = peer
        self._up = up
        self._down = down
        self._open: dict[str, int] = {}  # peer id -> admitted connections being watched
        self._watched: set[Connection] = set()
        self._nursery: trio.Nursery | None = None
        self._heard_on: OrderedDict[str, Connection] = OrderedDict()

    def start(self, nursery: trio.Nursery) -> None:
        """Watch the connections admitted so far and every later one."""
        self._nursery = nursery
        previous = self.peer.gatekeeper.on_admitted

        def on_admitted(connection: Connection, certificate: Certificate, seen: int) -> None:
            if previous is not None:
                previous(connection, certificate, seen)
            self._watch(connection)

        self.peer.gatekeeper.on_admitted = on_admitted
        for connection in self.peer.gatekeeper.admitted_connections():
            self._watch(connection)

    def connected(self) -> list[str]:
        return list(self._open)

    def _watch(self, connection: Connection) -> None:
        nursery = self._nursery
        if nursery is None or connection in self._watched or connection.is_closed:
            return
        self._watched.add(connection)
        peer_id = connection.remote_peer_id
        count = self._open.get(peer_id, 0)
        self._open[peer_id] = count + 1
        if count == 0:
            self._up(peer_id, connection)
        with suppress(RuntimeError):  # the nursery is closing: the peer is going away
            nursery.start_soon(self._until_closed, connection)

    async def _until_closed(self, connection: Connection) -> None:
        try:
            await connection.wait_closed()
        finally:
            self._watched.discard(connection)
            peer_id = connection.remote_peer_id
            left = self._open.get(peer_id, 1) - 1
            if left <= 0:
                self._open.pop(peer_id, None)
                self._down(peer_id)
            else:
                self._open[peer_id] = left


T = TypeVar("T")


class _TimedCore(Protocol):
    def next_deadline(self) -> float: ...


async def run_core(
    core: _TimedCore,
    inbox: trio.MemoryReceiveChannel[T],
    take: Callable[[T], None],
    tick: Callable[[float], None],
) -> None:
    """The loop every sans-I/O core runs on under trio: feed it what arrived, all of
    what is already waiting at once (one wake-up, one batch of effects), and call
    ``tick(now)`` whenever ``core.next_deadline()`` has passed."""
    while True:
        with trio.move_on_at(core.next_deadline()):
            take(await inbox.receive())
            while True:
                try:
                    take(inbox.receive_nowait())
                except trio.WouldBlock:
                    break
        now = trio.current_time()
        if core.next_deadline() <= now:
            tick(now)
