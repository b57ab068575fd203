"""The ``dht`` scenario: the real Kademlia core on N simulated peers, lookups under 20% churn.

What it owns: :func:`run`, one seeded run of ``peers``
:class:`~colonymesh.simulations.dht_world.DhtPeer` adapters (each a real
:class:`~colonymesh.node.dht.DhtNode`, default configuration: k = 20,
alpha = 3) on a four-region latency model (5-150 ms one way, 10 ms jitter),
in three phases:

1. **Join.** Up to ``warm_start_above`` peers, every peer joins for real:
   it boots knowing a few bootstrap peers, looks up its own id and refreshes
   its far buckets (the core's own join). Above it, joining 10^5 peers by
   lookups would dominate the run, so the tables are **warm-started**: each
   peer's table is filled, through the core's own ``RoutingTable.observe``,
   with up to ``k`` peers drawn at random from the population of each of its
   buckets -- what a join followed by a refresh of every bucket yields. The
   summary says which (``bootstrap``). Lookups, provider records and churn
   are always the real core.
2. **Churn and workload** (``phase_s``, or ``--duration``). ``churn``
   of the initial population leaves (crash, for good) at uniformly drawn
   times and as many new peers join through three live peers: for real (the
   core's bootstrap: self-lookup, then far-bucket refreshes) up to
   ``warm_joins_above`` peers; above it a joiner's table is filled as the
   refreshes would fill it and the core's bootstrap runs without them
   (``refresh_on_bootstrap=False``), its self-lookup still announcing it to
   its neighbourhood (``churn_joins`` in the summary).
   Meanwhile random live peers look up random ids (``lookups``), announce
   provider records (first half) and look them up (second half).
3. **Drain**: no new work; operations in flight finish or time out.

Loss: the real driver speaks over reliable streams (TCP, Noise, Yamux), where
a lost packet is retransmitted, so by default 1% of messages arrive up to
0.6 s late (``retransmit``) instead of being dropped; ``loss`` (datagram loss:
every lost message a request timeout) is a knob, 0 by default. Dead peers,
whose requests do time out, are churn's work.

Checks. Every FIND_NODE lookup is judged against the ground truth
(:class:`~colonymesh.simulations.dht_world.LiveIds`): the true ``k`` closest
among peers ready when the lookup started and still live when it ended.
A lookup *succeeds* when its nearest answer is at least as near as the true
nearest (it found the peer that owns the key); ``exact_k`` when it returned
all ``k`` true closest. Violations (after every step): a lookup result not
in XOR order, longer than ``k``, with duplicates or non-members, or naming a
peer that had left before the lookup began (it cannot have answered); and at
the end a success rate below ``success_floor`` (over 50 lookups or more) or
a measured operation that never finished (unless its own peer left). A provider lookup succeeds when it finds the announcing peer.

Determinism: ids are drawn from the seeded generator (they stand for the
SHA-256 of Ed25519 keys without generating 10^5 key pairs); nodes share the
simulator's generator (``shared_node_rng``), 2.5 kB less per peer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, cast

from colonymesh.node.dht import (
    DhtConfig,
    LookupFinished,
    OpKind,
    PeerInfo,
    ProvidersLookupFinished,
    StoreFinished,
)
from colonymesh.node.dht.ids import ID_BITS, key_id, node_id_of
from colonymesh.simulations.dht_world import DhtPeer, DhtWorld, OpRecord
from colonymesh.simulations.engine import InvariantViolation, Simulator
from colonymesh.simulations.network import Network
from colonymesh.simulations.runner import ScenarioResult, report_progress
from colonymesh.simulations.stats import distribution, histogram

__all__ = ["DhtScenarioConfig", "run", "scenario"]

# One-way base latency between four regions (seconds): same region, same
# continent, across an ocean, antipodes.
_REGION_DELAY_S = (
    (0.005, 0.030, 0.080, 0.150),
    (0.030, 0.005, 0.070, 0.120),
    (0.080, 0.070, 0.005, 0.100),
    (0.150, 0.120, 0.100, 0.005),
)


@dataclass(frozen=True, slots=True)
class DhtScenarioConfig:
    peers: int = 1000
    k: int = 20
    alpha: int = 3
    request_timeout_s: float = 2.0  # per request (the core's default, 10 s, is for the wire)
    # The real driver speaks over reliable streams (TCP, Noise, Yamux): a lost packet
    # arrives late (retransmitted), it is not lost. So by default `retransmit` of the
    # messages take up to `retransmit_window_s` longer, and `loss` (datagram loss,
    # each lost message a request timeout) is 0; dead peers are churn's work.
    loss: float = 0.0
    retransmit: float = 0.01
    retransmit_window_s: float = 0.6
    jitter_s: float = 0.010
    warm_start_above: int = 2000  # more peers: warm-started tables (see module docs)
    warm_joins_above: int = 20_000  # more peers: churn joins are warm too (see module docs)
    bootstrap_peers: int = 3
    join_spread_s: float = 60.0  # real joins are spread over this
    settle_s: float = 20.0
    phase_s: float = 120.0
    churn: float = 0.2  # share of the initial peers that leave (and as many join)
    lookups: int = 2000
    provides: int = 200
    provider_lookups: int = 400
    drain_s: float = 30.0
    success_floor: float = 0.99
    events_max: int = 200_000_000


class _Run:
    """The mutable state of one run: simulator, world, live set, results."""

    def __init__(self, seed: int, cfg: DhtScenarioConfig) -> None:
        self.cfg = cfg
        net = Network(
            delay_base_s=0.005,
            delay_jitter_s=cfg.jitter_s,
            loss=cfg.loss,
            reorder=cfg.retransmit,
            reorder_window_s=cfg.retransmit_window_s,
        )
        net.location_delay_s = [list(row) for row in _REGION_DELAY_S]
        self.sim = sim = Simulator(seed, net, shared_node_rng=True)
        sim.events_limit = cfg.events_max
        self.rng = sim.rng
        dht = DhtConfig(k=cfg.k, alpha=cfg.alpha, request_timeout_s=cfg.request_timeout_s)
        self.world = DhtWorld(dht, self.finished)
        self.alive: list[int] = []  # live peer indices (swap-remove: order is deterministic)
        self.slot: dict[int, int] = {}  # index -> position in alive
        self.measured: list[OpRecord] = []
        self.provided: list[OpRecord] = []
        self.joined = 0
        self.left = 0
        self.refused = 0
        self.announcer: dict[bytes, int] = {}  # provided key -> the peer that announced it
        self.index_of_id: dict[int, int] = {}  # node id -> simulator index
        self.warm_joins = cfg.peers > cfg.warm_joins_above

    # -- peers -------------------------------------------------------------------

    def add_peer(self, seeds: list[PeerInfo] | None, *, warm: bool = False) -> int:
        key = self.rng.getrandbits(ID_BITS).to_bytes(32, "big")
        world = self.world
        index = self.sim.node_count
        world.infos.append(PeerInfo(key))
        node_id = node_id_of(key)
        world.ids.append(node_id)
        world.index_of[key] = index
        self.index_of_id[node_id] = index
        if seeds:
            world.joins[index] = seeds
        if warm:
            world.warm_joiners[index] = None
        self.slot[index] = len(self.alive)
        self.alive.append(index)
        world_ref = self.world
        self.sim.add_node(
            lambda io: DhtPeer(io, world_ref), location=self.rng.randrange(len(_REGION_DELAY_S))
        )
        return index

    def boot(self) -> None:
        """A peer of the warm-started population comes up (its table is filled later)."""
        self.add_peer(None)

    def leave(self) -> None:
        if len(self.alive) <= self.cfg.k:
            return
        index = self.alive[self.rng.randrange(len(self.alive))]
        last = self.alive.pop()
        if last != index:
            pos = self.slot[index]
            self.alive[pos] = last
            self.slot[last] = pos
        del self.slot[index]
        self.sim.crash(index)
        self.world.live.remove(self.world.ids[index])
        self.world.left_at[index] = self.sim.now
        self.left += 1

    def random_ready(self) -> int | None:
        """A live peer that has joined (a few draws; None if unlucky)."""
        ready_at = self.world.live.ready_at
        for _ in range(8):
            index = self.alive[self.rng.randrange(len(self.alive))]
            if self.world.ids[index] in ready_at:
                return index
        return None

    def join(self) -> None:
        seeds = []
        for _ in range(3):
            index = self.random_ready()
            if index is not None:
                seeds.append(self.world.infos[index])
        if not seeds:
            return
        self.joined += 1
        if not self.warm_joins:
            self.add_peer(seeds)
            return
        index = self.add_peer(None, warm=True)
        self.fill_table(index, self.sim.now)
        self.sim.poke(index, lambda a: cast(DhtPeer, a).bootstrap(seeds, self.sim.now))

    # -- tables ------------------------------------------------------------------

    def warm_start(self) -> None:
        """Fill every table with up to k random peers of each of its buckets."""
        self.world.live.bulk_load(list(self.world.ids), 0.0)
        for index in range(len(self.world.ids)):
            self.fill_table(index, 0.0)

    def fill_table(self, index: int, now: float) -> None:
        """Up to k random live, joined peers of each bucket, through ``observe``."""
        world, rng, k = self.world, self.rng, self.cfg.k
        self_id = world.ids[index]
        table = cast(DhtPeer, self.sim.adapter(index))._core().table
        infos, index_of_id = world.infos, self.index_of_id
        for bucket in range(ID_BITS - 1, -1, -1):
            # ids at distance [2**b, 2**(b+1)): flip bit b, keep the bits above it
            lo = ((self_id >> bucket) ^ 1) << bucket
            members = world.live.in_range(lo, lo + (1 << bucket))
            if len(members) > k:
                members = rng.sample(members, k)
            for node_id in members:
                table.observe(infos[index_of_id[node_id]], now)
            own_lo = (self_id >> bucket) << bucket
            if len(world.live.in_range(own_lo, own_lo + (1 << bucket))) <= 1:
                break  # nobody else shares this prefix: the nearer buckets are empty

    def real_joins(self) -> None:
        cfg, rng = self.cfg, self.rng
        boot = min(cfg.bootstrap_peers, cfg.peers)
        times = sorted(rng.uniform(0.0, cfg.join_spread_s) for _ in range(cfg.peers - boot))
        for i in range(boot):
            self.add_peer([self.world.infos[j] for j in range(i)])
        self.world.live.add(self.world.ids[0], 0.0)

        def joiner() -> None:
            self.add_peer([self.world.infos[j] for j in range(boot)])

        for t in times:
            self.sim.call_at(t, joiner)

    # -- workload ----------------------------------------------------------------

    def start(self, kind: str, target: int, key: bytes) -> None:
        index = self.random_ready()
        if index is None:
            self.refused += 1
            return

        def act(adapter: object) -> None:
            cast(DhtPeer, adapter).start_op(kind, target, key, self.sim.now)

        before = len(self.world.ops)
        self.sim.poke(index, act)
        if len(self.world.ops) == before:
            self.refused += 1  # DhtBusy: lookups_max operations already running
            return
        self.measured.append(next(reversed(self.world.ops.values())))

    def lookup(self) -> None:
        self.start("lookup", self.rng.getrandbits(ID_BITS), b"")

    def provide(self) -> None:
        key = b"cid/" + self.rng.getrandbits(64).to_bytes(8, "big")
        self.start("provide", key_id(key), key)

    def find_providers(self) -> None:
        done = [r for r in self.provided if r.finished >= 0.0]
        if done:
            record = done[self.rng.randrange(len(done))]
            self.start("providers", record.target, record.key)

    # -- results -----------------------------------------------------------------

    def finished(
        self,
        index: int,
        event: LookupFinished | ProvidersLookupFinished | StoreFinished,
        now: float,
    ) -> None:
        world = self.world
        if isinstance(event, LookupFinished) and event.kind is OpKind.BOOTSTRAP:
            world.live.add(world.ids[index], now)
            return
        record = world.ops.pop((index, event.op_id), None)
        if record is None:
            return  # a refresh or republish the core started itself
        record.finished = now
        match event:
            case LookupFinished():
                self.judge_lookup(record, event)
            case ProvidersLookupFinished(providers=found, hops=hops, queried=queried):
                record.hops, record.queried = hops, queried
                announcer = world.infos[self.announcer[record.key]].public_key
                record.ok = any(p.public_key == announcer for p in found)
            case StoreFinished(stored=stored):
                record.ok = stored > 0
                if record.ok:
                    self.provided.append(record)
                    self.announcer[record.key] = record.peer

    def judge_lookup(self, record: OpRecord, event: LookupFinished) -> None:
        world, k = self.world, self.cfg.k
        record.hops, record.queried = event.hops, event.queried
        target = record.target
        got: list[int] = []
        for info in event.closest:
            index = world.index_of.get(info.public_key)
            if index is None:
                raise InvariantViolation("lookup returned a peer that is not a member")
            left = world.left_at.get(index)
            if left is not None and left < record.started:
                raise InvariantViolation(
                    f"lookup returned peer {index}, which left at {left:.3f} "
                    f"before the lookup began at {record.started:.3f}"
                )
            got.append(world.ids[index])
        dists = [i ^ target for i in got]
        if len(got) > k or len(set(got)) != len(got) or dists != sorted(dists):
            raise InvariantViolation("lookup result is not k distinct peers in XOR order")
        # a lookup never returns its own peer: judge it against the others
        me = world.ids[record.peer]
        truth = [i for i in world.live.closest(target, k + 1, record.started) if i != me][:k]
        if not truth:
            return
        record.ok = bool(got) and dists[0] <= (truth[0] ^ target)
        hit = len(set(got).intersection(truth))
        record.recall = hit / len(truth)
        record.exact = hit == len(truth)

    # -- running -----------------------------------------------------------------

    def run_to(self, t_end: float, total: float) -> bool:
        sim = self.sim
        step = max(total / 100.0, 1.0)
        while sim.now < t_end:
            if not sim.run_until(min(t_end, sim.now + step)):
                return False
            report_progress(sim.now, total)
        return True


def run(seed: int, cfg: DhtScenarioConfig) -> tuple[Simulator, dict[str, Any]]:
    """One seeded run; returns the simulator (violation, stats) and the figures."""
    r = _Run(seed, cfg)
    sim, rng = r.sim, r.rng
    warm = cfg.peers > cfg.warm_start_above
    if warm:
        # peers boot at distinct instants, as real ones do: cores started at one instant
        # keep their periodic deadlines aligned, and a whole population ticking at one
        # virtual instant is no better a model than a lockstep (and trips the livelock
        # limit of the engine, whose superseded timers count as events at that instant)
        boot_s = 1.0
        for t in sorted(rng.uniform(0.0, boot_s) for _ in range(cfg.peers)):
            sim.call_at(t, r.boot)
        sim.call_at(boot_s, r.warm_start)
        t0 = boot_s + 1.0
    else:
        r.real_joins()
        t0 = cfg.join_spread_s + cfg.settle_s
    initial = cfg.peers
    t1 = t0 + cfg.phase_s
    total = t1 + cfg.drain_s
    churners = round(cfg.churn * initial)
    for _ in range(churners):
        sim.call_at(rng.uniform(t0, t1), r.leave)
        sim.call_at(rng.uniform(t0, t1), r.join)
    for _ in range(cfg.lookups):
        sim.call_at(rng.uniform(t0, t1), r.lookup)
    half = t0 + cfg.phase_s / 2
    for _ in range(cfg.provides):
        sim.call_at(rng.uniform(t0, half), r.provide)
    for _ in range(cfg.provider_lookups):
        sim.call_at(rng.uniform(half, t1), r.find_providers)
    ok = r.run_to(total, total)
    figures = _figures(r, cfg, warm, t0, initial)
    if ok and sim.violation is None:
        # an operation whose own peer left meanwhile ends with it
        unfinished = sum(
            1 for m in r.measured if m.finished < 0.0 and m.peer not in r.world.left_at
        )
        rate = figures["lookup_success_rate"]
        if unfinished:
            sim.fail(f"{unfinished} measured operations never finished")
        elif figures["lookups"] >= 50 and rate < cfg.success_floor:
            sim.fail(f"lookup success rate {rate} below the floor {cfg.success_floor}")
    return sim, figures


def _figures(
    r: _Run, cfg: DhtScenarioConfig, warm: bool, t0: float, initial: int
) -> dict[str, Any]:
    sim, world = r.sim, r.world
    lookups = [m for m in r.measured if m.kind == "lookup" and m.finished >= 0.0]
    provides = [m for m in r.measured if m.kind == "provide" and m.finished >= 0.0]
    finds = [m for m in r.measured if m.kind == "providers" and m.finished >= 0.0]
    n_live = len(r.alive)
    hops = [float(m.hops) for m in lookups]
    latency = [m.finished - m.started for m in lookups]
    contacts = 0
    for index in r.alive:
        peer = cast(DhtPeer, sim.adapter(index))
        contacts += len(peer._core().table)
    hop_counts: dict[str, int] = {}
    for h in sorted(int(h) for h in hops):
        hop_counts[str(h)] = hop_counts.get(str(h), 0) + 1
    hops_goal = 0.5 * math.log2(initial) if initial > 1 else 0.0
    hops_dist = distribution(hops)
    success = round(sum(m.ok for m in lookups) / len(lookups), 6) if lookups else 0.0
    return {
        "bootstrap": "warm-start" if warm else "joins",
        "churn_joins": "warm-fill+self-lookup" if r.warm_joins else "joins",
        "k": cfg.k,
        "alpha": cfg.alpha,
        "loss": cfg.loss,
        "retransmit": cfg.retransmit,
        "request_timeout_s": cfg.request_timeout_s,
        "churn": cfg.churn,
        "measured_from_s": round(t0, 6),
        "virtual_seconds": round(sim.now, 6),
        "peers_joined": r.joined,
        "peers_left": r.left,
        "peers_live_end": n_live,
        "lookups": len(lookups),
        "lookups_refused": r.refused,
        "lookup_success_rate": success,
        "lookup_exact_k_rate": round(sum(m.exact for m in lookups) / max(1, len(lookups)), 6),
        "lookup_recall_mean": round(sum(m.recall for m in lookups) / max(1, len(lookups)), 6),
        "lookup_hops": hops_dist,
        "lookup_latency_s": distribution(latency),
        "lookup_requests": distribution([float(m.queried) for m in lookups]),
        "provides": len(provides),
        "provides_stored": sum(m.ok for m in provides),
        "provider_lookups": len(finds),
        "provider_success_rate": round(sum(m.ok for m in finds) / max(1, len(finds)), 6),
        "provider_hops": distribution([float(m.hops) for m in finds]),
        "contacts_per_peer_mean": round(contacts / max(1, n_live), 3),
        "peer_misbehaved": world.misbehaved,
        "hops_goal_max": round(hops_goal, 6),
        "goal_hops_met": hops_dist["median"] <= hops_goal,
        "goal_success_met": success >= 0.999,
        "series": {
            "lookup_hops_counts": hop_counts,
            "lookup_latency_histogram_s": histogram(latency),
        },
        **sim.stats.as_dict(),
    }


def scenario(seed: int, peers: int, duration: float | None) -> ScenarioResult:
    """The registry entry: ``colonymesh simulate dht --peers N --seed S [--duration D]``."""
    if peers < 4:
        raise ValueError("the dht scenario needs at least 4 peers")
    base = DhtScenarioConfig()
    # the workload scales down with small populations (a few lookups per peer)
    provides = min(base.provides, max(10, peers // 5))
    cfg = replace(
        base,
        peers=peers,
        lookups=min(base.lookups, max(100, 10 * peers)),
        provides=provides,
        provider_lookups=2 * provides,
        join_spread_s=min(base.join_spread_s, max(10.0, peers / 30)),
        settle_s=min(base.settle_s, max(10.0, peers / 100)),
    )
    if duration is not None:
        if duration <= 0:
            raise ValueError("--duration must be positive")
        cfg = replace(cfg, phase_s=duration)
    sim, figures = run(seed, cfg)
    profile = {
        "loss": cfg.loss,
        "retransmit": cfg.retransmit,
        "churn": cfg.churn,
        "jitter_s": cfg.jitter_s,
    }
    return ScenarioResult(sim.violation, sim.violation_at, profile, figures)
