"""Single-server membership changes (Raft dissertation §4.1, paper §6).

A :class:`ConfChange` adds a voter, adds a learner, promotes a learner (an
``ADD_VOTER`` of a current learner), demotes a voter (``ADD_LEARNER`` of a
current voter) or removes a node. Changing one server at a time keeps every
majority of the old configuration overlapping every majority of the new one,
so a change may take effect as soon as its entry is *appended* (not
committed); the leader allows only one uncommitted change at a time.

The change travels in the log as an ``EntryKind.CONF_CHANGE`` entry whose
``data`` is :meth:`ConfChange.encode`: one op byte, then the node id in UTF-8.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from colonymesh.consensus.errors import RaftError
from colonymesh.consensus.types import ConfState, Entry, EntryKind, LogIndex, NodeId, Term

NODE_ID_BYTES_MAX = 256


class ConfChangeError(RaftError):
    """A conf change is malformed or does not apply to the current configuration."""


class ConfChangeOp(enum.IntEnum):
    """The op byte is part of the log format."""

    ADD_VOTER = 0
    ADD_LEARNER = 1
    REMOVE_NODE = 2


@dataclass(frozen=True, slots=True)
class ConfChange:
    op: ConfChangeOp
    node: NodeId

    def encode(self) -> bytes:
        raw = self.node.encode("utf-8")
        if not raw or len(raw) > NODE_ID_BYTES_MAX:
            raise ConfChangeError(f"node id must be 1..{NODE_ID_BYTES_MAX} bytes")
        return bytes([self.op]) + raw

    @staticmethod
    def decode(data: bytes) -> ConfChange:
        if len(data) < 2 or len(data) > NODE_ID_BYTES_MAX + 1:
            raise ConfChangeError("conf change has a bad length")
        try:
            op = ConfChangeOp(data[0])
            node = data[1:].decode("utf-8")
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConfChangeError(f"malformed conf change: {exc}") from None
        return ConfChange(op, NodeId(node))


def apply_conf_change(conf: ConfState, change: ConfChange) -> ConfState:
    """Return ``conf`` with ``change`` applied; raise :class:`ConfChangeError` if it cannot.

    Voters and learners stay sorted so every replica derives the same tuple.
    """
    voters = [v for v in conf.voters if v != change.node]
    learners = [n for n in conf.learners if n != change.node]
    member = change.node in conf.voters or change.node in conf.learners
    match change.op:
        case ConfChangeOp.ADD_VOTER:
            if change.node in conf.voters:
                raise ConfChangeError(f"{change.node} is already a voter")
            voters.append(change.node)
        case ConfChangeOp.ADD_LEARNER:
            if change.node in conf.learners:
                raise ConfChangeError(f"{change.node} is already a learner")
            learners.append(change.node)
        case ConfChangeOp.REMOVE_NODE:
            if not member:
                raise ConfChangeError(f"{change.node} is not a member")
        case _:  # pragma: no cover - closed enum
            raise ConfChangeError(f"unknown op {change.op!r}")
    if not voters:
        raise ConfChangeError("a configuration needs at least one voter")
    return ConfState(voters=tuple(sorted(voters)), learners=tuple(sorted(learners)))


class ConfHistory:
    """The configurations a log went through: ``(index, conf)`` pairs in log order.

    The first pair is the base (the snapshot's configuration, or the empty one
    at index 0); each later pair is a ``CONF_CHANGE`` entry still in the log.
    Since a change takes effect when appended, truncating the log reverts it,
    and compacting folds the prefix into the base.
    """

    __slots__ = ("_items",)

    def __init__(self, base_index: LogIndex, base: ConfState) -> None:
        self._items: list[tuple[LogIndex, ConfState]] = [(base_index, base)]

    @property
    def current(self) -> ConfState:
        return self._items[-1][1]

    @property
    def current_index(self) -> LogIndex:
        """Index of the entry that set the current configuration."""
        return self._items[-1][0]

    def append(self, index: LogIndex, conf: ConfState) -> None:
        self._items.append((index, conf))

    def truncate_from(self, index: int) -> bool:
        """Forget changes at or after ``index`` (their entries were overwritten).
        True if the current configuration changed."""
        changed = False
        while len(self._items) > 1 and self._items[-1][0] >= index:
            self._items.pop()
            changed = True
        return changed

    def at(self, index: int) -> ConfState:
        conf = self._items[0][1]
        for at, c in self._items:
            if at > index:
                break
            conf = c
        return conf

    def compact(self, index: LogIndex) -> None:
        """The log now starts after ``index``: fold earlier changes into the base."""
        self._items = [(index, self.at(index)), *(p for p in self._items[1:] if p[0] > index)]

    def reset(self, index: LogIndex, conf: ConfState) -> None:
        self._items = [(index, conf)]


def bootstrap_entries(conf: ConfState) -> list[Entry]:
    """The founding configuration as committed term-1 entries, identical on every
    founding member (voters first, then learners, each sorted)."""
    changes = [ConfChange(ConfChangeOp.ADD_VOTER, v) for v in sorted(conf.voters)]
    changes += [ConfChange(ConfChangeOp.ADD_LEARNER, n) for n in sorted(conf.learners)]
    return [
        Entry(Term(1), LogIndex(k + 1), EntryKind.CONF_CHANGE, change.encode())
        for k, change in enumerate(changes)
    ]
