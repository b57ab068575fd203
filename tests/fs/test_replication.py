"""The repair core: who coordinates a root, whom it recruits, and when it checks again."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from colonymesh.fs.cid import CODEC_RAW, Cid
from colonymesh.fs.errors import FsUsageError
from colonymesh.fs.replication import (
    AskReplicate,
    CheckReplicas,
    FetchRoot,
    PeerId,
    ReplicationConfig,
    Replicator,
    coordinator_of,
    plan_repair,
)

ROOT = Cid.of(CODEC_RAW, b"a file")
CFG = ReplicationConfig(k=3, check_interval_s=60.0, check_jitter_s=5.0, repair_timeout_s=30.0)


def p(*names: str) -> list[PeerId]:
    return [PeerId(n) for n in names]


def test_plan_recruits_the_closest_non_holders_up_to_k() -> None:
    plan = plan_repair(3, p("b"), p("a", "b", "c", "d"))
    assert plan.deficit == 2 and plan.targets == tuple(p("a", "c"))
    assert plan.coordinator == "b"


def test_plan_counts_running_asks_and_skips_excluded_peers() -> None:
    plan = plan_repair(3, p("b"), p("a", "b", "c", "d", "e"), asked=p("a"), excluded=p("c"))
    assert plan.deficit == 1 and plan.targets == tuple(p("d"))


def test_plan_at_k_does_nothing() -> None:
    assert plan_repair(3, p("a", "b", "c"), p("a", "b", "c", "d")).targets == ()


def test_coordinator_is_the_closest_holder_else_the_lowest_id() -> None:
    assert coordinator_of(p("c", "b"), p("a", "b", "c")) == "b"
    assert coordinator_of(p("z", "y"), p("a")) == "y"
    assert coordinator_of([], p("a")) is None


@given(
    st.lists(st.sampled_from("abcdefghij"), unique=True, max_size=10),
    st.permutations(list("abcdefghij")),
    st.integers(1, 5),
)
def test_plan_properties(holders: list[str], order: list[str], k: int) -> None:
    plan = plan_repair(k, p(*holders), p(*order), limit=10)
    assert not set(plan.targets) & set(holders)
    assert len(plan.targets) == min(plan.deficit, 10 - len(holders))
    assert plan.deficit == max(0, k - len(holders))
    assert plan == plan_repair(k, p(*holders), p(*order), limit=10)  # a function of the view


def _checked(rep: Replicator, now: float) -> float:
    deadline = rep.next_deadline()
    assert deadline is not None and deadline <= now
    assert rep.on_timeout(now) == [CheckReplicas(ROOT)]
    return deadline


def test_coordinator_asks_then_checks_again_when_asks_are_due() -> None:
    rep = Replicator(PeerId("b"), CFG, random.Random(1))
    rep.track(ROOT, 0.0)
    _checked(rep, 5.0)
    effects = rep.on_replicas(ROOT, p("b"), p("b", "a", "c", "d"), 5.0)
    assert effects == [AskReplicate(PeerId("a"), ROOT), AskReplicate(PeerId("c"), ROOT)]
    assert rep.next_deadline() == 35.0
    # 'a' answered with a replica, 'c' did not: c cools down, d is recruited instead
    assert rep.on_timeout(35.0) == [CheckReplicas(ROOT)]
    effects = rep.on_replicas(ROOT, p("a", "b"), p("b", "a", "c", "d"), 35.0)
    assert effects == [AskReplicate(PeerId("d"), ROOT)]
    assert rep.stats.asks_failed == 1
    # once 'a' is the closer holder, 'a' coordinates and 'b' stays quiet
    assert rep.on_timeout(65.0) == [CheckReplicas(ROOT)]
    assert rep.on_replicas(ROOT, p("a", "b"), p("a", "b", "c", "d"), 65.0) == []


def test_a_holder_that_is_not_coordinator_waits() -> None:
    rep = Replicator(PeerId("c"), CFG, random.Random(1))
    rep.track(ROOT, 0.0)
    _checked(rep, 5.0)
    assert rep.on_replicas(ROOT, p("b"), p("a", "b", "c", "d"), 5.0) == []
    assert rep.next_deadline() == 65.0  # a whole interval: the coordinator acts meanwhile


def test_asked_peer_fetches_once_and_then_tracks() -> None:
    rep = Replicator(PeerId("a"), CFG, random.Random(1))
    assert rep.replicate_requested(ROOT, PeerId("b"), 1.0) == [FetchRoot(ROOT, (PeerId("b"),))]
    assert rep.replicate_requested(ROOT, PeerId("c"), 1.5) == []
    rep.on_fetched(ROOT, True, 2.0)
    assert rep.tracked() == [ROOT]
    assert rep.replicate_requested(ROOT, PeerId("c"), 3.0) == []


def test_concurrent_replica_fetches_are_bounded() -> None:
    rep = Replicator(PeerId("a"), ReplicationConfig(fetches_max=2), random.Random(1))
    roots = [Cid.of(CODEC_RAW, bytes([i])) for i in range(3)]
    assert rep.replicate_requested(roots[0], PeerId("b"), 0.0) == [
        FetchRoot(roots[0], (PeerId("b"),))
    ]
    assert rep.replicate_requested(roots[1], PeerId("b"), 0.0) == [
        FetchRoot(roots[1], (PeerId("b"),))
    ]
    assert rep.replicate_requested(roots[2], PeerId("b"), 0.0) == []
    assert rep.stats.requests_refused == 1
    rep.on_fetched(roots[0], False, 1.0)
    assert rep.replicate_requested(roots[2], PeerId("b"), 1.0) == [
        FetchRoot(roots[2], (PeerId("b"),))
    ]


def test_failed_check_reschedules() -> None:
    rep = Replicator(PeerId("a"), CFG, random.Random(1))
    rep.track(ROOT, 0.0)
    _checked(rep, 5.0)
    assert rep.next_deadline() is None  # a check in flight
    rep.on_check_failed(ROOT, 6.0)
    assert rep.next_deadline() == 66.0


def test_tracked_roots_are_capped() -> None:
    rep = Replicator(PeerId("a"), ReplicationConfig(roots_max=1), random.Random(1))
    assert rep.track(ROOT, 0.0) and rep.track(ROOT, 0.0)
    assert not rep.track(Cid.of(CODEC_RAW, b"another"), 0.0)
    assert rep.tracked() == [ROOT] and rep.stats.roots_refused == 1


def test_config_is_validated() -> None:
    with pytest.raises(FsUsageError):
        ReplicationConfig(k=0)
    with pytest.raises(FsUsageError):
        ReplicationConfig(check_interval_s=0)
