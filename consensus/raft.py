"""The sans-I/O Raft core: :class:`RaftNode` (skeleton; implementation follows)."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from colonymesh.consensus.confchange import ConfChange
from colonymesh.consensus.config import RaftConfig
from colonymesh.consensus.messages import Message
from colonymesh.consensus.ready import Ready
from colonymesh.consensus.types import (
    ConfState,
    Entry,
    HardState,
    LogIndex,
    NodeId,
    Snapshot,
    Term,
)

if TYPE_CHECKING:
    import random


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"
    LEARNER = "learner"


@dataclass(frozen=True, slots=True)
class ProposalResult:
    """Where a proposal landed: it is committed iff the entry at ``index`` has ``term``."""

    index: LogIndex
    term: Term


@dataclass(frozen=True, slots=True)
class Status:
    id: NodeId
    role: Role
    term: Term
    leader: NodeId | None
    commit: LogIndex
    applied: LogIndex
    last_index: LogIndex
    conf: ConfState


class RaftNode:
    def __init__(
        self,
        node_id: NodeId,
        conf: ConfState,
        config: RaftConfig,
        rng: random.Random,
        now: float,
        *,
        hard_state: HardState | None = None,
        entries: Sequence[Entry] = (),
        snapshot: Snapshot | None = None,
        applied: LogIndex | None = None,
    ) -> None:
        raise NotImplementedError

    def step(self, msg: Message, now: float) -> None:
        raise NotImplementedError

    def handle_timer(self, now: float) -> None:
        raise NotImplementedError

    def next_deadline(self) -> float:
        raise NotImplementedError

    def campaign(self, now: float) -> None:
        raise NotImplementedError

    def propose(self, data: bytes) -> ProposalResult:
        raise NotImplementedError

    def propose_conf_change(self, change: ConfChange) -> ProposalResult:
        raise NotImplementedError

    def transfer_leadership(self, to: NodeId, now: float) -> None:
        raise NotImplementedError

    def read_index(self, context: bytes) -> None:
        raise NotImplementedError

    def compact(self, index: LogIndex, snapshot_data: bytes) -> None:
        raise NotImplementedError

    def has_ready(self) -> bool:
        raise NotImplementedError

    def ready(self) -> Ready | None:
        raise NotImplementedError

    def advance(self, ready: Ready) -> None:
        raise NotImplementedError

    def status(self) -> Status:
        raise NotImplementedError
