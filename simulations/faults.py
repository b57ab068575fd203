"""Fault profiles drawn from a seed, and the injector that plays one out.

What it owns: :class:`FaultProfile`, the description of how hostile one run
is (loss, duplication, delay and reordering of messages; how often and how
long partitions happen, and how many are one-way; how often nodes crash,
for how long, and how often a crash tears the last write; gray failures,
where one node turns slow; how far node clocks drift and are offset), and
:class:`FaultInjector`, which turns a profile into partition and crash
events on the simulator during the safety phase, then heals everything.

Why a drawn profile: a fixed fault mix explores one corner of the space. As
in TigerBeetle's VOPR, each seed first draws *which* faults are on and how
strong they are, so a sweep covers calm runs, lossy runs, crash storms and
partition storms; the profile is printed with a failing seed.

Invariant: all draws come from the simulator's single ``random.Random``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from colonymesh.simulations.engine import Simulator

# An armed torn crash waits this long for the node's next write before it
# crashes the node plainly.
_TORN_WINDOW_S = 0.2


@dataclass(frozen=True, slots=True)
class FaultProfile:
    """How hostile a run is. Rates are per message; intervals are mean seconds between events."""

    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    delay_base_s: float = 0.001
    delay_jitter_s: float = 0.001
    partition_interval_s: float = 0.0  # 0: no partitions
    partition_duration_s: float = 0.0
    one_way_fraction: float = 0.0  # of partitions that cut one direction only
    crash_interval_s: float = 0.0  # 0: no crashes
    downtime_s: float = 0.0
    torn_write_fraction: float = 0.0  # of crashes that tear the node's last write
    down_max_fraction: float = 0.0  # at most this share of the targets down at once
    slow_interval_s: float = 0.0  # 0: no gray failures (a node turns slow for a while)
    slow_extra_delay_s: float = 0.0
    clock_drift: float = 0.0  # each target's clock runs at 1 +- up to this rate
    clock_offset_max_s: float = 0.0  # each target's clock starts up to this far ahead

    @classmethod
    def draw(cls, rng: random.Random) -> FaultProfile:
        """Draw a profile: each fault class is on or off, then its strength."""

        def on(p: float) -> bool:
            return rng.random() < p

        def pick(options: Sequence[float]) -> float:
            return options[rng.randrange(len(options))]

        partitions = on(0.6)
        crashes = on(0.6)
        slow = on(0.3)
        return cls(
            loss=pick((0.01, 0.05, 0.1, 0.2)) if on(0.6) else 0.0,
            duplicate=pick((0.01, 0.05, 0.1)) if on(0.4) else 0.0,
            reorder=pick((0.05, 0.2, 0.5)) if on(0.5) else 0.0,
            delay_base_s=pick((0.0005, 0.002, 0.01)),
            delay_jitter_s=pick((0.0005, 0.005, 0.02)),
            partition_interval_s=pick((0.5, 2.0, 5.0)) if partitions else 0.0,
            partition_duration_s=pick((0.2, 1.0, 3.0)) if partitions else 0.0,
            one_way_fraction=pick((0.0, 0.3, 0.7)) if partitions else 0.0,
            crash_interval_s=pick((0.3, 1.0, 3.0)) if crashes else 0.0,
            downtime_s=pick((0.1, 0.5, 2.0)) if crashes else 0.0,
            torn_write_fraction=pick((0.0, 0.3, 0.8)) if crashes else 0.0,
            down_max_fraction=pick((0.34, 0.5, 1.0)) if crashes else 0.0,
            slow_interval_s=pick((1.0, 4.0)) if slow else 0.0,
            slow_extra_delay_s=pick((0.05, 0.3, 1.0)) if slow else 0.0,
            clock_drift=pick((0.001, 0.05, 0.2)) if on(0.5) else 0.0,
            clock_offset_max_s=pick((1.0, 1e6)) if on(0.5) else 0.0,
        )

    def draw_clock(self, rng: random.Random) -> tuple[float, float]:
        """(rate, offset) of one target's clock, for ``Simulator.add_node``."""
        rate = 1.0 + self.clock_drift * (2.0 * rng.random() - 1.0) if self.clock_drift else 1.0
        offset = self.clock_offset_max_s * rng.random() if self.clock_offset_max_s else 0.0
        return rate, offset

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def describe(self) -> str:
        return " ".join(f"{k}={v:g}" for k, v in self.as_dict().items())


