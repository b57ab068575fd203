"""The deterministic simulator: a virtual clock, an event heap and one seeded random source.

What it owns: time, the event queue, the nodes (each a sans-I/O core wrapped
in an :class:`Adapter`), their simulated disks, crashes and restarts, the
virtual :class:`~colonymesh.simulations.network.Network`, and the checkers
that run after every step. Models: FoundationDB's simulation and
TigerBeetle's VOPR.

How it works: a heap of ``(time, seq, kind, node, a, b)`` tuples; ``seq`` is
a global counter, so ties in time resolve in insertion order and the tuple
comparison never reaches the payload. One thread pops an event, sets
``now`` to its time and calls the node's adapter synchronously (never a trio
task: trio randomises scheduling). After each call the simulator asks the
adapter for ``next_deadline()`` and re-arms that node's single timer; a timer
superseded by a later re-arm is recognised by its generation number and
skipped. Then every checker runs; the first checker failure or exception out
of a core stops the run and is recorded with the virtual time and event
count, so the same seed reproduces it.

Determinism: every random draw (network, faults, the per-node
``random.Random`` handed to cores) comes from ``Simulator.rng``, which is
seeded once. Nothing iterates a set or orders by ``id()``; the wall clock is
read by no one here.

Clocks: each node may have its own clock (``offset + rate * t``); cores are
fed times on that clock and their deadlines are read on it, so drift and
arbitrary time origins are faults like any other.

Limits: ``events_limit`` bounds a run (a message storm becomes a finding,
not a hung sweep), and 200,000 events at one virtual instant count as a
livelock.

Outside actions: ``call_at`` schedules a callback (fault injection, a
workload, a phase change); ``poke`` runs an action on one node's adapter
as a step of that node (an operator request, an API call).

The adapter contract (what a driver of a sans-I/O core does, in the
simulator exactly as in the real trio driver): on ``start`` build the core
from ``io.disk.records`` (empty on first boot); on ``deliver`` and ``fire``
feed the core, then apply its effects in order -- persist through
``io.persist`` (returns only when durable), *then* send through ``io.send``,
*then* apply committed work. ``io.persist`` may raise :class:`NodeCrashed`
(a crash mid-write); the adapter lets it propagate and the simulator
discards the adapter with all its volatile state.
"""

from __future__ import annotations

import heapq
import logging
import math
import random
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from colonymesh.simulations.disk import SimDisk
from colonymesh.simulations.network import Network

log = logging.getLogger("colonymesh.simulations")

_DELIVER = 0
_TIMER = 1
_CALL = 2
_CRASH = 3
_RESTART = 4

# A core that keeps scheduling work at the same virtual instant is stuck.
_SAME_INSTANT_EVENTS_MAX = 200_000


class InvariantViolation(Exception):
    """A checker found a safety or liveness property broken."""


class NodeCrashed(Exception):
    """Raised inside an adapter when its node crashes mid-write; the simulator catches it."""


class Adapter(Protocol):
    """Wraps one sans-I/O core so the simulator can drive it."""

    def start(self, now: float) -> None:
        """Boot (or reboot after a crash) from the node's disk."""

    def deliver(self, src: int, msg: object, now: float) -> None:
        """A message from node ``src`` arrived."""

    def fire(self, now: float) -> None:
        """The deadline the core asked for has come."""

    def next_deadline(self) -> float | None:
        """When the core next wants ``fire``; ``None`` for never."""


AdapterFactory = Callable[["NodeIO"], Adapter]


class NodeIO:
    """What an adapter may do to the world: send, persist, read the time, draw randomness."""

    __slots__ = ("_rng", "_rng_seed", "_sim", "clock_offset_s", "clock_rate", "disk", "index")

    def __init__(self, sim: Simulator, index: int, disk: SimDisk) -> None:
        self._sim = sim
        self.index = index
        self.disk = disk
        # This node's clock: local = offset + rate * virtual time (see Simulator.set_clock).
        self.clock_rate = 1.0
        self.clock_offset_s = 0.0
        # A fresh seed is drawn from the simulator's generator at every (re)start;
        # the generator itself (2.5 kB of state) is only built if the core uses it.
        self._rng_seed = 0
        self._rng: random.Random | None = None

    @property
    def rng(self) -> random.Random:
        """This incarnation's random source, derived from the run's seed.

        With ``Simulator(shared_node_rng=True)`` every node draws from the
        simulator's own generator instead: still deterministic, and it saves
        2.5 kB per node when 10^5 nodes each want randomness.
        """
        if self._sim.shared_node_rng:
            return self._sim.rng
        if self._rng is None:
            self._rng = random.Random(self._rng_seed)
        return self._rng

    def _reseed(self, seed: int) -> None:
        self._rng_seed = seed
        self._rng = None

    @property
    def now(self) -> float:
        """The time on this node's own clock (what its core is fed)."""
        return self.local(self._sim.now)

    def local(self, t: float) -> float:
        return self.clock_offset_s + self.clock_rate * t

    def virtual(self, local_t: float) -> float:
        """The earliest virtual time at which this node's clock reads ``local_t`` or later."""
        t = (local_t - self.clock_offset_s) / self.clock_rate
        while self.clock_offset_s + self.clock_rate * t < local_t:
            t = math.nextafter(t, math.inf)  # never fire a timer a rounding error early
        return t

    def send(self, dst: int, msg: object, size_bytes: int = 0) -> None:
        self._sim.send(self.index, dst, msg, size_bytes)

    def persist(self, batch: Sequence[object]) -> None:
        """Write and fsync ``batch``; raises :class:`NodeCrashed` if a torn crash was armed."""
        self._sim.persist(self.index, batch)


