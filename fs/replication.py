"""Keeping k replicas of every root: the sans-I/O repair core of one peer.

What it owns: for each root CID this peer holds in full (pinned), when to
check its replicas next, which peers it has asked to replicate it and until
when that ask counts. The unit of replication is a *root* (a file or folder
DAG): a replica is a peer that holds every block under the root, pinned, and
announces the root as a DHT provider record. Blocks are not announced one by
one: a 1 GiB file is ~4,000 blocks, and a record per block would multiply
DHT traffic by that; a holder repairs its own missing or rotten blocks by
re-walking the root (the exchange session loads what is local and fetches
the rest), so per-root records are enough for repair.

How it works
------------
* `track(root)` when this peer holds a root; a check is scheduled at once
  plus a random jitter (so the replicas of one root do not all check at
  the same instant) and then every `check_interval_s`.
* At a due check the core emits `CheckReplicas(root)`. The driver finds the
  providers (DHT provider records), probes them and the peers closest to the
  root (DHT FIND_NODE on the root's key) for liveness and possession (a
  WANT_HAVES), and answers `on_replicas(root, holders, live_closest, now)`:
  `holders` are the live peers that said HAVE; `live_closest` are live peers,
  closest to the root first.
* **One coordinator per root.** Every holder computes the same rule: the
  coordinator is the holder that comes first in `live_closest` order (holders
  absent from it sort after, by peer id). Only the coordinator acts, so k
  surviving replicas do not each recruit a new one. Views can differ for a
  while (DHT lookups converge); two coordinators at once only over-replicate,
  which is safe.
* The coordinator counts `holders` plus its asks still running; for the
  deficit up to `k` it emits `AskReplicate(peer, root)` to the closest live
  peers that hold nothing yet and have not failed an ask recently. An ask
  runs `repair_timeout_s`; one that has not turned into a holder by then puts
  the peer on a cooldown of `failed_cooldown_s` for that root.
* `replicate_requested(root, from, now)` (we were asked): the core emits
  `FetchRoot(root, sources=(asker,))` once; the driver fetches the whole DAG, pins it,
  announces it and calls `on_fetched(root, ok, now)`, which tracks it.

Invariants: at most `asks_per_check_max` asks per check; a root is fetched
by at most one `FetchRoot` at a time, and at most `fetches_max` roots at
once (a member cannot make us fetch without bound); nothing is ever iterated from a set
where order matters; the peer's own id never appears in an `AskReplicate`.
Pure: no I/O, no clock, randomness only from the injected `random.Random`.

Driver contract: call `on_timeout(now)` at `next_deadline()`; answer every
`CheckReplicas` with `on_replicas` (or `on_check_failed`); carry out every
`AskReplicate` by messaging the peer (who calls `replicate_requested`);
carry out `FetchRoot` and report with `on_fetched`; call `untrack` when the
root is unpinned.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, NewType

from colonymesh.fs.cid import Cid
from colonymesh.fs.errors import FsUsageError

PeerId = NewType("PeerId", str)

REPLICATION_FACTOR_DEFAULT: Final = 3


def provider_key(root: Cid) -> bytes:
    """The DHT key a root is announced under: its canonical CIDv1 bytes (v0 names the same)."""
    return root.to_v1().to_bytes()


@dataclass(frozen=True, slots=True)
class ReplicationConfig:
    k: int = REPLICATION_FACTOR_DEFAULT
    check_interval_s: float = 600.0
    check_jitter_s: float = 60.0  # first check after a uniform draw in [0, jitter]
    repair_timeout_s: float = 300.0
    failed_cooldown_s: float = 1800.0
    asks_per_check_max: int = 8
    fetches_max: int = 4  # replica fetches at once; more requests are refused (the asker retries)
    roots_max: int = 1_000_000

    def __post_init__(self) -> None:
        if self.k < 1:
            raise FsUsageError("the replication factor k must be at least 1")
        if self.check_interval_s <= 0 or self.repair_timeout_s <= 0:
            raise FsUsageError("intervals must be positive")
        if self.check_jitter_s < 0 or self.failed_cooldown_s < 0:
            raise FsUsageError("jitter and cooldown must not be negative")
        if self.asks_per_check_max < 1 or self.fetches_max < 1:
            raise FsUsageError("asks_per_check_max and fetches_max must be at least 1")


# --- effects ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckReplicas:
    """Find and probe the replicas of `root`; answer with `on_replicas`."""

    root: Cid


@dataclass(frozen=True, slots=True)
class AskReplicate:
    """Ask `peer` to fetch, pin and announce `root`."""

    peer: PeerId
    root: Cid


@dataclass(frozen=True, slots=True)
class FetchRoot:
    """Fetch the whole DAG under `root`, pin it, announce it; report `on_fetched`.

    `sources` hold the root (the peer that asked): ask them before the DHT, whose
    provider records may not name a holder yet (an announcement still in flight).
    """

    root: Cid
    sources: tuple[PeerId, ...] = ()


Effect = CheckReplicas | AskReplicate | FetchRoot


# --- pure planning ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RepairPlan:
    coordinator: PeerId | None
    deficit: int
    targets: tuple[PeerId, ...]


def coordinator_of(holders: Sequence[PeerId], live_closest: Sequence[PeerId]) -> PeerId | None:
    """The holder that acts for a root: first in `live_closest` order, else lowest id."""
    if not holders:
        return None
    held = dict.fromkeys(holders)
    for peer in live_closest:
        if peer in held:
            return peer
    return min(held)


def plan_repair(
    k: int,
    holders: Sequence[PeerId],
    live_closest: Sequence[PeerId],
    asked: Sequence[PeerId] = (),
    excluded: Sequence[PeerId] = (),
    limit: int = REPLICATION_FACTOR_DEFAULT,
) -> RepairPlan:
    """Who should fetch a root so that `k` peers hold it (a pure function of the view)."""
    held = dict.fromkeys(holders)
    busy = dict.fromkeys(asked)
    skip = dict.fromkeys(excluded)
    deficit = max(0, k - len(held) - len([p for p in busy if p not in held]))
    targets: list[PeerId] = []
    for peer in live_closest:
        if len(targets) >= min(deficit, limit):
            break
        if peer not in held and peer not in busy and peer not in skip:
            targets.append(peer)
    return RepairPlan(coordinator_of(holders, live_closest), deficit, tuple(targets))


# --- the stateful core ----------------------------------------------------------------


@dataclass(slots=True)
class _Root:
    next_check: float
    checking: bool = False
    asks: dict[PeerId, float] = field(default_factory=dict)  # peer -> ask deadline
    failed: dict[PeerId, float] = field(default_factory=dict)  # peer -> cooldown end


@dataclass(slots=True)
class ReplicationStatistics:
    checks: int = 0
    asks: int = 0
    asks_failed: int = 0
    fetches: int = 0
    fetches_failed: int = 0
    coordinated: int = 0
    requests_refused: int = 0
    roots_refused: int = 0


class Replicator:
    """Decides, for the roots this peer holds, when to check and whom to recruit."""

    def __init__(self, self_id: PeerId, config: ReplicationConfig, rng: random.Random) -> None:
        self.self_id = self_id
        self.config = config
        self._rng = rng
        self._roots: dict[Cid, _Root] = {}
        self._fetching: dict[Cid, None] = {}
        self.stats = ReplicationStatistics()

    # --- inputs -------------------------------------------------------------------

    def track(self, root: Cid, now: float) -> bool:
        """We hold `root` in full: keep its replicas at k from now on.

        False (and counted) when `roots_max` roots are tracked already: a cap on
        memory, not an error; the root stays held, only not watched by this peer.
        """
        if root in self._roots:
            return True
        if len(self._roots) >= self.config.roots_max:
            self.stats.roots_refused += 1
            return False
        first = now + self._rng.uniform(0.0, self.config.check_jitter_s)
        self._roots[root] = _Root(next_check=first)
        return True

    def untrack(self, root: Cid) -> None:
        self._roots.pop(root, None)

    def tracked(self) -> list[Cid]:
        return list(self._roots)

    def on_timeout(self, now: float) -> list[Effect]:
        out: list[Effect] = []
        for root, state in self._roots.items():
            if not state.checking and state.next_check <= now:
                state.checking = True
                self.stats.checks += 1
                out.append(CheckReplicas(root))
        return out

    def on_replicas(
        self,
        root: Cid,
        holders: Sequence[PeerId],
        live_closest: Sequence[PeerId],
        now: float,
    ) -> list[Effect]:
        state = self._roots.get(root)
        if state is None:
            return []
        state.checking = False
        state.next_check = now + self.config.check_interval_s
        for peer in holders:
            state.asks.pop(peer, None)  # the ask worked
        self._expire_asks(state, now)
        holders_all = list(dict.fromkeys([*holders, self.self_id]))
        excluded = [p for p, until in state.failed.items() if until > now]
        plan = plan_repair(
            self.config.k,
            holders_all,
            [p for p in live_closest if p != self.self_id],
            asked=list(state.asks),
            excluded=excluded,
            limit=self.config.asks_per_check_max,
        )
        coordinator = coordinator_of(holders_all, live_closest)
        if coordinator != self.self_id or not plan.targets:
            return []
        self.stats.coordinated += 1
        out: list[Effect] = []
        for peer in plan.targets:
            state.asks[peer] = now + self.config.repair_timeout_s
            self.stats.asks += 1
            out.append(AskReplicate(peer, root))
        # Check again when these asks are due, not a whole interval later.
        state.next_check = min(state.next_check, now + self.config.repair_timeout_s)
        return out

    def on_check_failed(self, root: Cid, now: float) -> list[Effect]:
        state = self._roots.get(root)
        if state is not None:
            state.checking = False
            state.next_check = now + self.config.check_interval_s
        return []

    def replicate_requested(self, root: Cid, sender: PeerId, now: float) -> list[Effect]:
        """`sender` asks us to hold `root`."""
        if root in self._roots or root in self._fetching:
            return []
        if len(self._fetching) >= self.config.fetches_max:
            self.stats.requests_refused += 1
            return []  # the asker's ask times out and it recruits someone else
        self._fetching[root] = None
        self.stats.fetches += 1
        return [FetchRoot(root, (sender,))]

    def on_fetched(self, root: Cid, ok: bool, now: float) -> list[Effect]:
        self._fetching.pop(root, None)
        if ok:
            self.track(root, now)
        else:
            self.stats.fetches_failed += 1
        return []

    def next_deadline(self) -> float | None:
        # Asks expire at the check their deadline schedules (see on_replicas).
        due = [s.next_check for s in self._roots.values() if not s.checking]
        return min(due) if due else None

    # --- helpers ------------------------------------------------------------------

    def _expire_asks(self, state: _Root, now: float) -> None:
        for peer, deadline in list(state.asks.items()):
            if deadline <= now:
                del state.asks[peer]
                state.failed[peer] = now + self.config.failed_cooldown_s
                self.stats.asks_failed += 1
        for peer, until in list(state.failed.items()):
            if until <= now:
                del state.failed[peer]

    def statistics(self) -> dict[str, int]:
        return {
            "roots": len(self._roots),
            "fetching": len(self._fetching),
            "checks": self.stats.checks,
            "asks": self.stats.asks,
            "asks_failed": self.stats.asks_failed,
            "fetches": self.stats.fetches,
            "fetches_failed": self.stats.fetches_failed,
            "coordinated": self.stats.coordinated,
            "requests_refused": self.stats.requests_refused,
            "roots_refused": self.stats.roots_refused,
        }
