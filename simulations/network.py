"""The virtual network: how long a message takes, whether it arrives, and where it may go.

What it owns: the per-link delay model (a base latency between *locations*
plus uniform jitter, with optional per-directed-link overrides), random loss,
duplication, extra reordering delay, an optional per-node uplink bandwidth
(serialisation delay that queues behind earlier sends), slow nodes (gray
failures: a node whose every message takes longer), and partitions.

How partitions work: every node belongs to a *group* (0 unless told
otherwise) and a set of directed group pairs is blocked. A symmetric split
blocks both directions; an asymmetric one blocks a single direction (A hears
B but B does not hear A). The check happens when a message *arrives*, so a
partition also cuts messages already in flight.

Scaling: nothing here is per pair of nodes unless asked for. Latency is a
matrix over locations (a handful), partitions are over groups, and the
override tables (per-link specs, slow nodes) are dictionaries consulted
only when non-empty, so 10^5
nodes cost a few lists of 10^5 small ints.

Invariants: every random draw comes from the simulator's single seeded
``random.Random`` (passed in by the caller); the model never reads a clock.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LinkSpec:
    """An override for one directed link: its own delay and loss."""

    delay_s: float
    jitter_s: float = 0.0
    loss: float = 0.0


class Network:
    """Delay, loss, duplication, reordering, bandwidth and partitions for the simulator."""

    __slots__ = (
        "_free_at",
        "blocked",
        "delay_base_s",
        "delay_jitter_s",
        "duplicate",
        "groups",
        "links",
        "location_delay_s",
        "locations",
        "loss",
        "reorder",
        "reorder_window_s",
        "slow",
        "uplink_bytes_per_s",
    )

    def __init__(
        self,
        *,
        delay_base_s: float = 0.001,
        delay_jitter_s: float = 0.001,
        loss: float = 0.0,
        duplicate: float = 0.0,
        reorder: float = 0.0,
        reorder_window_s: float = 0.05,
    ) -> None:
        self.delay_base_s = delay_base_s
        self.delay_jitter_s = delay_jitter_s
        self.loss = loss
        self.duplicate = duplicate
        self.reorder = reorder
        self.reorder_window_s = reorder_window_s
        # Node -> location; location x location -> base latency. Empty matrix:
        # every pair uses delay_base_s.
        self.locations: list[int] = []
        self.location_delay_s: list[list[float]] = []
        self.links: dict[tuple[int, int], LinkSpec] = {}
        # Gray failures: node -> extra delay on everything it sends or receives.
        self.slow: dict[int, float] = {}
        self.groups: list[int] = []
        # Directed (src group, dst group) pairs that are cut. Mutated in place only:
        # the simulator's event loop holds a reference to this set and to groups.
        self.blocked: set[tuple[int, int]] = set()
        self.uplink_bytes_per_s: list[float] = []
        self._free_at: list[float] = []

    # -- topology ---------------------------------------------------------

    def add_node(self, location: int = 0, uplink_bytes_per_s: float = 0.0) -> None:
        """Called by the simulator for each new node, in index order."""
        self.locations.append(location)
        self.groups.append(0)
        self.uplink_bytes_per_s.append(uplink_bytes_per_s)
        self._free_at.append(0.0)

    # -- partitions -------------------------------------------------------

    def partition(self, sides: Sequence[Iterable[int]], *, one_way: bool = False) -> None:
        """Split the listed nodes into groups 1..len(sides); unlisted nodes stay in group 0.

        Symmetric by default: no message crosses between two listed sides.
        With ``one_way`` only messages from an earlier side to a later one
        are cut (side 0 cannot reach side 1, side 1 still reaches side 0).
        Group 0 (e.g. clients) keeps reaching and being reached by everyone.
        Replaces any partition in force.
        """
        self.heal()
        for group, side in enumerate(sides, start=1):
            for node in side:
                self.groups[node] = group
        n = len(sides)
        for a in range(1, n + 1):
            for b in range(a + 1, n + 1):
                self.blocked.add((a, b))
                if not one_way:
                    self.blocked.add((b, a))

    def block(self, src_group: int, dst_group: int) -> None:
        """Cut one direction between two groups (for hand-written scenarios)."""
        self.blocked.add((src_group, dst_group))

    def heal(self) -> None:
        """Remove every partition; all nodes return to group 0."""
        self.blocked.clear()
        groups = self.groups
        for i in range(len(groups)):
            groups[i] = 0

    def is_partitioned(self) -> bool:
        return bool(self.blocked)

    def can_reach(self, src: int, dst: int) -> bool:
        if not self.blocked:
            return True
        return (self.groups[src], self.groups[dst]) not in self.blocked

    # -- per-message draws ------------------------------------------------

    def draw_delivery(
        self, rng: random.Random, now: float, src: int, dst: int, size_bytes: int
    ) -> float:
        """The arrival time of one copy of a message, or -1.0 if it is lost."""
        link = self.links.get((src, dst)) if self.links else None
        if link is not None:
            if link.loss and rng.random() < link.loss:
                return -1.0
            delay = link.delay_s + link.jitter_s * rng.random()
        else:
            if self.loss and rng.random() < self.loss:
                return -1.0
            if self.location_delay_s:
                base = self.location_delay_s[self.locations[src]][self.locations[dst]]
            else:
                base = self.delay_base_s
            delay = base + self.delay_jitter_s * rng.random()
        if self.reorder and rng.random() < self.reorder:
            delay += self.reorder_window_s * rng.random()
        if self.slow:
            delay += self.slow.get(src, 0.0) + self.slow.get(dst, 0.0)
        start = now
        if size_bytes and self.uplink_bytes_per_s[src] > 0.0:
            start = max(now, self._free_at[src]) + size_bytes / self.uplink_bytes_per_s[src]
            self._free_at[src] = start
        return start + delay
