"""Each Raft safety checker fails on a hand-made history that breaks its property."""

from __future__ import annotations

import pytest

from colonymesh.consensus.types import (
    ConfState,
    Entry,
    EntryKind,
    HardState,
    LogIndex,
    NodeId,
    Snapshot,
    SnapshotMeta,
    Term,
)
from colonymesh.simulations.engine import InvariantViolation
from colonymesh.simulations.raft_checks import RaftChecker


def e(index: int, term: int, data: bytes = b"x") -> Entry:
    return Entry(Term(term), LogIndex(index), EntryKind.NORMAL, data)


def checker(n: int = 3) -> RaftChecker:
    return RaftChecker([NodeId(f"s{i}") for i in range(n)])


def test_election_safety_one_leader_per_term() -> None:
    c = checker()
    c.leader_seen(0, 1)
    c.leader_seen(0, 1)  # the same leader again is fine
    c.leader_seen(1, 2)
    with pytest.raises(InvariantViolation, match="election safety"):
        c.leader_seen(2, 2)


def test_log_matching_same_index_and_term_means_same_prefix() -> None:
    c = checker()
    c.persisted(0, [e(1, 1, b"a"), e(2, 1, b"b")])
    c.persisted(1, [e(1, 1, b"a"), e(2, 1, b"b")])  # identical: fine
    with pytest.raises(InvariantViolation, match="log matching"):
        c.persisted(2, [e(1, 1, b"OTHER")])
    c2 = checker()
    c2.persisted(0, [e(1, 1, b"a"), e(2, 2, b"b")])
    # Same (index 2, term 2) but over a different prefix: also a violation.
    with pytest.raises(InvariantViolation, match="log matching"):
        c2.persisted(1, [e(1, 2, b"z"), e(2, 2, b"b")])


def test_a_conflicting_suffix_may_be_overwritten() -> None:
    c = checker()
    c.persisted(0, [e(1, 1), e(2, 1, b"old")])
    c.persisted(0, [e(2, 2, b"new"), e(3, 2)])
    assert c.logs[0].last_index == 3
    with pytest.raises(InvariantViolation, match="gap"):
        c.persisted(1, [e(1, 1), e(3, 1)])


def test_state_machine_safety_same_entry_applied_at_each_index() -> None:
    c = checker()
    c.persisted(0, [e(1, 1, b"a")])
    c.persisted(1, [e(1, 2, b"b")])  # a different entry at index 1, other term: allowed in logs
    c.applying(0, e(1, 1, b"a"), 1)
    with pytest.raises(InvariantViolation, match="state machine safety"):
        c.applying(1, e(1, 2, b"b"), 2)


def test_only_durable_entries_are_applied_in_order() -> None:
    c = checker()
    with pytest.raises(InvariantViolation, match="not in its durable log"):
        c.applying(0, e(1, 1), 1)
    c.persisted(0, [e(1, 1), e(2, 1)])
    with pytest.raises(InvariantViolation, match="applies 2 after 0"):
        c.applying(0, e(2, 1), 1)


def test_leader_completeness_committed_entries_in_every_later_leader() -> None:
    c = checker()
    c.persisted(0, [e(1, 1, b"a")])
    c.applying(0, e(1, 1, b"a"), 1)  # committed in term 1
    c.persisted(1, [e(1, 1, b"a")])
    c.leader_seen(1, 2)  # holds it: fine
    with pytest.raises(InvariantViolation, match="leader completeness"):
        c.leader_seen(2, 3)  # s2 holds nothing


def test_durable_hard_state_never_goes_back() -> None:
    c = checker()
    c.persisted(0, [HardState(Term(2), NodeId("s1"))])
    with pytest.raises(InvariantViolation, match="voted for s1 then s2"):
        c.persisted(0, [HardState(Term(2), NodeId("s2"))])
    with pytest.raises(InvariantViolation, match="durable after term"):
        c.persisted(0, [HardState(Term(1))])


def test_restored_snapshot_must_match_what_was_committed() -> None:
    c = checker()
    c.persisted(0, [e(1, 1), e(2, 1)])
    c.applying(0, e(1, 1), 1)
    c.applying(0, e(2, 1), 1)
    c.restored(1, Snapshot(SnapshotMeta(LogIndex(2), Term(1)), b""))
    assert c.applied[1] == 2
    with pytest.raises(InvariantViolation, match="term"):
        c.restored(2, Snapshot(SnapshotMeta(LogIndex(2), Term(5)), b""))
    with pytest.raises(InvariantViolation, match="beyond anything applied"):
        c.restored(2, Snapshot(SnapshotMeta(LogIndex(9), Term(1)), b""))


def test_rebuild_after_crash_keeps_only_the_disk() -> None:
    c = checker()
    c.persisted(0, [e(1, 1), e(2, 1)])
    c.rebuild(0, [e(1, 1)])
    assert c.logs[0].last_index == 1 and c.applied[0] == 0


def test_a_snapshot_the_log_does_not_match_replaces_the_whole_durable_log() -> None:
    c = checker()
    c.persisted(0, [e(1, 1), e(2, 1), e(3, 1)])
    c.persisted(1, [e(1, 1), e(2, 2), e(3, 2)])
    # Server 0 installs a leader's snapshot at (2, term 2): its stale (3, 1) must go.
    c.persisted(0, [Snapshot(SnapshotMeta(LogIndex(2), Term(2)), b"")])
    assert c.logs[0].last_index == 2 and c.logs[0].entries == []
    c.persisted(0, [e(3, 2)])  # same prefix as server 1 now: no violation
    # Its own compaction at a matching (index, term) keeps the suffix.
    c.persisted(1, [Snapshot(SnapshotMeta(LogIndex(2), Term(2)), b"")])
    assert c.logs[1].entries == [e(3, 2)]


def test_commit_needs_a_durable_quorum_of_the_leaders_voters() -> None:
    # §10.2.1: a leader sending while persisting may commit only on durable copies.
    c = checker(5)
    c.persisted(1, [e(1, 1), e(2, 1)])
    c.persisted(2, [e(1, 1), e(2, 1)])
    c.persisted(3, [e(1, 1), e(2, 2)])  # a different entry at 2 does not count
    c.commit_quorum(0, 1, 1, [e(1, 1)], [0, 1, 2, 3, 4])  # 3 of 5 hold entry 1
    with pytest.raises(InvariantViolation, match=r"durable quorum.*entry 2 held durably by 2"):
        c.commit_quorum(0, 1, 1, [e(1, 1), e(2, 1)], [0, 1, 2, 3, 4])
    c.commit_quorum(0, 1, 2, [e(2, 1)], [0, 1, 2])  # 2 of 3 voters after a removal
    # A snapshot past an index counts as holding it.
    snap = Snapshot(SnapshotMeta(LogIndex(2), Term(1), ConfState()), b"")
    c.persisted(4, [snap])
    c.commit_quorum(0, 1, 2, [e(2, 1)], [0, 1, 2, 3, 4])