class SimStats:
    """Counters of what the simulator did; all of them are deterministic for a seed."""

    __slots__ = (
        "calls",
        "crashes",
        "delivered",
        "dropped_down",
        "dropped_loss",
        "dropped_partition",
        "duplicated",
        "events",
        "restarts",
        "sent",
        "timers",
        "torn_writes",
    )

    def __init__(self) -> None:
        self.events = 0
        self.sent = 0
        self.delivered = 0
        self.dropped_loss = 0
        self.dropped_partition = 0
        self.dropped_down = 0
        self.duplicated = 0
        self.timers = 0
        self.calls = 0
        self.crashes = 0
        self.restarts = 0
        self.torn_writes = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in SimStats.__slots__}


class _Node:
    __slots__ = (
        "adapter",
        "crash_armed",
        "factory",
        "index",
        "io",
        "skewed",
        "timer_at",
        "timer_gen",
        "up",
    )

    def __init__(self, index: int, factory: AdapterFactory, io: NodeIO) -> None:
        self.index = index
        self.factory = factory
        self.io = io
        self.adapter: Adapter | None = None
        self.up = False
        self.timer_gen = 0
        self.timer_at: float | None = None
        self.crash_armed = False
        self.skewed = False  # its clock differs from virtual time


class Simulator:
    """Single-threaded discrete-event simulation of many sans-I/O nodes."""

    __slots__ = (
        "_heap",
        "_nodes",
        "_seq",
        "checkers",
        "events_limit",
        "network",
        "now",
        "on_crash",
        "on_restart",
        "rng",
        "shared_node_rng",
        "stats",
        "violation",
        "violation_at",
    )

    def __init__(
        self, seed: int, network: Network | None = None, *, shared_node_rng: bool = False
    ) -> None:
        self.rng = random.Random(seed)
        self.shared_node_rng = shared_node_rng
        self.now = 0.0
        self.network = network if network is not None else Network()
        self.stats = SimStats()
        # Called after every step with the index of the node that stepped (-1: none).
        self.checkers: list[Callable[[int], None]] = []
        self.on_crash: list[Callable[[int], None]] = []
        self.on_restart: list[Callable[[int], None]] = []
        self.violation: str | None = None
        self.violation_at: tuple[float, int] | None = None
        self.events_limit = 1 << 62
        self._heap: list[tuple[float, int, int, int, Any, Any]] = []
        self._seq = 0
        self._nodes: list[_Node] = []

    # -- building ---------------------------------------------------------

    def add_node(
        self,
        factory: AdapterFactory,
        *,
        location: int = 0,
        uplink_bytes_per_s: float = 0.0,
        clock_rate: float = 1.0,
        clock_offset_s: float = 0.0,
    ) -> int:
        """Add a node and boot it now; returns its index (its address on the network)."""
        index = len(self._nodes)
        self.network.add_node(location, uplink_bytes_per_s)
        node = _Node(index, factory, NodeIO(self, index, SimDisk()))
        self._nodes.append(node)
        self.set_clock(index, rate=clock_rate, offset_s=clock_offset_s)
        self._boot(node)
        return index

    @property
    def node_count(self) -> int:
        return len(self._nodes)

    def is_up(self, index: int) -> bool:
        return self._nodes[index].up

    def adapter(self, index: int) -> Adapter | None:
        """The live adapter of a node (``None`` while it is down)."""
        return self._nodes[index].adapter

    def set_clock(self, index: int, *, rate: float = 1.0, offset_s: float = 0.0) -> None:
        """Give a node its own clock: it reads ``offset_s + rate * t`` at virtual time ``t``.

        Cores are fed local times and their deadlines are read as local
        times, so a drifting clock (``rate`` != 1) makes a node's timeouts
        fire early or late, and an offset checks that a core assumes no
        particular origin of time. Set it before the node boots (or at a
        restart, or through ``add_node``): a clock that jumps while a core
        runs may run backwards.
        """
        if rate <= 0.0:
            raise ValueError("a clock rate must be positive")
        node = self._nodes[index]
        node.io.clock_rate = rate
        node.io.clock_offset_s = offset_s
        node.skewed = rate != 1.0 or offset_s != 0.0

    def disk(self, index: int) -> SimDisk:
        return self._nodes[index].io.disk

    # -- scheduling -------------------------------------------------------

    def _push(self, t: float, kind: int, node: int, a: Any, b: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, kind, node, a, b))

    def call_at(self, t: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` at virtual time ``t`` (not before now); checkers run after it."""
        self._push(max(t, self.now), _CALL, -1, None, fn)

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> None:
        self.call_at(self.now + delay_s, fn)

    # -- the network ------------------------------------------------------

    def send(self, src: int, dst: int, msg: object, size_bytes: int = 0) -> None:
        """Put one message on the wire (loss, delay, duplication drawn now)."""
        stats = self.stats
        stats.sent += 1
        net = self.network
        rng = self.rng
        now = self.now
        t = net.draw_delivery(rng, now, src, dst, size_bytes)
        if t < 0.0:
            stats.dropped_loss += 1
        else:
            self._seq += 1
            heapq.heappush(self._heap, (t, self._seq, _DELIVER, dst, src, msg))
        if net.duplicate and rng.random() < net.duplicate:
            t2 = net.draw_delivery(rng, now, src, dst, 0)
            if t2 >= 0.0:
                stats.duplicated += 1
                self._seq += 1
                heapq.heappush(self._heap, (t2, self._seq, _DELIVER, dst, src, msg))

    # -- disks, crashes and restarts --------------------------------------

    def persist(self, index: int, batch: Sequence[object]) -> None:
        node = self._nodes[index]
        if node.crash_armed:
            node.io.disk.append_torn(batch, self.rng)
            self.stats.torn_writes += 1
            raise NodeCrashed(f"node {index} crashed while writing {len(batch)} records")
        node.io.disk.append_synced(batch)

    def crash(self, index: int, *, torn_within_s: float = 0.0) -> None:
        """Crash a node now; with ``torn_within_s`` > 0, at its next write if that comes soon.

        A torn crash is *armed*: the node dies in the middle of its next
        persist (losing a random suffix of that batch), or plainly after
        ``torn_within_s`` if it writes nothing before then.
        """
        node = self._nodes[index]
        if not node.up:
            return
        if torn_within_s > 0.0:
            node.crash_armed = True
            self._push(self.now + torn_within_s, _CRASH, index, None, None)
            return
        self._crash_now(node)

    def cancel_crash(self, index: int) -> None:
        """Disarm a pending torn crash (e.g. when the faults are healed)."""
        self._nodes[index].crash_armed = False

    def _crash_now(self, node: _Node) -> None:
        node.up = False
        node.adapter = None
        node.crash_armed = False
        node.timer_gen += 1
        node.timer_at = None
        self.stats.crashes += 1
        for hook in self.on_crash:
            hook(node.index)

    def restart(self, index: int) -> None:
        """Boot a crashed node from its disk (no-op if it is up)."""
        node = self._nodes[index]
        if node.up:
            return
        self.stats.restarts += 1
        self._boot(node)
        for hook in self.on_restart:
            hook(index)

    def restart_at(self, t: float, index: int) -> None:
        self._push(max(t, self.now), _RESTART, index, None, None)

    def _boot(self, node: _Node) -> None:
        node.io._reseed(self.rng.getrandbits(64))
        adapter = node.factory(node.io)
        node.adapter = adapter
        node.up = True
        try:
            adapter.start(node.io.now)
        except NodeCrashed:
            self._crash_now(node)
            return
        self._rearm(node, adapter)

    def poke(self, index: int, action: Callable[[Adapter], None]) -> bool:
        """Act on a live node from outside its message flow (an operator, an API call).

        Runs ``action(adapter)`` as a step of that node: a crash mid-write is
        handled, the timer re-armed and the checkers run, as for a delivery.
        Returns False if the node is down. Call it from a scheduled callback.
        """
        node = self._nodes[index]
        adapter = node.adapter
        if adapter is None:
            return False
        try:
            action(adapter)
        except NodeCrashed:
            self._crash_now(node)
        else:
            self._rearm(node, adapter)
        for check in self.checkers:
            check(index)
        return True

    def _rearm(self, node: _Node, adapter: Adapter) -> None:
        d = adapter.next_deadline()
        if d is None or d == math.inf:
            if node.timer_at is not None:
                node.timer_gen += 1
                node.timer_at = None
        elif d != node.timer_at:
            node.timer_gen += 1
            node.timer_at = d
            self._seq += 1
            if node.skewed:
                d = node.io.virtual(d)
            t = d if d > self.now else self.now
            heapq.heappush(self._heap, (t, self._seq, _TIMER, node.index, node.timer_gen, None))

    # -- running ----------------------------------------------------------

    def run_until(self, t_end: float, *, events_max: int = 0) -> bool:
        """Process events up to virtual time ``t_end``; False if a violation stopped the run.

        ``events_max`` > 0 bounds the events processed by this call. The
        whole run is also bounded by ``events_limit``: a core that floods the
        network cannot hang a sweep, and exhausting the limit is a finding.
        """
        if self.violation is not None:
            return False
        heap = self._heap
        pop = heapq.heappop
        nodes = self._nodes
        checkers = self.checkers
        stats = self.stats
        blocked = self.network.blocked
        groups = self.network.groups
        budget = events_max if events_max > 0 else -1
        left = self.events_limit - stats.events
        if left <= 0:
            self._fail(f"event limit of {self.events_limit} reached (a message or timer storm?)")
            return False
        if budget < 0 or budget > left:
            budget = left
        last_t = -1.0
        same_instant = 0
        events = 0
        try:
            while heap and heap[0][0] <= t_end and budget != 0:
                t, _seq, kind, index, a, b = pop(heap)
                budget -= 1
                events += 1
                if kind == _TIMER and (nodes[index].adapter is None or a != nodes[index].timer_gen):
                    continue  # superseded or the node died: nothing happens, not livelock
                if t == last_t:
                    same_instant += 1
                    if same_instant > _SAME_INSTANT_EVENTS_MAX:
                        self._fail(
                            f"livelock: over {_SAME_INSTANT_EVENTS_MAX} events at t={t}", events
                        )
                        return False
                else:
                    last_t = t
                    same_instant = 0
                self.now = t
                if kind == _CALL:
                    stats.calls += 1
                    b()
                    for check in checkers:
                        check(-1)
                    continue
                node = nodes[index]
                if kind == _DELIVER:
                    adapter = node.adapter
                    if adapter is None:
                        stats.dropped_down += 1
                        continue
                    if blocked and (groups[a], groups[index]) in blocked:
                        stats.dropped_partition += 1
                        continue
                    stats.delivered += 1
                    try:
                        adapter.deliver(a, b, node.io.local(t) if node.skewed else t)
                    except NodeCrashed:
                        self._crash_now(node)
                    else:
                        self._rearm(node, adapter)
                elif kind == _TIMER:
                    adapter = node.adapter
                    if adapter is None or a != node.timer_gen:
                        continue  # superseded or the node died
                    stats.timers += 1
                    node.timer_at = None
                    try:
                        adapter.fire(node.io.local(t) if node.skewed else t)
                    except NodeCrashed:
                        self._crash_now(node)
                    else:
                        self._rearm(node, adapter)
                elif kind == _CRASH:
                    if node.up and node.crash_armed:
                        self._crash_now(node)
                elif kind == _RESTART:
                    self.restart(index)
                for check in checkers:
                    check(index)
        except InvariantViolation as exc:
            self._fail(str(exc), events)
            return False
        except Exception as exc:  # a core or adapter raised: that is a finding too
            log.debug("exception at t=%s", self.now, exc_info=True)
            self._fail(f"{type(exc).__name__}: {exc}", events)
            return False
        finally:
            stats.events += events
        if budget == 0 and heap and heap[0][0] <= t_end:
            if self.stats.events >= self.events_limit:
                self._fail(
                    f"event limit of {self.events_limit} reached (a message or timer storm?)"
                )
                return False
            return True  # stopped by the caller's event budget, not at t_end
        self.now = max(self.now, t_end)
        return True

    def fail(self, message: str) -> None:
        """Record a violation found outside the event loop (e.g. by an end-of-phase check)."""
        if self.violation is None:
            self._fail(message)

    def _fail(self, message: str, events_uncounted: int = 0) -> None:
        self.violation = message
        self.violation_at = (self.now, self.stats.events + events_uncounted)
        log.info("violation at t=%.6f: %s", self.now, message)

    def pending_events(self) -> int:
        return len(self._heap)
