"""What a caller can learn about a node: its :class:`Role` and :class:`Status`,
and where a proposal landed (:class:`ProposalResult`)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from colonymesh.consensus.types import ConfState, LogIndex, NodeId, Term


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"
    LEARNER = "learner"  # a follower that is a learner in the current configuration


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
    progress: tuple[tuple[NodeId, LogIndex], ...] = ()  # leader only: (peer, match)
