"""Serving ``/colonymesh/fs/1.0.0``: one stream is one requester's want-list conversation.

The stream is guarded (only admitted colony members reach it). A reader task
decodes frames into the :class:`~colonymesh.fs.exchange.server.ExchangeServer`
core; a sender task pulls the requester's oldest want, reads it from the chunk
store on a worker thread (verified: a corrupt block is dropped by the store and
answered DONT_HAVE, so the requester asks someone else) and writes the answer.
The next block is read while the previous one is still on the wire, so disk and
network overlap. A bad frame closes the stream, never the peer.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from dataclasses import dataclass

import trio

from colonymesh.fs.cid import Cid
from colonymesh.fs.errors import FsDecodeError, StoreError
from colonymesh.fs.exchange import messages
from colonymesh.fs.exchange.messages import BlockMessage, Message
from colonymesh.fs.exchange.server import ExchangeServer
from colonymesh.fs.store import ChunkStore
from colonymesh.node.errors import ColonymeshError, WireError
from colonymesh.node.fsnet.frames import FrameReader, frame_prefix
from colonymesh.node.transport.stream import MuxedStream

log = logging.getLogger("colonymesh.node.fsnet")

PROTOCOL_ID = "/colonymesh/fs/1.0.0"
_READ_BATCH = 16
_READ_AHEAD = 2 * _READ_BATCH
_STREAM_ERRORS = (ColonymeshError, trio.BrokenResourceError, trio.ClosedResourceError)


@dataclass(slots=True)
class ServeStatistics:
    streams: int = 0
    refused_streams: int = 0


def read_block(store: ChunkStore, cid: Cid) -> bytes | None:
    """A verified block from the store, or None (absent, or found corrupt and dropped)."""
    try:
        return store.get(cid)
    except StoreError as error:  # ChunkNotFoundError, CorruptChunkError
        if not isinstance(error, KeyError):
            log.warning("fs: serving %s: %s", cid, error)
        return None


def _read_blocks(store: ChunkStore, cids: list[Cid]) -> list[bytes | None]:
    return [read_block(store, cid) for cid in cids]


async def send_message(stream: trio.abc.SendStream, message: Message) -> None:
    """Write one frame; a block goes as prefix+header then its data (no 1 MiB concat)."""
    if isinstance(message, BlockMessage):
        head = messages.block_header(message.cid)
        await stream.send_all(frame_prefix(len(head) + len(message.data)) + head + message.data)
        return
    payload = messages.encode(message)
    await stream.send_all(frame_prefix(len(payload)) + payload)


class BlockServer:
    """Answers peers' wants from `store` on every stream of `PROTOCOL_ID`."""

    def __init__(self, store: ChunkStore, wants_per_stream_max: int = 4096) -> None:
        self.store = store
        self.core = ExchangeServer(store.has, wants_per_stream_max)
        self.stats = ServeStatistics()
        self._ids = itertools.count(1)

    async def serve(self, stream: MuxedStream) -> None:
        requester = f"{stream.connection.remote_peer_id}#{next(self._ids)}"
        self.stats.streams += 1
        wake_send, wake_receive = trio.open_memory_channel[None](1)
        ready_send, ready_receive = trio.open_memory_channel[Message](_READ_AHEAD)
        lock = trio.Lock()  # the two writers take turns on the stream
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read_loop, requester, wake_receive, ready_send)
                nursery.start_soon(self._write_loop, stream, lock, ready_receive)
                await self._receive_loop(stream, requester, lock, wake_send)
                nursery.cancel_scope.cancel()
        except* WireError as group:
            self.stats.refused_streams += 1
            log.warning("fs: closing a stream from %s: %s", requester, group.exceptions[0])
        except* FsDecodeError as group:
            self.stats.refused_streams += 1
            log.warning("fs: closing a stream from %s: %s", requester, group.exceptions[0])
        except* _STREAM_ERRORS:
            pass
        finally:
            self.core.forget(requester)
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def _receive_loop(
        self,
        stream: MuxedStream,
        requester: str,
        lock: trio.Lock,
        wake: trio.MemorySendChannel[None],
    ) -> None:
        reader = FrameReader(stream)
        while (frame := await reader.read()) is not None:
            replies = self.core.on_message(requester, messages.decode(frame))
            for reply in replies:
                async with lock:
                    await send_message(stream, reply)
            if self.core.pending(requester):
                with contextlib.suppress(trio.WouldBlock):  # already awake
                    wake.send_nowait(None)

    async def _read_loop(
        self,
        requester: str,
        wake: trio.MemoryReceiveChannel[None],
        ready: trio.MemorySendChannel[Message],
    ) -> None:
        """Read wanted blocks from disk a batch ahead of the writer: disk and wire overlap.

        Several blocks per worker-thread call: each hand-off to a thread can wait a
        whole GIL switch interval (5 ms) while the trio thread is busy encrypting,
        which, paid per 256 KiB block, capped a get at ~30 MB/s.
        """
        while True:
            cids: list[Cid] = []
            while len(cids) < _READ_BATCH and (cid := self.core.next_want(requester)) is not None:
                cids.append(cid)
            if not cids:
                await wake.receive()
                continue
            found = await trio.to_thread.run_sync(_read_blocks, self.store, cids)
            for cid, data in zip(cids, found, strict=True):
                await ready.send(self.core.answer(requester, cid, data))

    async def _write_loop(
        self, stream: MuxedStream, lock: trio.Lock, ready: trio.MemoryReceiveChannel[Message]
    ) -> None:
        async for message in ready:
            async with lock:
                await send_message(stream, message)
