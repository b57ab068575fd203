"""Driving one :class:`~colonymesh.fs.exchange.session.ExchangeSession` over peer streams.

The driver of the fetching side, twenty-odd lines of policy around the core:

* `LoadLocal` -> the store is read on a worker thread (verified reads; a block
  the store finds corrupt is dropped by it and reported absent, so the session
  fetches it again) and each answer fed back with `on_local`;
* `SendWantList` -> frames on one ``/colonymesh/fs/1.0.0`` stream per provider,
  opened on first use by that peer's link task, which also reads the
  provider's answers (BLOCK, DONT_HAVE) into the session; a stream that
  cannot be opened, breaks or sends a bad frame removes the peer;
* `FindProviders` -> the injected provider lookup, answered with `on_providers`;
* `BlockReceived` -> queued to `PUT_WORKERS` writer tasks that put blocks into
  the store in batches of up to `_PUT_BATCH`, several batches at once (a
  batch's time is mostly waiting: fsync round trips, worker threads waiting
  for the GIL while this thread decrypts; measured 0.2-0.4 s per 8 MiB batch
  in a busy reader against 0.04 s alone), made durable with one round of concurrent
  fsyncs (the session verified each block against its CID on receipt, so the
  store is told not to hash it again; reads from the store still verify); the
  session's result is returned only once every received block is stored;
* memory stays bounded when the disk is slower than the network: once
  `store_queue_bytes_max` of received blocks wait for the store, the link
  readers stop reading, so yamux flow control holds the providers back;
* `on_stored(cids)` (optional) is called on the worker thread after each
  durable batch -- a streaming export waits on it;
* the core's `next_deadline()` arms one timer.

All calls into the core happen on the trio thread; nothing outlives `run`.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import trio

from colonymesh.fs.cid import Cid
from colonymesh.fs.errors import FsDecodeError, StoreError
from colonymesh.fs.exchange import messages
from colonymesh.fs.exchange.messages import BlockMessage, Cancel, DontHave, WantBlocks
from colonymesh.fs.exchange.session import (
    BlockReceived,
    Effect,
    ExchangeSession,
    FindProviders,
    LoadLocal,
    PeerId,
    PeerMisbehaved,
    SendWantList,
    SessionConfig,
    SessionFinished,
)
from colonymesh.fs.store import ChunkStore
from colonymesh.node.errors import ColonymeshError
from colonymesh.node.fsnet.frames import FrameReader, frame_prefix
from colonymesh.node.fsnet.serve import PROTOCOL_ID, read_block
from colonymesh.node.peer.peer import Peer
from colonymesh.node.transport.stream import MuxedStream

log = logging.getLogger("colonymesh.node.fsnet")

Providers = Callable[[Cid], Awaitable[list[str]]]

_LINK_ERRORS = (
    ColonymeshError,
    FsDecodeError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    trio.TooSlowError,
    OSError,
)
_PUT_BATCH = 32
PUT_WORKERS = 3
STORE_QUEUE_BYTES_MAX = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class FetchResult:
    ok: bool
    missing: tuple[Cid, ...]
    blocks_fetched: int
    bytes_fetched: int
    error: str
    seconds: float
    by_peer: dict[str, int]


class _Link:
    """One provider's stream: frames out through a queue, answers in to the session."""

    def __init__(self, peer_id: PeerId) -> None:
        self.peer_id = peer_id
        self.outbox_send, self.outbox = trio.open_memory_channel[bytes](math.inf)
        self.closed = False

    def close(self) -> None:
        self.closed = True
        self.outbox_send.close()


