"""The ``fs`` scenario's world: one simulated peer running the real fs and DHT cores.

What it owns: :class:`FsPeer`, the simulator adapter of one peer, and the
messages peers exchange. Every peer runs, unchanged, the cores a real node
runs:

* the Kademlia core (:class:`~colonymesh.node.dht.node.DhtNode`): provider
  records (announce, republish, expiry) and FIND_NODE for the peers closest
  to a root;
* the chunk-exchange server (:class:`~colonymesh.fs.exchange.server.
  ExchangeServer`) answering want-lists from the peer's block store;
* chunk-exchange sessions (:class:`~colonymesh.fs.exchange.session.
  ExchangeSession`), one per read or replica fetch, pulling a DAG from every
  provider the DHT names, in parallel;
* the repair core (:class:`~colonymesh.fs.replication.Replicator`).

This module is their driver, as ``node/fsnet`` is on the real transport:
the block store is a dict of bytes that `read_block` verifies on every read
(a block that fails is dropped and counted, as the real store does); a
replica check finds providers and closest peers through the DHT and probes
them with WANT_HAVES, which proves both liveness and possession.

Messages: `DhtWire` (a DHT message), `ExWire` (an exchange message on a
channel: the requester's session or probe number, echoed in answers) and
`ReplicateAsk`. Peer ids are the simulator indexes as text.
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, assert_never

from colonymesh.fs.cid import Cid
from colonymesh.fs.exchange.messages import (
    BlockMessage,
    Cancel,
    DontHave,
    Haves,
    WantBlocks,
    WantHaves,
)
from colonymesh.fs.exchange.messages import (
    Message as ExMessage,
)
from colonymesh.fs.exchange.server import ExchangeServer
from colonymesh.fs.exchange.session import (
    BlockReceived,
    ExchangeSession,
    FindProviders,
    LoadLocal,
    PeerMisbehaved,
    SendWantList,
    SessionConfig,
    SessionFinished,
)
from colonymesh.fs.exchange.session import (
    Effect as SessionEffect,
)
from colonymesh.fs.exchange.session import (
    PeerId as SessionPeer,
)
from colonymesh.fs.reader import child_cids
from colonymesh.fs.replication import (
    AskReplicate,
    CheckReplicas,
    FetchRoot,
    PeerId,
    ReplicationConfig,
    Replicator,
    provider_key,
)
from colonymesh.fs.replication import Effect as ReplicationEffect
from colonymesh.node.dht.effects import (
    DhtBusy,
    DhtConfig,
    LookupFinished,
    Output,
    ProvidersLookupFinished,
    SendMessage,
)
from colonymesh.node.dht.ids import id_to_bytes, key_id, node_id_of
from colonymesh.node.dht.messages import Message as DhtMessage
from colonymesh.node.dht.messages import PeerInfo
from colonymesh.node.dht.node import DhtNode
from colonymesh.simulations.engine import NodeIO

CID_WIRE_BYTES: Final = 40
PROBE_TIMEOUT_S: Final = 3.0
FETCH_ATTEMPTS_MAX: Final = 3


@dataclass(frozen=True, slots=True)
class DhtWire:
    message: DhtMessage


@dataclass(frozen=True, slots=True)
class ExWire:
    channel: int
    message: ExMessage


@dataclass(frozen=True, slots=True)
class ReplicateAsk:
    root: Cid


def public_key_of(index: int) -> bytes:
    return hashlib.sha256(b"colonymesh-sim-fs-peer-%d" % index).digest()


@dataclass(slots=True)
class FsStats:
    """Counters over every peer of a run (deterministic for a seed)."""

    blocks_served: int = 0
    bytes_served: int = 0
    corrupt_detected: int = 0
    misbehaved: int = 0
    sessions: int = 0
    sessions_failed: int = 0
    provides: int = 0
    provider_lookups: int = 0
    probes: int = 0
    replica_fetches: int = 0
    self_repairs: int = 0
    dht_busy: int = 0
    reannounced: int = 0


@dataclass(slots=True)
class FsShared:
    """What all peers of one run share: identities, configs, counters."""

    infos: list[PeerInfo]
    index_of: dict[bytes, int]
    dht_config: DhtConfig
    session_config: SessionConfig
    replication: ReplicationConfig
    stats: FsStats = field(default_factory=FsStats)


Done = Callable[[SessionFinished, dict[Cid, bytes]], None]


def _ignore(finished: SessionFinished, scratch: dict[Cid, bytes]) -> None:
    """A self-repair needs no follow-up: the next check scrubs the copy again."""


@dataclass(slots=True)
class _Fetch:
    session: ExchangeSession
    root: Cid
    into_store: bool  # a replica (into the store) or a read (into `scratch`)
    done: Done
    scratch: dict[Cid, bytes] = field(default_factory=dict)


@dataclass(slots=True)
class _Probe:
    root: Cid
    deadline: float
    asked: dict[int, None]
    providers: dict[int, None]  # a holder announced the root *and* says HAVE now
    holders: list[int] = field(default_factory=list)
    live: list[int] = field(default_factory=list)


class FsPeer:
    """One peer: block store, DHT, exchange server and sessions, replicator."""

    def __init__(self, shared: FsShared, io: NodeIO) -> None:
        self.shared = shared
        self.io = io
        self.index = io.index
        self.peer_id = PeerId(str(io.index))
        self.blocks: dict[Cid, bytes] = {}
        self.pinned: dict[Cid, None] = {}
        self.server = ExchangeServer(self._has)
        self.dht = DhtNode(
            shared.infos[io.index],
            verify=lambda _pk, _msg, _sig: True,
            is_member=lambda _pk: True,
            rng=io.rng,
            config=shared.dht_config,
        )
        self.replicator = Replicator(self.peer_id, shared.replication, io.rng)
        self._fetches: dict[int, _Fetch] = {}
        self._probes: dict[int, _Probe] = {}
        self._ops: dict[int, Callable[[Output | None], None]] = {}
        self._channels = 0
        self._now = 0.0

    # --- adapter ----------------------------------------------------------------------

    def start(self, now: float) -> None:
        self._now = now

    def deliver(self, src: int, msg: object, now: float) -> None:
        self._now = now
        match msg:
            case DhtWire(message):
                self._carry(self.dht.handle_message(self.shared.infos[src], message, now))
            case ExWire(channel, message):
                self._on_exchange(src, channel, message, now)
            case ReplicateAsk(root):
                self._replicate(self.replicator.replicate_requested(root, PeerId(str(src)), now))
            case _:
                raise TypeError(f"unexpected message {type(msg).__name__}")

    def fire(self, now: float) -> None:
        self._now = now
        self._carry(self.dht.tick(now))
        for channel, fetch in list(self._fetches.items()):
            deadline = fetch.session.next_deadline()
            if deadline is not None and deadline <= now:
                self._session(channel, fetch.session.on_timeout(now))
        for channel, probe in list(self._probes.items()):
            if probe.deadline <= now:
                self._finish_probe(channel, probe)
        self._replicate(self.replicator.on_timeout(now))

    def next_deadline(self) -> float | None:
        deadlines = [self.dht.next_deadline()]
        deadlines.extend(p.deadline for p in self._probes.values())
        for fetch in self._fetches.values():
            deadline = fetch.session.next_deadline()
            if deadline is not None:
                deadlines.append(deadline)
        replica = self.replicator.next_deadline()
        if replica is not None:
            deadlines.append(replica)
        best = min(deadlines)
        return None if best == math.inf else best

    # --- the block store --------------------------------------------------------------

    def _has(self, cid: Cid) -> bool:
        return cid in self.blocks

    def read_block(self, cid: Cid) -> bytes | None:
        """A verified block, or None (absent, or corrupt: dropped, as the real store does)."""
        data = self.blocks.get(cid)
        if data is None:
            return None
        if not cid.verify(data):
            del self.blocks[cid]
            self.shared.stats.corrupt_detected += 1
            return None
        return data

    def holds(self, root: Cid) -> bool:
        """Every block under `root` is here and intact (the test oracle: drops nothing)."""
        stack = [root]
        seen: set[Cid] = set()
        while stack:
            cid = stack.pop()
            if cid in seen:
                continue
            seen.add(cid)
            data = self.blocks.get(cid)
            if data is None or not cid.verify(data):
                return False
            stack.extend(child_cids(cid, data))
        return True

    def put_root(self, root: Cid, blocks: dict[Cid, bytes], now: float) -> None:
        """A local import: store the blocks, pin, announce, keep k replicas."""
        self.blocks.update(blocks)
        self._hold(root, now)

    def _hold(self, root: Cid, now: float) -> None:
        self.pinned[root] = None
        self.shared.stats.provides += 1
        self._dht_op(lambda t: self.dht.provide(provider_key(root), t), lambda _: None)
        self.replicator.track(root, now)

    # --- reads and replica fetches -------------------------------------------------------

    def read(self, root: Cid, done: Done) -> None:
        """Fetch the DAG under `root` from providers into a scratch buffer (not the store)."""
        self._start_fetch(root, into_store=False, done=done)

    def _start_fetch(
        self, root: Cid, *, into_store: bool, done: Done, sources: Sequence[PeerId] = ()
    ) -> None:
        self._channels += 1
        session = ExchangeSession([root], self.io.rng, self.shared.session_config)
        for source in sources:
            session.add_peer(SessionPeer(source), self._now)
        self._fetches[self._channels] = _Fetch(session, root, into_store, done)
        self.shared.stats.sessions += 1
        self._session(self._channels, session.start(self._now))

    def _session(self, channel: int, effects: list[SessionEffect]) -> None:
        queue = deque(effects)
        while queue:
            fetch = self._fetches.get(channel)
            if fetch is None:
                return
            queue.extend(self._session_effect(channel, fetch, queue.popleft()))

    def _session_effect(
        self, channel: int, fetch: _Fetch, effect: SessionEffect
    ) -> list[SessionEffect]:
        session, now = fetch.session, self._now
        match effect:
            case LoadLocal(cids):
                out: list[SessionEffect] = []
                for cid in cids:
                    data = self.read_block(cid) if fetch.into_store else fetch.scratch.get(cid)
                    out.extend(session.on_local(cid, data, now))
                return out
            case SendWantList(peer, wants, cancels):
                dst = int(peer)
                if cancels:
                    self._send_ex(dst, channel, Cancel(cancels))
                if wants:
                    self._send_ex(dst, channel, WantBlocks(wants))
                return []
            case FindProviders(cid):
                self._find_providers(channel, fetch.root, cid)
                return []
            case BlockReceived(_, cid, data):
                if fetch.into_store:
                    self.blocks[cid] = data
                else:
                    fetch.scratch[cid] = data
                return []
            case PeerMisbehaved():
                self.shared.stats.misbehaved += 1
                return []
            case SessionFinished() as finished:
                del self._fetches[channel]
                if not finished.ok:
                    self.shared.stats.sessions_failed += 1
                fetch.done(finished, fetch.scratch)
                return []

    def _find_providers(self, channel: int, root: Cid, cid: Cid) -> None:
        # Only roots are announced; any block of the DAG is found at the root's providers.
        self.shared.stats.provider_lookups += 1

        def found(result: Output | None) -> None:
            fetch = self._fetches.get(channel)
            if fetch is None:
                return
            infos = result.providers if isinstance(result, ProvidersLookupFinished) else ()
            peers = [
                SessionPeer(str(self.shared.index_of[info.public_key]))
                for info in infos
                if info.public_key in self.shared.index_of
                and info.public_key != self.shared.infos[self.index].public_key
            ]
            self._session(channel, fetch.session.on_providers(cid, peers, self._now))

        self._dht_op(lambda t: self.dht.get_providers(provider_key(root), t), found)

    # --- replication ----------------------------------------------------------------------

    def _replicate(self, effects: Sequence[ReplicationEffect]) -> None:
        for effect in effects:
            match effect:
                case CheckReplicas(root):
                    self._check(root)
                case AskReplicate(peer, root):
                    self.io.send(int(peer), ReplicateAsk(root), CID_WIRE_BYTES)
                case FetchRoot(root, sources):
                    self.shared.stats.replica_fetches += 1
                    done = self._replica_done(root, 1, sources)
                    self._start_fetch(root, into_store=True, done=done, sources=sources)
                case _:
                    assert_never(effect)

    def _replica_done(self, root: Cid, attempt: int, sources: Sequence[PeerId]) -> Done:
        def done(finished: SessionFinished, _: dict[Cid, bytes]) -> None:
            if not finished.ok and attempt < FETCH_ATTEMPTS_MAX:
                # A session gives a silent peer up for good; a new one asks everyone again.
                again = self._replica_done(root, attempt + 1, sources)
                self._start_fetch(root, into_store=True, done=again, sources=sources)
                return
            if finished.ok and root not in self.pinned:
                self._hold(root, self._now)
            self._replicate(self.replicator.on_fetched(root, finished.ok, self._now))

        return done

    def _check(self, root: Cid) -> None:
        """Scrub our own copy, then find providers and the closest peers, and probe them."""
        if not self._scrub(root):
            self.shared.stats.self_repairs += 1
            self._start_fetch(root, into_store=True, done=_ignore)
        key = provider_key(root)
        view: dict[str, list[int]] = {}

        def providers(result: Output | None) -> None:
            if isinstance(result, ProvidersLookupFinished):
                view["providers"] = [self._index(i) for i in result.providers]
                self._dht_op(lambda t: self.dht.find_node(id_to_bytes(key_id(key)), t), closest)
            else:
                self._replicate(self.replicator.on_check_failed(root, self._now))

        def closest(result: Output | None) -> None:
            if isinstance(result, LookupFinished):
                view["closest"] = [self._index(i) for i in result.closest]
                self._probe(root, view["providers"], view["closest"])
            else:
                self._replicate(self.replicator.on_check_failed(root, self._now))

        self._dht_op(lambda t: self.dht.get_providers(key, t), providers)

    def _scrub(self, root: Cid) -> bool:
        """Verify every block under `root` we hold; False if any is missing or was rotten."""
        stack, seen, whole = [root], set[Cid](), True
        while stack:
            cid = stack.pop()
            if cid in seen:
                continue
            seen.add(cid)
            data = self.read_block(cid)
            if data is None:
                whole = False
                continue
            stack.extend(child_cids(cid, data))
        return whole

    def _index(self, info: PeerInfo) -> int:
        return self.shared.index_of.get(info.public_key, -1)

    def _probe(self, root: Cid, providers: list[int], closest: list[int]) -> None:
        """WANT_HAVES to every provider and every peer the DHT names closest to `root`."""
        asked = dict.fromkeys(i for i in [*providers, *closest] if i >= 0 and i != self.index)
        self._channels += 1
        probe = _Probe(root, self._now + PROBE_TIMEOUT_S, asked, dict.fromkeys(providers))
        self._probes[self._channels] = probe
        for dst in asked:
            self.shared.stats.probes += 1
            self._send_ex(dst, self._channels, WantHaves((root,)))
        if not asked:
            self._finish_probe(self._channels, probe)

    def _reannounce(self, root: Cid) -> None:
        """Replicas were lost, and the DHT records naming us may have died with the
        peers that stored them: store ours again at the peers closest to the key now,
        rather than at the next republish."""
        self.shared.stats.reannounced += 1
        self._dht_op(lambda t: self.dht.provide(provider_key(root), t), lambda _: None)

    def _on_probe_answer(self, channel: int, src: int, message: ExMessage) -> None:
        probe = self._probes.get(channel)
        if probe is None or src not in probe.asked:
            return
        del probe.asked[src]
        probe.live.append(src)
        if isinstance(message, Haves) and probe.root in message.cids and src in probe.providers:
            probe.holders.append(src)
        if not probe.asked:
            self._finish_probe(channel, probe)

    def _finish_probe(self, channel: int, probe: _Probe) -> None:
        del self._probes[channel]
        target = key_id(provider_key(probe.root))
        live = sorted(
            dict.fromkeys([*probe.live, self.index]),
            key=lambda i: node_id_of(self.shared.infos[i].public_key) ^ target,
        )
        holders = [PeerId(str(i)) for i in sorted(probe.holders)]
        live_closest = [PeerId(str(i)) for i in live]
        if len(holders) + 1 < self.shared.replication.k:
            self._reannounce(probe.root)
        self._replicate(self.replicator.on_replicas(probe.root, holders, live_closest, self._now))

    # --- the exchange on the wire ---------------------------------------------------------

    def _send_ex(self, dst: int, channel: int, message: ExMessage) -> None:
        size = CID_WIRE_BYTES
        if isinstance(message, BlockMessage):
            size += len(message.data)
        else:
            size += CID_WIRE_BYTES * len(message.cids)
        self.io.send(dst, ExWire(channel, message), size)

    def _on_exchange(self, src: int, channel: int, message: ExMessage, now: float) -> None:
        match message:
            case WantBlocks() | Cancel() | WantHaves():
                requester = f"{src}#{channel}"
                for reply in self.server.on_message(requester, message):
                    self._send_ex(src, channel, reply)
                while (cid := self.server.next_want(requester)) is not None:
                    answer = self.server.answer(requester, cid, self.read_block(cid))
                    if isinstance(answer, BlockMessage):
                        self.shared.stats.blocks_served += 1
                        self.shared.stats.bytes_served += len(answer.data)
                    self._send_ex(src, channel, answer)
            case BlockMessage(cid, data):
                fetch = self._fetches.get(channel)
                if fetch is not None:
                    peer = SessionPeer(str(src))
                    self._session(channel, fetch.session.on_block(peer, cid, data, now))
            case DontHave(cids):
                fetch = self._fetches.get(channel)
                if fetch is not None:
                    peer = SessionPeer(str(src))
                    self._session(channel, fetch.session.on_dont_have(peer, cids, now))
                else:
                    self._on_probe_answer(channel, src, message)
            case Haves():
                self._on_probe_answer(channel, src, message)

    # --- DHT ------------------------------------------------------------------------------

    def _dht_op(
        self,
        start: Callable[[float], tuple[int, list[Output]]],
        then: Callable[[Output | None], None],
    ) -> None:
        try:
            op_id, outputs = start(self._now)
        except DhtBusy:
            self.shared.stats.dht_busy += 1
            then(None)  # too many lookups at once: the caller treats it as a failed one
            return
        self._ops[op_id] = then
        self._carry(outputs)

    def _carry(self, outputs: list[Output]) -> None:
        for output in outputs:
            if isinstance(output, SendMessage):
                dst = self.shared.index_of.get(output.to.public_key)
                if dst is not None:
                    self.io.send(dst, DhtWire(output.message), 64)
                continue
            op_id = getattr(output, "op_id", None)
            if op_id is not None:
                then = self._ops.pop(op_id, None)
                if then is not None:
                    then(output)

    def bootstrap(self, seeds: list[int]) -> None:
        infos = [self.shared.infos[i] for i in seeds if i != self.index]
        self._dht_op(lambda t: self.dht.bootstrap(infos, t), lambda _: None)
