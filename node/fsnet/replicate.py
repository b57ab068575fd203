"""`ReplicationService`: the repair core (:mod:`colonymesh.fs.replication`) on a real peer.

The driver of the :class:`~colonymesh.fs.replication.Replicator`:

* **What is tracked.** Every root pinned in the chunk store (any label: a
  pinned root is content this peer keeps). The pins are re-read at every
  turn of the loop and whenever `ChunkService` reports a new pin, so a put,
  a get or a snapshot starts being replicated (and announced) at once; an
  unpinned root is untracked and no longer republished.
* `CheckReplicas(root)` -> a task: scrub our copy (every block under the
  root read through the verifying store; a rotten one is dropped there, and
  a missing one is fetched again from the other providers), then the DHT's
  providers of the root and the peers closest to it (FIND_NODE on its key),
  all probed in parallel with a WANT_HAVES under `probe_timeout_s`; the
  providers that answer HAVE are the holders, every peer that answers is
  live, and the core gets them ordered by XOR distance to the root.
* `AskReplicate(peer, root)` -> one ``/colonymesh/fs-replicate/1.0.0`` stream
  carrying the root's CID; a failure is left to the core's ask timeout.
* A replicate request from a member -> `replicate_requested`; `FetchRoot` ->
  `ChunkService.fetch` of the whole DAG, pinned under ``fs-replica:<cid>``
  (so a user's ``fs rm`` of their own pin does not drop a colony replica),
  then announced.

All calls into the core happen on the trio thread; nothing outlives `run`.
"""

from __future__ import annotations

import logging
import math
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, assert_never

import trio

from colonymesh.fs.cid import CID_BYTES_MAX, Cid
from colonymesh.fs.errors import ChunkNotFoundError, CidError, CorruptChunkError, FsError
from colonymesh.fs.reader import child_cids
from colonymesh.fs.replication import (
    AskReplicate,
    CheckReplicas,
    Effect,
    FetchRoot,
    PeerId,
    ReplicationConfig,
    Replicator,
    provider_key,
)
from colonymesh.node.dht.ids import id_to_bytes, key_id, node_id_of
from colonymesh.node.errors import ColonymeshError
from colonymesh.node.fsnet.frames import FrameReader, frame_prefix
from colonymesh.node.fsnet.providers import DhtProviders
from colonymesh.node.fsnet.service import ChunkService
from colonymesh.node.identity import peer_id_of, public_key_from_peer_id
from colonymesh.node.transport.stream import MuxedStream

log = logging.getLogger("colonymesh.node.fsnet")

REPLICATE_PROTOCOL = "/colonymesh/fs-replicate/1.0.0"
REPLICA_PIN_PREFIX = "fs-replica:"
_FRAME_BYTES_MAX = CID_BYTES_MAX + 16
_NET_ERRORS = (
    ColonymeshError,
    FsError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    OSError,
)


@dataclass(frozen=True, slots=True)
class ReplicationServiceConfig:
    replication: ReplicationConfig = field(default_factory=ReplicationConfig)
    probe_timeout_s: float = 3.0
    ask_timeout_s: float = 5.0
    scrub: bool = True  # verify our own copy at every check (reads the whole DAG)
    seed: int | None = None


