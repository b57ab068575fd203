"""A tiny sans-I/O core for testing the simulator: each node counts and broadcasts its count.

Its safety property: no peer ever sees a count from a node higher than that
node's own durable count. The correct adapter persists before it sends; the
broken one sends first, which a torn write or a crash between the two
exposes.
"""

from __future__ import annotations

import itertools
import random
import time
from dataclasses import dataclass, field

import pytest

from colonymesh.simulations.disk import SimDisk
from colonymesh.simulations.engine import InvariantViolation, NodeIO, Simulator
from colonymesh.simulations.faults import FaultInjector, FaultProfile
from colonymesh.simulations.network import LinkSpec


@dataclass(frozen=True, slots=True)
class Count:
    value: int


@dataclass(frozen=True, slots=True)
class PersistCount:
    value: int


@dataclass(frozen=True, slots=True)
class BroadcastCount:
    value: int


Effect = PersistCount | BroadcastCount


class CounterCore:
    """Sans-I/O: counts on a timer, remembers the highest count it heard from each peer."""

    def __init__(self, count: int, rng: random.Random, now: float, period_s: float) -> None:
        self.count = count
        self.period_s = period_s
        self.heard: dict[int, int] = {}
        self._next_at = now + rng.uniform(0.0, period_s)

    def next_deadline(self) -> float:
        return self._next_at

    def handle_timer(self, now: float) -> list[Effect]:
        self.count += 1
        self._next_at = now + self.period_s
        return [PersistCount(self.count), BroadcastCount(self.count)]

    def step(self, src: int, msg: Count) -> None:
        if msg.value > self.heard.get(src, 0):
            self.heard[src] = msg.value


@dataclass(slots=True)
class World:
    """State shared by the checkers across restarts: the highest count each node let out."""

    peers: list[int] = field(default_factory=list)
    seen_max: dict[int, int] = field(default_factory=dict)
    fire_times: list[tuple[int, float]] = field(default_factory=list)


class CounterAdapter:
    def __init__(self, io: NodeIO, world: World, *, broken: bool, period_s: float) -> None:
        self.io = io
        self.world = world
        self.broken = broken
        self.period_s = period_s
        self.core: CounterCore | None = None

    def start(self, now: float) -> None:
        records = self.io.disk.records
        count = records[-1] if records else 0
        if not isinstance(count, int):
            raise TypeError("unexpected record")
        self.core = CounterCore(count, self.io.rng, now, self.period_s)

    def _core(self) -> CounterCore:
        if self.core is None:
            raise RuntimeError("not started")
        return self.core

    def deliver(self, src: int, msg: object, now: float) -> None:
        if not isinstance(msg, Count):
            raise TypeError("unexpected message")
        core = self._core()
        core.step(src, msg)
        if msg.value > self.world.seen_max.get(src, 0):
            self.world.seen_max[src] = msg.value

    def fire(self, now: float) -> None:
        self.world.fire_times.append((self.io.index, now))
        effects = self._core().handle_timer(now)
        if self.broken:
            effects = effects[::-1]  # send before persist: the bug
        for effect in effects:
            match effect:
                case PersistCount(value):
                    self.io.persist([value])
                case BroadcastCount(value):
                    for peer in self.world.peers:
                        if peer != self.io.index:
                            self.io.send(peer, Count(value), size_bytes=16)

    def next_deadline(self) -> float | None:
        return None if self.core is None else self.core.next_deadline()


def build(
    seed: int, n: int, *, broken: bool = False, period_s: float = 0.01
) -> tuple[Simulator, World]:
    sim = Simulator(seed)
    world = World()
    world.peers = list(range(n))
    for _ in range(n):
        sim.add_node(lambda io: CounterAdapter(io, world, broken=broken, period_s=period_s))

    def check(index: int) -> None:
        if index < 0:
            return
        adapter = sim.adapter(index)
        if not isinstance(adapter, CounterAdapter) or adapter.core is None:
            return
        if adapter.core.count < world.seen_max.get(index, 0):
            raise InvariantViolation(
                f"node {index} is at count {adapter.core.count} but a peer saw "
                f"{world.seen_max[index]} from it"
            )

    sim.checkers.append(check)
    return sim, world


# -- tests -------------------------------------------------------------------


def _trace(seed: int) -> tuple[dict[str, int], list[tuple[int, float]], float]:
    sim, world = build(seed, 5)
    profile = FaultProfile(
        loss=0.1,
        duplicate=0.1,
        reorder=0.3,
        partition_interval_s=0.2,
        partition_duration_s=0.1,
        one_way_fraction=0.5,
        crash_interval_s=0.1,
        downtime_s=0.05,
        torn_write_fraction=0.5,
        down_max_fraction=0.6,
    )
    injector = FaultInjector(sim, profile, range(5))
    injector.start()
    assert sim.run_until(3.0)
    return sim.stats.as_dict(), world.fire_times, sim.now


