"""Raft messages: the closed union of everything one core says to another.

Every message is a frozen, slotted dataclass carrying ``src``, ``dst`` and the
sender's ``term``. The union :data:`Message` is closed: the core matches on it
with ``assert_never`` in the default arm, and the wire codec (in ``node/``)
encodes exactly these classes.

:func:`validate_message` checks the structural rules a message must satisfy
before it may touch a core (non-negative numbers, entries contiguous after
``prev_log_index``, terms non-decreasing and not above the message term). A
message that fails raises :class:`RaftProtocolError`; the core calls it at the
top of ``step`` so a malformed peer message never changes state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from colonymesh.consensus.errors import RaftProtocolError
from colonymesh.consensus.types import Entry, LogIndex, NodeId, SnapshotMeta, Term


@dataclass(frozen=True, slots=True)
class VoteRequest:
    """RequestVote (Raft §5.2), or a pre-vote (dissertation §9.6) when ``pre_vote``.

    A pre-vote carries the term the sender *would* campaign at and changes no
    state at the receiver. ``transfer`` marks an election forced by a
    leadership transfer (TimeoutNow), which may bypass the leader lease.
    """

    src: NodeId
    dst: NodeId
    term: Term
    last_log_index: LogIndex
    last_log_term: Term
    pre_vote: bool = False
    transfer: bool = False


@dataclass(frozen=True, slots=True)
class VoteResponse:
    """Answer to :class:`VoteRequest`; for a granted pre-vote ``term`` echoes the request's."""

    src: NodeId
    dst: NodeId
    term: Term
    granted: bool
    pre_vote: bool = False


@dataclass(frozen=True, slots=True)
class AppendEntries:
    """AppendEntries (Raft §5.3): ``entries`` follow ``prev_log_index``; may be empty."""

    src: NodeId
    dst: NodeId
    term: Term
    prev_log_index: LogIndex
    prev_log_term: Term
    entries: tuple[Entry, ...]
    leader_commit: LogIndex


@dataclass(frozen=True, slots=True)
class AppendResponse:
    """Answer to :class:`AppendEntries`.

    On success ``index`` is the last index the follower now matches. On
    rejection ``index`` echoes the rejected ``prev_log_index`` and
    ``hint_index``/``hint_term`` name the largest entry in the follower's log
    at or below it whose term is at most the leader's ``prev_log_term``: the
    leader skips a whole conflicting term per round trip (fast back-off).
    """

    src: NodeId
    dst: NodeId
    term: Term
    success: bool
    index: LogIndex
    hint_index: LogIndex
    hint_term: Term


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Leader keep-alive; ``commit`` never exceeds what the follower matches.

    ``read_seq`` is the leader's ReadIndex round counter; the follower echoes it.
    """

    src: NodeId
    dst: NodeId
    term: Term
    commit: LogIndex
    read_seq: int = 0


@dataclass(frozen=True, slots=True)
class HeartbeatResponse:
    src: NodeId
    dst: NodeId
    term: Term
    read_seq: int = 0


@dataclass(frozen=True, slots=True)
class InstallSnapshot:
    """One chunk of a snapshot (Raft §7): bytes ``[offset, offset+len(data))`` of it."""

    src: NodeId
    dst: NodeId
    term: Term
    meta: SnapshotMeta
    offset: int
    data: bytes
    done: bool


@dataclass(frozen=True, slots=True)
class InstallSnapshotResponse:
    """Ack of a chunk: ``next_offset`` is the byte the follower wants next.

    ``done`` means the follower holds the snapshot at ``snapshot_index`` (or
    has already committed past it) and the leader may resume appending.
    """

    src: NodeId
    dst: NodeId
    term: Term
    snapshot_index: LogIndex
    next_offset: int
    done: bool


@dataclass(frozen=True, slots=True)
class TimeoutNow:
    """Leadership transfer (dissertation §3.10): campaign now, skipping pre-vote."""

    src: NodeId
    dst: NodeId
    term: Term


@dataclass(frozen=True, slots=True)
class ReadIndexRequest:
    """A follower forwards a linearizable read to the leader (dissertation §6.4)."""

    src: NodeId
    dst: NodeId
    term: Term
    context: bytes


@dataclass(frozen=True, slots=True)
class ReadIndexResponse:
    """The read index for ``context``; ``ok`` is False if the leader could not serve it."""

    src: NodeId
    dst: NodeId
    term: Term
    context: bytes
    index: LogIndex
    ok: bool


Message: TypeAlias = (
    VoteRequest
    | VoteResponse
    | AppendEntries
    | AppendResponse
    | Heartbeat
    | HeartbeatResponse
    | InstallSnapshot
    | InstallSnapshotResponse
    | TimeoutNow
    | ReadIndexRequest
    | ReadIndexResponse
)

MESSAGE_TYPES: tuple[type, ...] = (
    VoteRequest,
    VoteResponse,
    AppendEntries,
    AppendResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    TimeoutNow,
    ReadIndexRequest,
    ReadIndexResponse,
)


def _non_negative(name: str, value: int) -> None:
    if value < 0:
        raise RaftProtocolError(f"{name} is negative: {value}")


def validate_message(msg: Message) -> None:
    """Raise :class:`RaftProtocolError` unless ``msg`` is structurally sound.

    Cheap (one pass over the entries of an append); it does not check the
    message against any node's state, only against itself. Field *types* are
    the wire codec's job (it builds these classes from decoded frames).
    """
    if not isinstance(msg, MESSAGE_TYPES):
        raise RaftProtocolError(f"not a Raft message: {type(msg).__name__}")
    _non_negative("term", msg.term)
    if not msg.src or not msg.dst:
        raise RaftProtocolError("empty src or dst")
    match msg:
        case VoteRequest():
            _non_negative("last_log_index", msg.last_log_index)
            _non_negative("last_log_term", msg.last_log_term)
            if msg.last_log_term > msg.term:
                raise RaftProtocolError("last_log_term above the message term")
        case AppendEntries():
            _non_negative("prev_log_index", msg.prev_log_index)
            _non_negative("prev_log_term", msg.prev_log_term)
            _non_negative("leader_commit", msg.leader_commit)
            if msg.prev_log_term > msg.term:
                raise RaftProtocolError("prev_log_term above the message term")
            index, term = msg.prev_log_index, msg.prev_log_term
            for entry in msg.entries:
                if entry.index != index + 1:
                    raise RaftProtocolError("entries not contiguous")
                if entry.term < term or entry.term > msg.term:
                    raise RaftProtocolError("entry term out of order")
                index, term = entry.index, entry.term
        case AppendResponse():
            _non_negative("index", msg.index)
            _non_negative("hint_index", msg.hint_index)
            _non_negative("hint_term", msg.hint_term)
        case Heartbeat():
            _non_negative("commit", msg.commit)
            _non_negative("read_seq", msg.read_seq)
        case HeartbeatResponse():
            _non_negative("read_seq", msg.read_seq)
        case InstallSnapshot():
            _non_negative("offset", msg.offset)
            _non_negative("meta.index", msg.meta.index)
            _non_negative("meta.term", msg.meta.term)
            if msg.meta.term > msg.term:
                raise RaftProtocolError("snapshot term above the message term")
        case InstallSnapshotResponse():
            _non_negative("snapshot_index", msg.snapshot_index)
            _non_negative("next_offset", msg.next_offset)
        case ReadIndexResponse():
            _non_negative("index", msg.index)
        case VoteResponse() | TimeoutNow() | ReadIndexRequest():
            pass
        case _:
            raise RaftProtocolError(f"not a Raft message: {type(msg).__name__}")
