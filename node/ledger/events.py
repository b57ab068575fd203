"""What applying a command produced: past-tense facts for the peer to act on.

Every command yields exactly one :class:`CommandApplied` or
:class:`CommandRefused` first (so its proposer learns the outcome), then the
facts it caused. ``command`` is the stimulus id: the author's key and the
envelope's sequence number, repeated on every event the command caused.
"""

from __future__ import annotations

from dataclasses import dataclass

from colonymesh.node.ledger.model import ProcessState


@dataclass(frozen=True, slots=True)
class CommandId:
    author: bytes
    seq: int


@dataclass(frozen=True, slots=True)
class CommandApplied:
    command: CommandId
    kind: str
    subject: str = ""  # the process or workflow id the command created or touched


@dataclass(frozen=True, slots=True)
class CommandRefused:
    command: CommandId | None  # None when the entry could not even be decoded
    kind: str
    reason: str


@dataclass(frozen=True, slots=True)
class ProcessReady:
    """A process can now be claimed (submitted without parents, or its parents succeeded)."""

    command: CommandId
    process_id: str
    executor_type: str
    priority: int


@dataclass(frozen=True, slots=True)
class ProcessAssigned:
    command: CommandId
    process_id: str
    executor: bytes


@dataclass(frozen=True, slots=True)
class ProcessRequeued:
    """The process was taken from ``executor`` (which must stop it) and waits again."""

    command: CommandId
    process_id: str
    executor: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class ProcessFinished:
    command: CommandId
    process_id: str
    state: ProcessState
    executor: bytes | None  # who ran it, to be told to stop if it was cancelled mid-run


@dataclass(frozen=True, slots=True)
class WorkflowFinished:
    command: CommandId
    workflow_id: str
    state: ProcessState


@dataclass(frozen=True, slots=True)
class ExecutorJoined:
    command: CommandId
    executor: bytes
    name: str


@dataclass(frozen=True, slots=True)
class ExecutorLeft:
    command: CommandId
    executor: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class MemberRevoked:
    command: CommandId
    member: bytes
    serial: int


LedgerEvent = (
    CommandApplied
    | CommandRefused
    | ProcessReady
    | ProcessAssigned
    | ProcessRequeued
    | ProcessFinished
    | WorkflowFinished
    | ExecutorJoined
    | ExecutorLeft
    | MemberRevoked
)