def test_same_seed_same_run_different_seed_different_run() -> None:
    a = _trace(7)
    b = _trace(7)
    c = _trace(8)
    assert a == b
    assert a[1] != c[1]


def test_timers_fire_at_the_requested_virtual_times() -> None:
    sim, world = build(1, 3, period_s=0.25)
    assert sim.run_until(1.0)
    by_node: dict[int, list[float]] = {}
    for index, t in world.fire_times:
        by_node.setdefault(index, []).append(t)
    assert sorted(by_node) == [0, 1, 2]
    for times in by_node.values():
        gaps = [round(b - a, 9) for a, b in itertools.pairwise(times)]
        assert gaps and all(g == 0.25 for g in gaps)
    assert sim.now == 1.0


def test_lossy_profile_really_injects_every_fault() -> None:
    stats, _, _ = _trace(3)
    for counter in (
        "dropped_loss",
        "duplicated",
        "dropped_partition",
        "dropped_down",
        "crashes",
        "restarts",
        "torn_writes",
    ):
        assert stats[counter] > 0, counter
    assert stats["delivered"] > 1000


def test_one_way_partition_cuts_one_direction_only() -> None:
    sim, world = build(5, 2, period_s=0.01)
    sim.network.partition([[0], [1]], one_way=True)
    assert sim.run_until(0.5)
    assert world.seen_max.get(1, 0) > 10  # node 0 hears node 1
    assert 0 not in world.seen_max  # node 1 never hears node 0
    sim.network.heal()
    assert sim.run_until(1.0)
    assert world.seen_max[0] > 10


def test_bandwidth_serialises_sends_on_the_uplink() -> None:
    sim = Simulator(1)
    arrivals: list[float] = []

    class Sink:
        def start(self, now: float) -> None: ...
        def deliver(self, src: int, msg: object, now: float) -> None:
            arrivals.append(now)

        def fire(self, now: float) -> None: ...
        def next_deadline(self) -> float | None:
            return None

    a = sim.add_node(lambda io: Sink(), uplink_bytes_per_s=1_000_000.0)
    b = sim.add_node(lambda io: Sink())
    sim.network.delay_jitter_s = 0.0
    for _ in range(3):
        sim.send(a, b, "chunk", size_bytes=500_000)
    assert sim.run_until(10.0)
    assert [round(t, 6) for t in arrivals] == [0.501, 1.001, 1.501]


def test_disk_survives_crash_and_torn_write_keeps_only_a_prefix() -> None:
    sim, _world = build(11, 3)
    assert sim.run_until(0.5)
    durable = list(sim.disk(0).records)
    sim.crash(0)
    assert not sim.is_up(0) and sim.adapter(0) is None
    assert sim.disk(0).records == durable
    sim.restart(0)
    adapter = sim.adapter(0)
    assert isinstance(adapter, CounterAdapter) and adapter.core is not None
    assert adapter.core.count == durable[-1]
    # A torn crash hits the next write: that write is not acknowledged.
    sim.crash(1, torn_within_s=1.0)
    before = list(sim.disk(1).records)
    assert sim.run_until(0.6)
    assert not sim.is_up(1)
    assert sim.stats.torn_writes == 1
    assert sim.disk(1).records in (before, [*before, before[-1] + 1])


def test_checker_catches_the_core_that_sends_before_it_persists() -> None:
    # The correct core survives the hostile profile on every seed ...
    for seed in range(5):
        sim, _ = build(seed, 4)
        FaultInjector(sim, _crashy(), range(4)).start()
        assert sim.run_until(5.0), sim.violation
    # ... and the broken one is caught, with the time and event of the failure.
    caught = []
    for seed in range(5):
        sim, _ = build(seed, 4, broken=True)
        FaultInjector(sim, _crashy(), range(4)).start()
        if not sim.run_until(5.0):
            caught.append(seed)
            assert sim.violation is not None and "a peer saw" in sim.violation
            assert sim.violation_at is not None and sim.violation_at[0] <= 5.0
    assert caught


def _crashy() -> FaultProfile:
    return FaultProfile(
        crash_interval_s=0.05, downtime_s=0.02, torn_write_fraction=1.0, down_max_fraction=0.5
    )


def test_a_core_exception_is_a_finding_not_a_crash_of_the_simulator() -> None:
    sim, _ = build(2, 2)
    sim.send(0, 1, "not a Count")
    assert not sim.run_until(1.0)
    assert sim.violation is not None and sim.violation.startswith("TypeError")
    assert not sim.run_until(2.0)  # a stopped run stays stopped