class Fetch:
    """One fetch of `roots` into `store` through `peer`, from providers `providers` finds."""

    def __init__(
        self,
        peer: Peer,
        store: ChunkStore,
        providers: Providers,
        roots: Sequence[Cid],
        config: SessionConfig,
        rng: random.Random,
        connect_timeout_s: float = 5.0,
        on_stored: Callable[[list[Cid]], None] | None = None,
        store_queue_bytes_max: int = STORE_QUEUE_BYTES_MAX,
    ) -> None:
        self.peer = peer
        self.store = store
        self.providers = providers
        self.session = ExchangeSession(roots, rng, config)
        self.connect_timeout_s = connect_timeout_s
        self._links: dict[PeerId, _Link] = {}
        self._puts_send, self._puts = trio.open_memory_channel[tuple[Cid, bytes]](math.inf)
        self._wake = trio.Event()
        self._nursery: trio.Nursery | None = None
        self.by_peer: dict[str, int] = {}
        self.put_failures: list[str] = []
        self.on_stored = on_stored
        self.store_queue_bytes_max = store_queue_bytes_max
        self.queued_bytes = 0  # received, not yet durable in the store
        self.queued_bytes_peak = 0
        self._drained = trio.Event()

    async def run(self) -> FetchResult:
        started = trio.current_time()
        async with trio.open_nursery() as outer:
            for _ in range(PUT_WORKERS):  # batches overlap: each waits on fsyncs and the GIL
                outer.start_soon(self._put_loop)
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._apply(self.session.start(trio.current_time()))
                while self.session.finished is None:
                    deadline = self.session.next_deadline()
                    with trio.move_on_at(math.inf if deadline is None else deadline):
                        await self._wake.wait()
                    self._wake = trio.Event()
                    if deadline is not None and trio.current_time() >= deadline:
                        self._apply(self.session.on_timeout(trio.current_time()))
                nursery.cancel_scope.cancel()
            self._puts_send.close()  # the put loop drains what is queued, then ends
        done = self.session.finished
        if done is None:
            raise ColonymeshError("fetch ended without a result")
        error = done.error or (self.put_failures[0] if self.put_failures else "")
        return FetchResult(
            done.ok and not self.put_failures,
            done.missing,
            done.blocks_fetched,
            done.bytes_fetched,
            error,
            trio.current_time() - started,
            dict(self.by_peer),
        )

    # --- effects ----------------------------------------------------------------------

    def _apply(self, effects: list[Effect]) -> None:
        nursery = self._nursery
        if nursery is None:
            raise ColonymeshError("fetch not running")
        for effect in effects:
            match effect:
                case LoadLocal(cids):
                    nursery.start_soon(self._load_local, cids)
                case SendWantList(peer_id, wants, cancels):
                    self._send_wants(peer_id, wants, cancels)
                case FindProviders(cid):
                    nursery.start_soon(self._find, cid)
                case BlockReceived(peer_id, cid, data):
                    self.by_peer[peer_id] = self.by_peer.get(peer_id, 0) + 1
                    self.queued_bytes += len(data)
                    self.queued_bytes_peak = max(self.queued_bytes_peak, self.queued_bytes)
                    self._puts_send.send_nowait((cid, data))
                case PeerMisbehaved(peer_id, reason):
                    log.warning("fs: peer %s misbehaved: %s", peer_id, reason)
                    link = self._links.get(peer_id)
                    if link is not None:
                        link.close()
                case SessionFinished():
                    pass
        self._wake.set()

    def _send_wants(
        self, peer_id: PeerId, wants: tuple[Cid, ...], cancels: tuple[Cid, ...]
    ) -> None:
        link = self._links.get(peer_id)
        if link is None:
            if not wants:
                return
            link = self._links[peer_id] = _Link(peer_id)
            if self._nursery is not None:
                self._nursery.start_soon(self._run_link, link)
        if link.closed:
            return
        for message in (Cancel(cancels), WantBlocks(wants)):
            for part in _split(message.cids):
                payload = messages.encode(type(message)(part))
                link.outbox_send.send_nowait(frame_prefix(len(payload)) + payload)

    async def _load_local(self, cids: tuple[Cid, ...]) -> None:
        found = await trio.to_thread.run_sync(lambda: [read_block(self.store, c) for c in cids])
        now = trio.current_time()
        for cid, data in zip(cids, found, strict=True):
            self._apply(self.session.on_local(cid, data, now))

    async def _find(self, cid: Cid) -> None:
        try:
            found = await self.providers(cid)
        except ColonymeshError as error:
            log.info("fs: provider lookup for %s failed: %s", cid, error)
            found = []
        me = self.peer.peer_id
        peers = [PeerId(p) for p in found if p != me]
        self._apply(self.session.on_providers(cid, peers, trio.current_time()))

    async def _run_link(self, link: _Link) -> None:
        try:
            stream = await self.peer.open_stream(
                link.peer_id, [PROTOCOL_ID], timeout=self.connect_timeout_s
            )
        except _LINK_ERRORS as error:
            log.info("fs: no stream to %s: %s", link.peer_id, error)
            self._apply(self.session.remove_peer(link.peer_id, trio.current_time()))
            return
        try:
            async with stream, trio.open_nursery() as nursery:
                nursery.start_soon(self._write_link, stream, link)
                await self._read_link(stream, link)
                nursery.cancel_scope.cancel()
        except* _LINK_ERRORS as group:
            log.info("fs: link to %s ended: %s", link.peer_id, group.exceptions[0])
        self._apply(self.session.remove_peer(link.peer_id, trio.current_time()))

    async def _write_link(self, stream: MuxedStream, link: _Link) -> None:
        async for frame in link.outbox:
            batch = [frame]
            while len(batch) < 64:
                try:
                    batch.append(link.outbox.receive_nowait())
                except trio.WouldBlock:
                    break
            await stream.send_all(b"".join(batch))
        await stream.send_eof()

    async def _read_link(self, stream: MuxedStream, link: _Link) -> None:
        reader = FrameReader(stream)
        while (frame := await reader.read()) is not None:
            now = trio.current_time()
            match messages.decode(frame):
                case BlockMessage(cid, data):
                    self._apply(self.session.on_block(link.peer_id, cid, data, now))
                case DontHave(cids):
                    self._apply(self.session.on_dont_have(link.peer_id, cids, now))
                case other:
                    raise FsDecodeError(f"a provider sent {type(other).__name__}")
            while self.queued_bytes >= self.store_queue_bytes_max:
                await self._drained.wait()  # backpressure: the store is behind

    async def _put_loop(self) -> None:
        while True:
            try:
                first = await self._puts.receive()
            except trio.EndOfChannel:
                return
            batch = [first]
            while len(batch) < _PUT_BATCH:
                try:
                    batch.append(self._puts.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            await trio.to_thread.run_sync(self._put_batch, batch)
            self.queued_bytes -= sum(len(data) for _, data in batch)
            self._drained.set()
            self._drained = trio.Event()

    def _put_batch(self, batch: list[tuple[Cid, bytes]]) -> None:
        try:
            # verified: BlockReceived carries only bytes the session hashed to their CID
            self.store.put_batch(batch, verified=True)
            if self.on_stored is not None:
                self.on_stored([cid for cid, _ in batch])
            return
        except StoreError as error:
            log.info("fs: batch put failed (%s); storing block by block", error)
        for cid, data in batch:
            try:
                self.store.put_bytes(cid, data)
            except StoreError as error:
                log.warning("fs: could not store %s: %s", cid, error)
                self.put_failures.append(f"{cid}: {error}")
        if self.on_stored is not None:
            self.on_stored([cid for cid, _ in batch])


def _split(cids: tuple[Cid, ...]) -> list[tuple[Cid, ...]]:
    step = messages.CIDS_PER_MESSAGE_MAX
    return [cids[i : i + step] for i in range(0, len(cids), step)]
