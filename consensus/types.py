"""Value types shared by the Raft core, its durable storage and its drivers.

These are plain immutable records with no behaviour: the core produces and
consumes them, storage persists them, drivers move them. Commands are opaque
bytes; what they mean is the business of the state machine above Raft.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NewType

NodeId = NewType("NodeId", str)
Term = NewType("Term", int)
LogIndex = NewType("LogIndex", int)


class EntryKind(enum.IntEnum):
    """What a log entry carries; the values are part of the on-disk format."""

    NORMAL = 0  # an opaque command for the replicated state machine
    CONF_CHANGE = 1  # a membership change, one server at a time (Raft §6)
    EMPTY = 2  # the no-op a new leader appends to commit earlier terms (§5.4.2, §8)


@dataclass(frozen=True, slots=True)
class Entry:
    term: Term
    index: LogIndex
    kind: EntryKind
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be durable before a node answers any message (Raft Figure 2)."""

    term: Term = Term(0)
    voted_for: NodeId | None = None
    commit: LogIndex = LogIndex(0)


@dataclass(frozen=True, slots=True)
class ConfState:
    voters: tuple[NodeId, ...] = ()
    learners: tuple[NodeId, ...] = ()


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    index: LogIndex
    term: Term
    conf: ConfState = field(default_factory=ConfState)


@dataclass(frozen=True, slots=True)
class Snapshot:
    meta: SnapshotMeta
    data: bytes