class ReplicationService:
    """Keeps k replicas of every root this peer pins, with the colony's other peers."""

    def __init__(
        self,
        chunks: ChunkService,
        providers: DhtProviders,
        config: ReplicationServiceConfig | None = None,
    ) -> None:
        self.chunks = chunks
        self.providers = providers
        self.config = config or ReplicationServiceConfig()
        seed = self.config.seed if self.config.seed is not None else os.urandom(8)
        self.core = Replicator(
            PeerId(chunks.peer.peer_id), self.config.replication, random.Random(seed)
        )
        self._wake = trio.Event()
        self._nursery: trio.Nursery | None = None
        self.self_repairs = 0
        self.requests_malformed = 0

    # --- running ----------------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[ReplicationService] = trio.TASK_STATUS_IGNORED
    ) -> None:
        self.chunks.peer.set_stream_handler(REPLICATE_PROTOCOL, self._serve)
        self.chunks.pin_hooks.append(lambda _: self.wake())
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await self._sync_pins()
            task_status.started(self)
            while True:
                deadline = self.core.next_deadline()
                with trio.move_on_at(math.inf if deadline is None else deadline):
                    await self._wake.wait()
                self._wake = trio.Event()
                await self._sync_pins()
                self._apply(self.core.on_timeout(trio.current_time()))

    def wake(self) -> None:
        self._wake.set()

    async def _sync_pins(self) -> None:
        pins = await trio.to_thread.run_sync(self.chunks.store.pins)
        pinned = list(dict.fromkeys(root for label in sorted(pins) for root in pins[label]))
        tracked = self.core.tracked()
        now = trio.current_time()
        for root in pinned:
            if root not in tracked and self.core.track(root, now):
                self._start(self.providers.announce, root)
        held = dict.fromkeys(pinned)
        for root in tracked:
            if root not in held:
                self.core.untrack(root)
                self.providers.withdraw(root)

    def _start(self, fn: Any, *args: Any) -> None:
        if self._nursery is None:
            raise ColonymeshError("the replication service is not running")
        self._nursery.start_soon(fn, *args)

    def _apply(self, effects: Sequence[Effect]) -> None:
        for effect in effects:
            match effect:
                case CheckReplicas(root):
                    self._start(self._check, root)
                case AskReplicate(peer, root):
                    self._start(self._ask, peer, root)
                case FetchRoot(root, sources):
                    self._start(self._fetch, root, sources)
                case _:
                    assert_never(effect)
        self.wake()

    # --- checks -----------------------------------------------------------------------

    async def _check(self, root: Cid) -> None:
        if self.config.scrub and not await trio.to_thread.run_sync(self._scrub, root):
            self.self_repairs += 1
            log.info("fs: our copy of %s lost blocks; fetching them again", root)
            try:
                await self.chunks.fetch([root])
            except _NET_ERRORS as error:
                log.info("fs: refetching blocks of %s failed: %s", root, error)
        key = provider_key(root)
        try:
            providers = await self.providers.find(root)
            closest = await self.providers.dht.find_node(id_to_bytes(key_id(key)))
        except (ColonymeshError, RuntimeError) as error:
            log.info("fs: replica check of %s failed: %s", root, error)
            self._apply(self.core.on_check_failed(root, trio.current_time()))
            return
        candidates = list(providers)
        for info in closest.closest:
            peer_id = peer_id_of(info.public_key)
            for addr in info.addrs:
                self.chunks.peer.add_address(peer_id, addr)
            candidates.append(peer_id)
        me = self.chunks.peer.peer_id
        answers: dict[str, bool] = {}

        async def probe(peer_id: str) -> None:
            with trio.move_on_after(self.config.probe_timeout_s):
                try:
                    answers[peer_id] = await self.chunks.ask_have(peer_id, root)
                except _NET_ERRORS as error:
                    log.debug("fs: probe of %s at %s failed: %s", root, peer_id, error)

        async with trio.open_nursery() as nursery:
            for peer_id in dict.fromkeys(candidates):
                if peer_id != me:
                    nursery.start_soon(probe, peer_id)
        target = key_id(key)
        live = sorted(
            [*answers, me],
            key=lambda p: (node_id_of(public_key_from_peer_id(p)) ^ target, p),
        )
        holders = [PeerId(p) for p in sorted(providers) if answers.get(p)]
        if len(holders) + 1 < self.config.replication.k:
            # Replicas were lost, and the DHT records naming us may have died with the
            # peers that stored them: store ours again at the peers closest now.
            self._start(self.providers.announce, root)
        effects = self.core.on_replicas(
            root, holders, [PeerId(p) for p in live], trio.current_time()
        )
        self._apply(effects)

    def _scrub(self, root: Cid) -> bool:
        """Read (verifying) every block under `root`; False if one is missing or was rotten."""
        stack, seen, whole = [root], set[Cid](), True
        while stack:
            cid = stack.pop()
            if cid in seen:
                continue
            seen.add(cid)
            try:
                data = self.chunks.store.get(cid)
            except (ChunkNotFoundError, CorruptChunkError):
                whole = False
                continue
            try:
                stack.extend(child_cids(cid, data))
            except FsError:
                return False
        return whole

    # --- asking and being asked -------------------------------------------------------

    async def _ask(self, peer: PeerId, root: Cid) -> None:
        try:
            stream = await self.chunks.peer.open_stream(
                peer, [REPLICATE_PROTOCOL], self.config.ask_timeout_s
            )
            async with stream:
                raw = root.to_bytes()
                await stream.send_all(frame_prefix(len(raw)) + raw)
                await stream.send_eof()
        except _NET_ERRORS as error:
            log.info("fs: asking %s to replicate %s failed: %s", peer, root, error)

    async def _serve(self, stream: MuxedStream) -> None:
        sender = stream.connection.remote_peer_id
        try:
            async with stream:
                with trio.move_on_after(self.config.ask_timeout_s):
                    frame = await FrameReader(stream, _FRAME_BYTES_MAX).read()
                    if frame is None:
                        return
                    root = Cid.from_bytes(frame)
                    now = trio.current_time()
                    self._apply(self.core.replicate_requested(root, PeerId(sender), now))
        except (CidError, *_NET_ERRORS) as error:
            self.requests_malformed += 1
            log.info("fs: bad replicate request from %s: %s", sender, error)

    async def _fetch(self, root: Cid, sources: tuple[PeerId, ...]) -> None:
        ok = False
        via_dht = self.providers.for_roots([root])

        async def providers(cid: Cid) -> list[str]:
            # the asker holds the root; the DHT may not name it yet
            return list(dict.fromkeys([*sources, *await via_dht(cid)]))

        try:
            fetched = await self.chunks.fetch([root], providers=providers)
            if fetched.ok:
                label = REPLICA_PIN_PREFIX + root.encode()
                await trio.to_thread.run_sync(self.chunks.store.pin, label, [root])
                ok = True
                await self._sync_pins()  # tracks and announces it
            else:
                log.info("fs: replica of %s not fetched: %s", root, fetched.error)
        except _NET_ERRORS as error:
            log.info("fs: replica of %s not fetched: %s", root, error)
        self._apply(self.core.on_fetched(root, ok, trio.current_time()))

    def statistics(self) -> dict[str, Any]:
        return {
            **self.core.statistics(),
            "self_repairs": self.self_repairs,
            "requests_malformed": self.requests_malformed,
            "announced": self.providers.announced,
            "provider_lookups": self.providers.lookups,
        }
