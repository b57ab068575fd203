"""Raft as a generic, sans-I/O state machine over opaque commands, and its durable log store.

Public API of the core (import from ``colonymesh.consensus``)::

    node = RaftNode(NodeId("a"), ConfState(voters=(...)), RaftConfig(), random.Random(seed), now,
                    hard_state=..., entries=..., snapshot=..., applied=...)  # restart state
    node.step(msg, now)          # a Message from a peer (raises RaftProtocolError if malformed)
    node.handle_timer(now)       # call at (or after) node.next_deadline()
    node.propose(b"cmd")         # -> ProposalResult(index, term); raises NotLeader/ProposalDropped
    node.propose_conf_change(ConfChange(ConfChangeOp.ADD_LEARNER, NodeId("d")))
    node.transfer_leadership(NodeId("b"), now)
    node.read_index(b"ctx")      # a ReadState(index, b"ctx") appears in a later Ready
    node.compact(index, data)    # the app snapshotted its state machine at ``index``
    rd = node.ready()            # Ready | None
    ... persist rd.snapshot, rd.entries, rd.hard_state; send rd.messages;
    ... apply rd.committed_entries; serve rd.read_states ...
    node.advance(rd)
    node.status()                # Status(role, term, leader, commit, applied, ...)

The persist -> send -> apply contract is in :mod:`colonymesh.consensus.raft`.
"""

from colonymesh.consensus.confchange import ConfChange, ConfChangeError, ConfChangeOp
from colonymesh.consensus.config import RaftConfig
from colonymesh.consensus.errors import (
    NotLeader,
    ProposalDropped,
    RaftError,
    RaftInvariantError,
    RaftProtocolError,
    RaftUsageError,
)
from colonymesh.consensus.messages import (
    AppendEntries,
    AppendResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    ReadIndexRequest,
    ReadIndexResponse,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
    validate_message,
)
from colonymesh.consensus.raft import ProposalResult, RaftNode, Role, Status
from colonymesh.consensus.ready import ReadState, Ready

__all__ = [
    "AppendEntries",
    "AppendResponse",
    "ConfChange",
    "ConfChangeError",
    "ConfChangeOp",
    "Heartbeat",
    "HeartbeatResponse",
    "InstallSnapshot",
    "InstallSnapshotResponse",
    "Message",
    "NotLeader",
    "ProposalDropped",
    "ProposalResult",
    "RaftConfig",
    "RaftError",
    "RaftInvariantError",
    "RaftNode",
    "RaftProtocolError",
    "RaftUsageError",
    "ReadIndexRequest",
    "ReadIndexResponse",
    "ReadState",
    "Ready",
    "Role",
    "Status",
    "TimeoutNow",
    "VoteRequest",
    "VoteResponse",
    "validate_message",
]
