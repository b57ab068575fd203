"""Errors raised by the Raft core, split by blame (as h11 does).

* :class:`RaftProtocolError`: a *peer* sent something malformed. The core
  raised it before touching any state; the driver drops the message (and may
  close that connection), the node carries on.
* :class:`RaftUsageError`: *we* misused the API (e.g. ``ready()`` twice without
  ``advance()``). A bug in the driver.
* :class:`NotLeader`, :class:`ProposalDropped`: expected refusals a client
  sees; ``NotLeader.leader_hint`` says where to retry.
* :class:`RaftInvariantError`: the core found its own state impossible (a bug,
  or corrupted restored state). Never silenced.
"""

from __future__ import annotations

from colonymesh.consensus.types import NodeId


class RaftError(Exception):
    """Base of every error the Raft core raises."""


class RaftProtocolError(RaftError):
    """A peer's message is malformed; it was rejected before changing any state."""


class RaftUsageError(RaftError):
    """The driver or application misused the core's API."""


class RaftInvariantError(RaftError):
    """The core's own state broke an invariant (a bug or corrupted restored state)."""


class NotLeader(RaftError):
    """This node cannot serve the request because it is not the leader."""

    def __init__(self, leader_hint: NodeId | None) -> None:
        super().__init__(f"not the leader (leader hint: {leader_hint})")
        self.leader_hint = leader_hint


class ProposalDropped(RaftError):
    """The leader refused a proposal (transfer in progress, conf change pending, ...)."""