def test_event_budget_bounds_a_run() -> None:
    sim, _ = build(2, 3)
    assert sim.run_until(100.0, events_max=500)
    assert sim.stats.events == 500
    assert sim.now < 100.0


def test_harness_speed_events_per_second() -> None:
    sim, _ = build(4, 50, period_s=0.05)
    FaultInjector(sim, FaultProfile(loss=0.05, duplicate=0.05, reorder=0.2), range(50)).start()
    started = time.perf_counter()
    assert sim.run_until(4.0)
    wall = time.perf_counter() - started
    rate = sim.stats.events / wall
    print(f"{sim.stats.events} events in {wall:.3f}s: {rate:,.0f} events/s")
    assert sim.stats.events > 100_000
    assert rate > 50_000  # loose: the CPU is shared; bench/ reports the real figure


def test_shared_node_rng_is_deterministic_and_builds_no_generator_per_node() -> None:
    def once() -> list[tuple[int, float]]:
        sim = Simulator(9, shared_node_rng=True)
        world = World()
        world.peers = list(range(4))
        for _ in range(4):
            sim.add_node(lambda io: CounterAdapter(io, world, broken=False, period_s=0.1))
        assert sim.run_until(1.0)
        return world.fire_times

    first = once()
    assert first == once() and len(first) > 20
    sim = Simulator(9, shared_node_rng=True)
    io = NodeIO(sim, 0, SimDisk())
    assert io.rng is sim.rng
    own = NodeIO(Simulator(9), 0, SimDisk())
    assert own.rng is own.rng  # built once, lazily, per incarnation


def test_location_latency_matrix_and_link_overrides() -> None:
    sim = Simulator(3)
    arrivals: dict[int, list[float]] = {}

    class Sink:
        def __init__(self, index: int) -> None:
            self.index = index

        def start(self, now: float) -> None: ...
        def deliver(self, src: int, msg: object, now: float) -> None:
            arrivals.setdefault(self.index, []).append(now)

        def fire(self, now: float) -> None: ...
        def next_deadline(self) -> float | None:
            return None

    net = sim.network
    net.delay_jitter_s = 0.0
    net.location_delay_s = [[0.001, 0.1], [0.1, 0.001]]  # two sites, 100 ms apart
    a = sim.add_node(lambda io: Sink(io.index), location=0)
    b = sim.add_node(lambda io: Sink(io.index), location=0)
    c = sim.add_node(lambda io: Sink(io.index), location=1)
    sim.send(a, b, "near")
    sim.send(a, c, "far")
    net.links[(b, a)] = LinkSpec(delay_s=0.5, loss=1.0)  # a dead link
    for _ in range(20):
        sim.send(b, a, "lost")
    assert sim.run_until(1.0)
    assert arrivals == {b: [0.001], c: [0.1]}
    assert sim.stats.dropped_loss == 20


def test_nodes_can_join_mid_run_and_leave_for_good() -> None:
    sim, world = build(6, 3, period_s=0.05)
    joined: list[int] = []

    def join() -> None:
        world.peers.append(sim.node_count)
        joined.append(
            sim.add_node(lambda io: CounterAdapter(io, world, broken=False, period_s=0.05))
        )

    sim.call_at(0.5, join)
    sim.call_at(0.5, lambda: sim.crash(0))  # churn: node 0 leaves and never returns
    assert sim.run_until(2.0)
    assert joined == [3]
    assert world.seen_max[3] > 10  # the newcomer's counts reach the others
    frozen = world.seen_max[0]
    assert sim.run_until(3.0)
    assert world.seen_max[0] == frozen and not sim.is_up(0)


def test_node_clocks_drift_and_offset() -> None:
    sim = Simulator(1)
    world = World()
    world.peers = [0, 1]
    fast = sim.add_node(
        lambda io: CounterAdapter(io, world, broken=False, period_s=0.25),
        clock_rate=2.0,
        clock_offset_s=1e6,
    )
    plain = sim.add_node(lambda io: CounterAdapter(io, world, broken=False, period_s=0.25))
    assert sim.run_until(1.0)
    fires: dict[int, list[float]] = {fast: [], plain: []}
    for index, t in world.fire_times:
        fires[index].append(t)
    # The fast node's core sees its own clock (offset, double speed) and fires twice as often.
    assert all(t > 1e6 for t in fires[fast]) and all(t < 1.0 for t in fires[plain])
    assert len(fires[fast]) in (7, 8, 9) and len(fires[plain]) in (3, 4, 5)
    gaps = {round(b - a, 6) for a, b in itertools.pairwise(fires[fast])}
    assert gaps == {0.25}  # in local time
    with pytest.raises(ValueError):
        sim.set_clock(0, rate=0.0)
