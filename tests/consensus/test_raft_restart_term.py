"""Restart after a crash that kept a newer term's entries but lost its hard-state record."""

from __future__ import annotations

import random

from colonymesh.consensus import RaftConfig, RaftNode
from colonymesh.consensus.types import (
    ConfState,
    Entry,
    EntryKind,
    HardState,
    LogIndex,
    NodeId,
    Term,
)


def test_restart_takes_the_term_of_its_newest_entry_with_no_vote() -> None:
    entries = [
        Entry(Term(1), LogIndex(1), EntryKind.EMPTY),
        Entry(Term(15), LogIndex(2), EntryKind.NORMAL, b"a"),
        Entry(Term(17), LogIndex(3), EntryKind.NORMAL, b"b"),
    ]
    node = RaftNode(
        NodeId("n2"),
        ConfState(),
        RaftConfig(),
        random.Random(1),
        0.0,
        hard_state=HardState(Term(15), NodeId("n1"), LogIndex(1)),
        entries=entries,
    )
    assert node.term == 17 and node.voted_for is None
    ready = node.ready()
    assert ready is not None and ready.hard_state == HardState(Term(17), None, LogIndex(1))
    assert ready.entries == ()  # the log itself was durable: nothing to write again
