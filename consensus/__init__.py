"""Raft as a generic, sans-I/O state machine over opaque commands, and its durable log store.

The core (``RaftNode``) performs no I/O: it is fed inputs and hands back
``Ready`` batches. Public API (import from ``colonymesh.consensus``)::

    node = RaftNode(
        NodeId("a"), ConfState(voters=(...)), RaftConfig(), random.Random(seed), now,
        hard_state=hs, entries=entries, snapshot=snap, applied=applied,  # on restart
    )
    node.step(msg, now)          # a Message from a peer; malformed -> RaftProtocolError
    node.handle_timer(now)       # call at (or after) node.next_deadline() (may be inf)
    node.campaign(now)           # start an election now (tests, manual failover)
    node.propose(b"cmd")         # -> ProposalResult(index, term); NotLeader / ProposalDropped
    node.propose_conf_change(ConfChange(ConfChangeOp.ADD_LEARNER, NodeId("d")))
    node.transfer_leadership(NodeId("b"), now)
    node.read_index(b"ctx")      # a ReadState(index, b"ctx") arrives in a later Ready
    node.compact(index, data)    # the app snapshotted its state machine at applied ``index``
    while (rd := node.ready()) is not None:
        # 1. persist: rd.snapshot (atomically; keep stored entries after it only if the
        #    log holds its last entry, else discard the whole log), rd.entries (drop
        #    stored entries >= rd.entries[0].index, append), rd.hard_state;
        #    fsync if rd.must_sync
        # 2. send rd.messages (Message.dst names the peer) after 1 is durable, or
        #    alongside 1 if rd.send_while_persisting (a leader, §10.2.1)
        # 3. apply: restore from rd.snapshot if rd.restore_snapshot, then rd.committed_entries
        #    in order; serve rd.read_states once applied >= their index
        node.advance(rd)         # also: what 1 persisted is durable
    node.status()                # Status(role, term, leader, commit, applied, last_index, conf, ...)

Bootstrap: the founding members all pass the same ``ConfState`` and no
persisted state; each writes it as committed term-1 ``CONF_CHANGE`` entries
1..n through its first Ready. A node joining later starts with
``ConfState()`` and is added with ``propose_conf_change`` (as a learner, then
promoted with ``ADD_VOTER``). On restart the configuration comes from the
persisted snapshot and log; the ``conf`` argument is ignored.

Times are float seconds from any monotonic origin; ``RaftConfig`` holds the
knobs (election/heartbeat timeouts, pre-vote, check-quorum, in-flight limits,
batch sizes, snapshot chunk size). Module map: :mod:`.raft` (the node and the
full persist -> send -> apply contract), :mod:`.leader` (replication, one
term's leader state), :mod:`.log`, :mod:`.progress`, :mod:`.readonly`
(ReadIndex), :mod:`.confchange`, :mod:`.messages`, :mod:`.ready`,
:mod:`.errors`; :mod:`.testing` is an in-memory multi-node harness with
safety checkers for tests (not a core).
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
from colonymesh.consensus.raft import RaftNode
from colonymesh.consensus.ready import ReadState, Ready
from colonymesh.consensus.status import ProposalResult, Role, Status

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
