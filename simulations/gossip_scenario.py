"""The ``gossip`` scenario: the real gossip router on N simulated peers, 5% loss, peers leaving.

What it owns: :func:`run`, one seeded run of ``peers`` :class:`GossipPeer`
adapters, each a real :class:`~colonymesh.node.gossip.GossipRouter` with
real Ed25519 keys (messages are signed and every relay verifies them),
connected to ``connections`` random others (what the DHT gives a node) and
subscribed to one topic, on a four-region latency model where every message
is lost with probability ``loss`` (5%).

Phases: **warm-up** (``warmup_s``: subscriptions spread, meshes form);
**publish** (``phase_s``, or ``--duration``): ``messages`` messages from
random live peers at uniform times while ``leave`` of the peers crash for
good (their neighbours see the connection close after a drawn detection
delay); then **heal**: no more departures, the run continues (loss still
on) until every live peer holds every message, bounded by ``heal_bound_s``.

Checkers: after every step, no peer delivers one message twice to its
application (``Delivered``); at the end, every live peer has every message
(otherwise a violation naming how many are missing). Figures: coverage of
live peers over time since publication, time to 99% and to 100% per message,
duplicate pushes per message (a full message arriving where it was already
seen), and delivery accounting: the count each publisher learned
(``DeliveryCounted``) against the true number of deliveries.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, assert_never, cast

from colonymesh.node.gossip import (
    Delivered,
    DeliveryCounted,
    GossipConfig,
    GossipRouter,
    Output,
    PeerMisbehaved,
    PeerRateLimited,
    PublishThrottled,
    SendMessage,
    ThrottledBy,
)
from colonymesh.node.gossip.messages import Publish
from colonymesh.node.identity import KeyPair, Signer, verify_signature
from colonymesh.simulations.engine import InvariantViolation, NodeIO, Simulator
from colonymesh.simulations.network import Network
from colonymesh.simulations.runner import ScenarioResult, report_progress
from colonymesh.simulations.stats import distribution

__all__ = ["GossipPeer", "GossipScenarioConfig", "run", "scenario"]

TOPIC = "colony/specs"

_REGION_DELAY_S = (
    (0.005, 0.030, 0.080, 0.150),
    (0.030, 0.005, 0.070, 0.120),
    (0.080, 0.070, 0.005, 0.100),
    (0.150, 0.120, 0.100, 0.005),
)


@dataclass(frozen=True, slots=True)
class GossipScenarioConfig:
    peers: int = 1000
    connections: int = 20  # random neighbours each peer dials (links are two-way)
    loss: float = 0.05
    jitter_s: float = 0.010
    warmup_s: float = 15.0
    phase_s: float = 20.0
    messages: int = 20
    data_bytes: int = 256
    leave: float = 0.02  # share of the peers that crash for good during the publish phase
    detect_s: float = 2.0  # at most this long until neighbours see a connection close
    heal_bound_s: float = 60.0
    coverage_step_s: float = 0.005  # the finest step of the coverage curve
    events_max: int = 50_000_000


class _World:
    """What the adapters share: keys, neighbours, deliveries, counters."""

    def __init__(self, cfg: GossipScenarioConfig) -> None:
        self.cfg = cfg
        self.signers: list[Signer] = []
        self.keys: list[bytes] = []
        self.index_of: dict[bytes, int] = {}
        self.neighbours: list[list[int]] = []
        self.members: dict[bytes, None] = {}
        # msg id -> node -> delivery time (the publisher at its publish time)
        self.delivered: dict[bytes, dict[int, float]] = {}
        self.published_at: dict[bytes, float] = {}
        self.publisher_of: dict[bytes, int] = {}
        self.counted: dict[bytes, int] = {}  # publisher's latest DeliveryCounted
        self.publish_arrivals = 0
        self.throttles = 0
        self.misbehaved = 0

    def is_member(self, public_key: bytes) -> bool:
        return public_key in self.members


class GossipPeer:
    """Adapter: one real ``GossipRouter`` on the simulated network."""

    __slots__ = ("core", "index", "io", "world")

    def __init__(self, io: NodeIO, world: _World) -> None:
        self.io = io
        self.world = world
        self.index = io.index
        self.core: GossipRouter | None = None

    def start(self, now: float) -> None:
        world, i = self.world, self.index
        self.core = GossipRouter(
            world.keys[i],
            sign=world.signers[i].sign,
            verify=verify_signature,
            is_member=world.is_member,
            rng=self.io.rng,
            config=GossipConfig(),
            now=now,
        )

    def join(self, now: float) -> None:
        """Connect to the neighbours and subscribe (once every peer exists)."""
        core = self._core()
        out: list[Output] = []
        for j in self.world.neighbours[self.index]:
            out.extend(core.peer_connected(self.world.keys[j], now))
        out.extend(core.subscribe(TOPIC, now))
        self._apply(out, now)

    def _core(self) -> GossipRouter:
        if self.core is None:
            raise RuntimeError(f"peer {self.index} used before it started")
        return self.core

    def deliver(self, src: int, msg: object, now: float) -> None:
        if isinstance(msg, Publish):
            self.world.publish_arrivals += 1
        out = self._core().handle_message(self.world.keys[src], msg, now)  # type: ignore[arg-type]
        self._apply(out, now)

    def fire(self, now: float) -> None:
        self._apply(self._core().tick(now), now)

    def next_deadline(self) -> float | None:
        return self._core().next_deadline()

    def disconnected(self, other: int, now: float) -> None:
        self._apply(self._core().peer_disconnected(self.world.keys[other], now), now)

    def publish(self, data: bytes, now: float) -> None:
        msg_id, out = self._core().publish(TOPIC, data, now)
        world = self.world
        if msg_id is not None:
            world.published_at[msg_id] = now
            world.publisher_of[msg_id] = self.index
            world.delivered[msg_id] = {self.index: now}
        self._apply(out, now)

    def _apply(self, out: list[Output], now: float) -> None:
        world = self.world
        for effect in out:
            match effect:
                case SendMessage(to=to, message=message):
                    self.io.send(world.index_of[to], message)
                case Delivered(msg_id=msg_id):
                    got = world.delivered.setdefault(msg_id, {})
                    if self.index in got:
                        raise InvariantViolation(
                            f"peer {self.index} delivered message {msg_id.hex()[:12]} twice"
                        )
                    got[self.index] = now
                case DeliveryCounted(msg_id=msg_id, delivered=n):
                    world.counted[msg_id] = n
                case PeerRateLimited() | ThrottledBy() | PublishThrottled():
                    world.throttles += 1
                case PeerMisbehaved():
                    world.misbehaved += 1
                case _:
                    assert_never(effect)


def _neighbours(rng: Any, n: int, connections: int) -> list[list[int]]:
    """Each peer dials ``connections // 2`` random others; links are two-way."""
    links: list[dict[int, None]] = [{} for _ in range(n)]
    dial = max(1, min(connections // 2, n - 1))
    for i in range(n):
        for j in rng.sample(range(n - 1), dial):
            j = j if j < i else j + 1
            links[i][j] = None
            links[j][i] = None
    return [list(d) for d in links]


def run(seed: int, cfg: GossipScenarioConfig) -> tuple[Simulator, dict[str, Any]]:
    net = Network(delay_base_s=0.005, delay_jitter_s=cfg.jitter_s, loss=cfg.loss)
    net.location_delay_s = [list(row) for row in _REGION_DELAY_S]
    sim = Simulator(seed, net, shared_node_rng=True)
    sim.events_limit = cfg.events_max
    rng = sim.rng
    world = _World(cfg)
    for i in range(cfg.peers):
        keys = KeyPair.from_seed(rng.getrandbits(256).to_bytes(32, "big"))
        world.signers.append(Signer(keys))
        world.keys.append(keys.public_key)
        world.index_of[keys.public_key] = i
        world.members[keys.public_key] = None
    world.neighbours = _neighbours(rng, cfg.peers, cfg.connections)
    for _ in range(cfg.peers):
        sim.add_node(lambda io: GossipPeer(io, world), location=rng.randrange(4))
    alive = list(range(cfg.peers))

    def join_all() -> None:
        for i in range(cfg.peers):
            sim.poke(i, lambda a: cast(GossipPeer, a).join(sim.now))

    sim.call_at(0.0, join_all)
    left: dict[int, float] = {}

    def leave() -> None:
        if len(alive) <= 2:
            return
        index = alive.pop(rng.randrange(len(alive)))
        sim.crash(index)
        left[index] = sim.now
        for j in world.neighbours[index]:
            if sim.is_up(j):
                sim.call_later(rng.uniform(0.1, cfg.detect_s), closer(j, index))

    def closer(j: int, gone: int) -> Callable[[], None]:
        """Peer ``j`` sees its connection to ``gone`` close."""

        def close() -> None:
            sim.poke(j, lambda a: cast(GossipPeer, a).disconnected(gone, sim.now))

        return close

    def publish() -> None:
        index = alive[rng.randrange(len(alive))]
        data = rng.getrandbits(8 * cfg.data_bytes).to_bytes(cfg.data_bytes, "big")
        sim.poke(index, lambda a: cast(GossipPeer, a).publish(data, sim.now))

    t0 = cfg.warmup_s
    t1 = t0 + cfg.phase_s
    for _ in range(cfg.messages):
        sim.call_at(rng.uniform(t0, t1), publish)
    for _ in range(round(cfg.leave * cfg.peers)):
        sim.call_at(rng.uniform(t0, t1), leave)
    total = t1 + cfg.heal_bound_s
    ok = True
    while ok and sim.now < t1:
        ok = sim.run_until(min(t1, sim.now + 1.0))
        report_progress(sim.now, t1)
    heal_s: float | None = None
    while ok and sim.now < total:
        if all(len(world.delivered[m].keys() & set(alive)) == len(alive) for m in world.delivered):
            heal_s = sim.now - t1
            break
        ok = sim.run_until(min(total, sim.now + 0.5))
        report_progress(sim.now, total)
    # let the last delivery receipts reach the publishers (accounting is measured too)
    if ok:
        ok = sim.run_until(sim.now + 5.0)
    figures = _figures(sim, world, alive, left, heal_s)
    if ok and sim.violation is None:
        if len(world.published_at) < cfg.messages:
            sim.fail(f"only {len(world.published_at)} of {cfg.messages} messages were published")
        elif figures["missing_deliveries"]:
            sim.fail(
                f"{figures['missing_deliveries']} (message, live peer) pairs never delivered "
                f"within {cfg.heal_bound_s:g} s of the heal"
            )
    return sim, figures


def _figures(
    sim: Simulator,
    world: _World,
    alive: list[int],
    left: dict[int, float],
    heal_s: float | None,
) -> dict[str, Any]:
    cfg = world.cfg
    live = sorted(alive)
    live_set = dict.fromkeys(live)
    n = len(live)
    t99: list[float] = []
    t100: list[float] = []
    offsets_all: list[float] = []
    missing = 0
    accounting: list[float] = []
    for msg_id, at in world.published_at.items():
        got = world.delivered[msg_id]
        offsets = sorted(t - at for i, t in got.items() if i in live_set)
        offsets_all.extend(offsets)
        missing += n - len(offsets)
        need99 = -(-99 * n // 100)
        t99.append(offsets[need99 - 1] if len(offsets) >= need99 else float("inf"))
        t100.append(offsets[-1] if len(offsets) == n else float("inf"))
        true_count = len(got) - 1  # deliveries by others (dead peers' included)
        if true_count > 0:
            accounting.append(world.counted.get(msg_id, 0) / true_count)
    offsets_all.sort()
    pairs = n * len(world.published_at)
    curve: list[list[float]] = []
    if offsets_all:
        # about 200 points however long the tail is
        step = max(cfg.coverage_step_s, round(offsets_all[-1] / 200, 3))
        steps = int(offsets_all[-1] / step) + 2
        for s in range(steps):
            t = s * step
            covered = bisect.bisect_right(offsets_all, t)
            curve.append([round(t, 6), round(covered / max(1, pairs), 6)])
    messages = len(world.published_at)
    deliveries = sum(len(d) - 1 for d in world.delivered.values())
    finite99 = [t for t in t99 if t != float("inf")]
    finite100 = [t for t in t100 if t != float("inf")]
    return {
        "loss": cfg.loss,
        "connections": cfg.connections,
        "messages": messages,
        "peers_left": len(left),
        "peers_live_end": n,
        "missing_deliveries": missing,
        "reached_every_live_peer": missing == 0 and messages > 0,
        "time_to_99_s": distribution(finite99),
        "time_to_100_s": distribution(finite100),
        "messages_reaching_99": len(finite99),
        "messages_reaching_100": len(finite100),
        "heal_seconds": None if heal_s is None else round(heal_s, 6),
        "duplicates_per_message": round(
            (world.publish_arrivals - deliveries) / max(1, messages), 3
        ),
        "duplicates_per_delivery": round(
            (world.publish_arrivals - deliveries) / max(1, deliveries), 3
        ),
        "delivery_counted_ratio": distribution(accounting),
        "throttle_events": world.throttles,
        "peer_misbehaved": world.misbehaved,
        "virtual_seconds": round(sim.now, 6),
        "series": {"coverage": curve},
        **sim.stats.as_dict(),
    }


def scenario(seed: int, peers: int, duration: float | None) -> ScenarioResult:
    """The registry entry: ``colonymesh simulate gossip --peers N --seed S [--duration D]``."""
    if peers < 3:
        raise ValueError("the gossip scenario needs at least 3 peers")
    cfg = replace(GossipScenarioConfig(), peers=peers)
    if duration is not None:
        if duration <= 0:
            raise ValueError("--duration must be positive")
        cfg = replace(cfg, phase_s=duration)
    sim, figures = run(seed, cfg)
    profile = {"loss": cfg.loss, "leave": cfg.leave, "jitter_s": cfg.jitter_s}
    return ScenarioResult(sim.violation, sim.violation_at, profile, figures)