class FaultInjector:
    """Plays a :class:`FaultProfile` on a simulator over a set of target nodes until stopped."""

    __slots__ = ("_active", "focus", "partitions", "profile", "sim", "slowdowns", "targets")

    def __init__(
        self,
        sim: Simulator,
        profile: FaultProfile,
        targets: Sequence[int],
        *,
        focus: Callable[[], int | None] | None = None,
    ) -> None:
        """``focus`` names the node whose failure hurts most (a Raft leader, say).

        Half of the crashes and of the single-node isolations then hit it,
        when it is up, rather than a uniformly drawn target.
        """
        self.sim = sim
        self.profile = profile
        self.targets = list(targets)
        self.focus = focus
        self.partitions = 0
        self.slowdowns = 0
        self._active = False

    def start(self) -> None:
        """Apply the per-message faults and schedule the first partition and crash."""
        p = self.profile
        net = self.sim.network
        net.loss = p.loss
        net.duplicate = p.duplicate
        net.reorder = p.reorder
        net.delay_base_s = p.delay_base_s
        net.delay_jitter_s = p.delay_jitter_s
        self._active = True
        if p.partition_interval_s > 0.0:
            self.sim.call_later(self._exp(p.partition_interval_s), self._partition)
        if p.crash_interval_s > 0.0:
            self.sim.call_later(self._exp(p.crash_interval_s), self._crash)
        if p.slow_interval_s > 0.0:
            self.sim.call_later(self._exp(p.slow_interval_s), self._slow_down)

    def heal(self) -> None:
        """Stop injecting; lift every partition and message fault; restart crashed targets."""
        self._active = False
        net = self.sim.network
        net.loss = 0.0
        net.duplicate = 0.0
        net.reorder = 0.0
        net.slow.clear()
        net.heal()
        for index in self.targets:
            self.sim.cancel_crash(index)
            self.sim.restart(index)

    def _exp(self, mean_s: float) -> float:
        return self.sim.rng.expovariate(1.0 / mean_s)

    def _partition(self) -> None:
        if not self._active:
            return
        rng = self.sim.rng
        p = self.profile
        nodes = self.targets[:]
        rng.shuffle(nodes)
        kind = rng.randrange(2)
        if kind == 0:  # isolate one node
            focus = self._focus()
            if focus is not None and focus in nodes:
                nodes.remove(focus)
                nodes.insert(0, focus)
            sides: list[list[int]] = [nodes[:1], nodes[1:]]
        else:  # a random split into two sides
            cut = 1 + rng.randrange(max(1, len(nodes) - 1))
            sides = [nodes[:cut], nodes[cut:]]
        one_way = rng.random() < p.one_way_fraction
        self.sim.network.partition(sides, one_way=one_way)
        self.partitions += 1
        self.sim.call_later(self._exp(p.partition_duration_s), self._lift_partition)

    def _lift_partition(self) -> None:
        if not self._active:
            return
        self.sim.network.heal()
        self.sim.call_later(self._exp(self.profile.partition_interval_s), self._partition)

    def _slow_down(self) -> None:
        """A gray failure: one node's messages crawl for a while (one at a time)."""
        if not self._active:
            return
        sim = self.sim
        victim = self.targets[sim.rng.randrange(len(self.targets))]
        focus = self._focus()
        if focus is not None:
            victim = focus
        sim.network.slow.clear()
        sim.network.slow[victim] = self.profile.slow_extra_delay_s
        self.slowdowns += 1

        def recover() -> None:
            if self._active:
                sim.network.slow.clear()
                sim.call_later(self._exp(self.profile.slow_interval_s), self._slow_down)

        sim.call_later(self._exp(self.profile.slow_interval_s), recover)

    def _crash(self) -> None:
        if not self._active:
            return
        sim = self.sim
        p = self.profile
        up = [i for i in self.targets if sim.is_up(i)]
        down = len(self.targets) - len(up)
        if up and down + 1 <= p.down_max_fraction * len(self.targets):
            victim = up[sim.rng.randrange(len(up))]
            focus = self._focus()
            if focus is not None and focus in up:
                victim = focus
            torn_within_s = _TORN_WINDOW_S if sim.rng.random() < p.torn_write_fraction else 0.0
            sim.crash(victim, torn_within_s=torn_within_s)
            delay_s = torn_within_s + self._exp(p.downtime_s)
            sim.call_later(delay_s, lambda: self._restart(victim))
        sim.call_later(self._exp(p.crash_interval_s), self._crash)

    def _focus(self) -> int | None:
        """The focus node half of the time (one draw, only when a focus is set)."""
        if self.focus is None or self.sim.rng.random() < 0.5:
            return None
        return self.focus()

    def _restart(self, index: int) -> None:
        if self._active:
            self.sim.restart(index)
