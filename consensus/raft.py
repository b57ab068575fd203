"""The sans-I/O Raft core: :class:`RaftNode`, one member of a Raft group.

What it owns: the role, term and vote of one node, its log (in memory since
the last snapshot, see :mod:`.log`), the configuration, and on a leader the
replication progress of every follower (:mod:`.progress`) and pending reads
(:mod:`.readonly`). It implements leader election with randomised timeouts,
pre-vote and check-quorum, pipelined and batched replication with fast
conflict back-off, chunked snapshot transfer, single-server membership
changes with learners, leadership transfer and ReadIndex reads.

How it is driven (modelled on etcd-io/raft's RawNode): the driver feeds
inputs — ``step(msg, now)`` for a peer's message, ``handle_timer(now)`` at
``next_deadline()``, and the client calls ``propose``, ``read_index`` and
friends. None of them performs I/O; each only changes memory. The driver then
calls ``ready()``, which returns a :class:`~.ready.Ready` batch (or None),
honours it, and hands it back with ``advance(ready)``.

The contract the driver honours, for every Ready, in this order:

1. **Persist** ``snapshot`` (atomically, dropping stored entries at or below
   its index), then ``entries`` (truncating any stored entry at or above the
   first one's index, then appending), then ``hard_state``; fsync. Nothing in
   steps 2-3 may happen before this is durable.
2. **Send** ``messages`` (any order, best effort: Raft tolerates loss).
3. **Apply**: if ``restore_snapshot``, reset the state machine from
   ``snapshot.data``; then apply ``committed_entries`` in order; then serve each
   of ``read_states`` once the applied index reaches its ``index``.
4. Call ``advance(ready)``. Only then may ``ready()`` be called again; inputs
   (``step``, ``propose``, ...) may be fed at any time, also between ``ready``
   and ``advance``.

Because a vote or an acknowledgement is only sent after what it vouches for
is durable, a crash at any point loses nothing another node relied on. On
restart the driver passes the persisted hard state, entries and snapshot to
the constructor.

Time is an argument (``now``, float seconds, any monotonic origin);
randomness comes only from the injected ``random.Random``; sets are never
iterated where order matters, so a run is a function of its inputs.

Invariants checked at runtime (raising :class:`RaftInvariantError`): a
committed entry is never truncated, the log stays contiguous, commit never
passes the last index.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, assert_never

from colonymesh.consensus.confchange import (
    ConfChange,
    ConfChangeError,
    ConfChangeOp,
    apply_conf_change,
)
from colonymesh.consensus.config import RaftConfig
from colonymesh.consensus.errors import (
    NotLeader,
    ProposalDropped,
    RaftInvariantError,
    RaftProtocolError,
    RaftUsageError,
)
from colonymesh.consensus.log import RaftLog, entry_bytes
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
from colonymesh.consensus.progress import Progress, ProgressState, quorum_index
from colonymesh.consensus.readonly import ReadOnly
from colonymesh.consensus.ready import ReadState, Ready
from colonymesh.consensus.types import (
    ConfState,
    Entry,
    EntryKind,
    HardState,
    LogIndex,
    NodeId,
    Snapshot,
    SnapshotMeta,
    Term,
)

if TYPE_CHECKING:
    import random

logger = logging.getLogger("colonymesh.consensus")


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


class RaftNode:
    """One Raft member. See the module docstring for the driver contract."""

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
        """Create a node, fresh or restarted from its persisted state.

        ``conf`` only matters for a node with no persisted state: the founding
        members of a group all pass the same bootstrap configuration and each
        writes it as identical, committed ``CONF_CHANGE`` entries of term 1
        (one per member, at indexes 1..n, as etcd's bootstrap does); a node
        that will *join* an existing group passes ``ConfState()`` and learns
        the configuration from the log the leader sends it. On restart the
        configuration comes from the snapshot and the ``CONF_CHANGE`` entries
        after it, and ``conf`` is ignored.
        ``applied`` is how far the state machine already is (default: the
        snapshot index); committed entries after it are applied again.
        """
        self.id = node_id
        self.config = config
        self._rng = rng
        self._now = now
        hs = hard_state or HardState()
        handed_hs = hs
        fresh = hs == HardState() and not entries and snapshot is None
        if fresh and (conf.voters or conf.learners):
            entries = bootstrap_entries(conf)
            hs = HardState(Term(1), None, LogIndex(len(entries)))
        self.term: Term = hs.term
        self.voted_for: NodeId | None = hs.voted_for
        self._snapshot: Snapshot | None = snapshot
        snap_index = snapshot.meta.index if snapshot else LogIndex(0)
        snap_term = snapshot.meta.term if snapshot else Term(0)
        self.log = RaftLog(snap_index, snap_term, entries, hs.commit)
        if handed_hs != hs:
            self.log.unstable_from = LogIndex(1)  # the bootstrap entries are not durable yet
        # (index, conf) in log order; the first is the snapshot's (or empty) conf.
        self._confs: list[tuple[LogIndex, ConfState]] = [
            (snap_index, snapshot.meta.conf if snapshot else ConfState())
        ]
        self.applied: LogIndex = max(applied if applied is not None else snap_index, snap_index)
        if self.applied > self.log.committed:
            raise RaftInvariantError(f"applied {self.applied} beyond commit {self.log.committed}")
        self._applying: LogIndex = self.applied  # handed out in a Ready, not yet advanced
        self.role = Role.FOLLOWER
        self.leader: NodeId | None = None
        self._prs: dict[NodeId, Progress] = {}
        self._votes: dict[NodeId, bool] = {}
        self._msgs: list[Message] = []
        self._read_states: list[ReadState] = []
        self._readonly = ReadOnly()
        self._reads_waiting: list[tuple[bytes, NodeId | None]] = []
        self._send_to: dict[NodeId, bool] = {}  # followers to send appends to; True: even empty
        self._term_start: LogIndex = LogIndex(0)  # index of this leader's empty entry
        self._transferee: NodeId | None = None
        self._transfer_deadline = math.inf
        self._heartbeat_deadline = math.inf
        self._quorum_deadline = math.inf
        self._election_deadline = math.inf
        self._leader_contact = -math.inf
        self._snap_recv: tuple[SnapshotMeta, bytearray] | None = None
        self._pending_snapshot: Snapshot | None = None
        self._pending_restore = False
        self._handed_hs = handed_hs
        self._outstanding: Ready | None = None
        self._track_conf_entries(self.log.slice(self.log.first_index(), self.log.last_index() + 1))
        self._reset_election_timer(now)

    # ------------------------------------------------------------------ API

    @property
    def conf(self) -> ConfState:
        return self._confs[-1][1]

    @property
    def commit(self) -> LogIndex:
        return self.log.committed

    def status(self) -> Status:
        role = self.role
        if role is Role.FOLLOWER and self.id in self.conf.learners:
            role = Role.LEARNER
        progress = tuple((peer, LogIndex(pr.match)) for peer, pr in self._prs.items())
        return Status(
            self.id,
            role,
            self.term,
            self.leader,
            self.log.committed,
            self.applied,
            self.log.last_index(),
            self.conf,
            progress,
        )

    def step(self, msg: Message, now: float) -> None:
        """Feed one message from a peer. Malformed input raises RaftProtocolError
        before any state changes."""
        validate_message(msg)
        if msg.dst != self.id or msg.src == self.id:
            raise RaftProtocolError(f"message {msg.src}->{msg.dst} delivered to {self.id}")
        self._now = now
        if msg.term > self.term:
            if not self._step_higher_term(msg):
                return
        elif msg.term < self.term:
            self._step_lower_term(msg)
            return
        self._dispatch(msg)

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at ``now`` (elections, heartbeats, quorum checks)."""
        self._now = now
        if self.role is Role.LEADER:
            if now >= self._heartbeat_deadline:
                self._heartbeat_deadline = now + self.config.heartbeat_interval_s
                self._broadcast_heartbeat()
                self._retransmit_snapshots(now)
            if now >= self._transfer_deadline:
                logger.info("%s: leadership transfer to %s timed out", self.id, self._transferee)
                self._abort_transfer()
            if now >= self._quorum_deadline:
                self._quorum_deadline = now + self.config.election_timeout_s
                if self.config.check_quorum and not self._quorum_active():
                    logger.info("%s: lost contact with a quorum in term %d", self.id, self.term)
                    self._become_follower(self.term, None)
        elif now >= self._election_deadline:
            self._reset_election_timer(now)
            if self._promotable():
                self._start_election(transfer=False)

    def next_deadline(self) -> float:
        """When ``handle_timer`` must next be called (may be ``math.inf``)."""
        if self.role is Role.LEADER:
            return min(self._heartbeat_deadline, self._quorum_deadline, self._transfer_deadline)
        return self._election_deadline if self._promotable() else math.inf

    def campaign(self, now: float) -> None:
        """Start an election now (as the election timer would)."""
        self._now = now
        if self.role is not Role.LEADER and self._promotable():
            self._reset_election_timer(now)
            self._start_election(transfer=False)

    def propose(self, data: bytes) -> ProposalResult:
        """Append a command to the leader's log; it commits once a quorum stores it."""
        self._check_can_propose()
        return self._append_local(EntryKind.NORMAL, data)

    def propose_conf_change(self, change: ConfChange) -> ProposalResult:
        """Propose one membership change (§6); it takes effect once appended.

        Refused while another change is uncommitted or before the leader has
        committed an entry of its own term (the dissertation's fix for the
        single-server change bug).
        """
        self._check_can_propose()
        if self.log.committed < self._term_start:
            raise ProposalDropped("the leader has not yet committed an entry in its term")
        if self._confs[-1][0] > self.log.committed:
            raise ProposalDropped("a membership change is still uncommitted")
        apply_conf_change(self.conf, change)  # raises ConfChangeError if it cannot apply
        return self._append_local(EntryKind.CONF_CHANGE, change.encode())

    def transfer_leadership(self, to: NodeId, now: float) -> None:
        """Hand leadership to voter ``to`` (dissertation §3.10): bring its log up to
        date, then tell it to campaign. Proposals are refused meanwhile; the
        transfer is abandoned after an election timeout."""
        self._now = now
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader)
        if to == self.id or to not in self.conf.voters or to not in self._prs:
            raise RaftUsageError(f"cannot transfer leadership to {to}")
        self._transferee = to
        self._transfer_deadline = now + self.config.election_timeout_s
        pr = self._prs[to]
        if pr.match == self.log.last_index():
            self._send(TimeoutNow(self.id, to, self.term))
        else:
            self._send_to[to] = True  # probe now rather than wait for a heartbeat

    def read_index(self, context: bytes) -> None:
        """Request a linearizable read; a ReadState with ``context`` comes in a later
        Ready (none if leadership is lost meanwhile: retry after a timeout)."""
        if self.role is Role.LEADER:
            if not self._leader_read(context, None):
                raise ProposalDropped("too many pending reads")
        elif self.leader is not None:
            self._send(ReadIndexRequest(self.id, self.leader, self.term, context))
        else:
            raise NotLeader(None)

    def compact(self, index: LogIndex, snapshot_data: bytes) -> None:
        """The application snapshotted its state machine at applied ``index``:
        drop the log up to it. The snapshot is persisted via the next Ready."""
        if index > self.applied:
            raise RaftUsageError(f"compact to {index} beyond applied {self.applied}")
        if index <= self.log.snapshot_index:
            return
        term = self.log.term(index)
        if term is None:
            raise RaftInvariantError(f"no term for index {index}")
        snap = Snapshot(SnapshotMeta(index, term, self._conf_at(index)), snapshot_data)
        self.log.compact(index)
        self._snapshot = snap
        self._pending_snapshot = snap
        self._pending_restore = False
        keep = 0
        while keep + 1 < len(self._confs) and self._confs[keep + 1][0] <= index:
            keep += 1
        self._confs = [(index, self._confs[keep][1]), *self._confs[keep + 1 :]]

    def has_ready(self) -> bool:
        return self._outstanding is None and bool(
            self._msgs
            or self._send_to
            or self._read_states
            or self._readonly.round_needed()
            or self._pending_snapshot is not None
            or self.log.unstable_from <= self.log.last_index()
            or self._applying < self.log.committed
            or self._hard_state() != self._handed_hs
        )

    def ready(self) -> Ready | None:
        """The next batch of work, or None if there is none. See the module docstring."""
        if self._outstanding is not None:
            raise RaftUsageError("ready() called again before advance()")
        self._flush_appends()
        entries = tuple(self.log.unstable_entries())
        hs = self._hard_state()
        hs_out = hs if hs != self._handed_hs else None
        snapshot = self._pending_snapshot
        restore = self._pending_restore
        applying = self._applying
        if restore and snapshot is not None:
            applying = snapshot.meta.index
        committed: tuple[Entry, ...] = ()
        if applying < self.log.committed:
            committed = tuple(
                self.log.slice(applying + 1, self.log.committed + 1, self.config.max_apply_entries)
            )
        if not (entries or hs_out or snapshot or self._msgs or committed or self._read_states):
            return None
        rd = Ready(
            hard_state=hs_out,
            snapshot=snapshot,
            restore_snapshot=restore,
            entries=entries,
            messages=tuple(self._msgs),
            committed_entries=committed,
            read_states=tuple(self._read_states),
        )
        self._msgs = []
        self._read_states = []
        self._pending_snapshot = None
        self._pending_restore = False
        self.log.mark_handed_out()
        self._handed_hs = hs
        self._applying = committed[-1].index if committed else applying
        self._outstanding = rd
        return rd

    def advance(self, ready: Ready) -> None:
        """Acknowledge that ``ready`` was persisted, sent and applied."""
        if ready is not self._outstanding:
            raise RaftUsageError("advance() of a Ready that is not outstanding")
        self._outstanding = None
        if ready.restore_snapshot and ready.snapshot is not None:
            self.applied = max(self.applied, ready.snapshot.meta.index)
        if ready.committed_entries:
            self.applied = max(self.applied, ready.committed_entries[-1].index)

    # ------------------------------------------------------- term handling

    def _step_higher_term(self, msg: Message) -> bool:
        """A message from a higher term. Returns False if it is to be ignored."""
        if isinstance(msg, VoteRequest):
            if not msg.transfer and self._in_lease():
                # Check-quorum's lease: a live leader exists, so ignore a disruptive
                # candidate without bumping our term (dissertation §4.2.3).
                logger.debug("%s: ignoring %s from %s in lease", self.id, type(msg), msg.src)
                return False
            if msg.pre_vote:
                return True  # a pre-vote never changes our term
        elif isinstance(msg, VoteResponse) and msg.pre_vote and msg.granted:
            return True  # granted pre-votes carry the term we would campaign at
        leader = msg.src if isinstance(msg, AppendEntries | Heartbeat | InstallSnapshot) else None
        self._become_follower(msg.term, leader)
        return True

    def _step_lower_term(self, msg: Message) -> None:
        if isinstance(msg, AppendEntries | Heartbeat) and (
            self.config.check_quorum or self.config.pre_vote
        ):
            # A stale leader (or we bumped our term while partitioned): tell it our
            # term so it steps down, instead of staying silent forever.
            self._send(HeartbeatResponse(self.id, msg.src, self.term))
        elif isinstance(msg, VoteRequest) and msg.pre_vote:
            self._send(VoteResponse(self.id, msg.src, self.term, granted=False, pre_vote=True))

    def _in_lease(self) -> bool:
        if not self.config.check_quorum:
            return False
        if self.role is Role.LEADER:
            return True
        return (
            self.leader is not None
            and self._now - self._leader_contact < self.config.election_timeout_s
        )

    def _dispatch(self, msg: Message) -> None:
        match msg:
            case VoteRequest():
                self._handle_vote_request(msg)
            case VoteResponse():
                self._handle_vote_response(msg)
            case AppendEntries():
                if self._follow(msg.src):
                    self._handle_append(msg)
            case Heartbeat():
                if self._follow(msg.src):
                    self._handle_heartbeat(msg)
            case InstallSnapshot():
                if self._follow(msg.src):
                    self._handle_snapshot_chunk(msg)
            case TimeoutNow():
                if self._promotable() and self.role is not Role.LEADER:
                    logger.info("%s: TimeoutNow from %s, campaigning", self.id, msg.src)
                    self._start_election(transfer=True)
            case ReadIndexRequest():
                if self.role is Role.LEADER:
                    self._leader_read(msg.context, msg.src)
            case ReadIndexResponse():
                if msg.ok:
                    self._read_states.append(ReadState(msg.index, msg.context))
            case AppendResponse() | HeartbeatResponse() | InstallSnapshotResponse():
                if self.role is Role.LEADER:
                    self._handle_leader_response(msg)
            case _:
                assert_never(msg)

    def _follow(self, leader: NodeId) -> bool:
        """A same-term leader message arrived; become (or stay) its follower."""
        if self.role is Role.LEADER:
            raise RaftInvariantError(f"two leaders in term {self.term}: {self.id}, {leader}")
        if self.role is not Role.FOLLOWER or self.leader != leader:
            self._become_follower(self.term, leader)
        self._leader_contact = self._now
        self._reset_election_timer(self._now)
        return True

    # ------------------------------------------------------------ elections

    def _promotable(self) -> bool:
        return self.id in self.conf.voters

    def _reset_election_timer(self, now: float) -> None:
        base = self.config.election_timeout_s
        self._election_deadline = now + base + self._rng.random() * base

    def _start_election(self, *, transfer: bool) -> None:
        """Pre-vote first (dissertation §9.6) unless disabled or forced by a transfer."""
        if not self.config.pre_vote or transfer:
            self._campaign(transfer=transfer)
            return
        self.role = Role.PRE_CANDIDATE
        self.leader = None
        self._votes = {self.id: True}
        logger.info("%s: pre-campaign for term %d", self.id, self.term + 1)
        if self._tally() == 1:
            self._campaign(transfer=False)
            return
        self._request_votes(Term(self.term + 1), pre_vote=True, transfer=False)

    def _campaign(self, *, transfer: bool) -> None:
        """A real election (§5.2): new term, vote for ourselves, ask the voters."""
        self._become_candidate()
        self._votes = {self.id: True}
        if self._tally() == 1:
            self._become_leader()
            return
        self._request_votes(self.term, pre_vote=False, transfer=transfer)

    def _request_votes(self, term: Term, *, pre_vote: bool, transfer: bool) -> None:
        last_index, last_term = self.log.last_index(), self.log.last_term()
        for peer in self.conf.voters:
            if peer != self.id:
                self._send(
                    VoteRequest(self.id, peer, term, last_index, last_term, pre_vote, transfer)
                )

    def _become_candidate(self) -> None:
        self._clear_leader_state()
        self.role = Role.CANDIDATE
        self.term = Term(self.term + 1)
        self.voted_for = self.id
        self.leader = None
        logger.info("%s: campaigning in term %d", self.id, self.term)

    def _tally(self) -> int:
        """1 if the votes so far win, -1 if they lose, 0 if still open."""
        voters = self.conf.voters
        need = len(voters) // 2 + 1
        granted = sum(1 for v in voters if self._votes.get(v) is True)
        rejected = sum(1 for v in voters if self._votes.get(v) is False)
        if granted >= need:
            return 1
        if rejected > len(voters) - need:
            return -1
        return 0

    def _handle_vote_request(self, msg: VoteRequest) -> None:
        can_vote = (
            self.voted_for == msg.src
            or (self.voted_for is None and self.leader is None)
            or (msg.pre_vote and msg.term > self.term)
        )
        if can_vote and self.log.is_up_to_date(msg.last_log_index, msg.last_log_term):
            term = msg.term if msg.pre_vote else self.term
            self._send(VoteResponse(self.id, msg.src, term, granted=True, pre_vote=msg.pre_vote))
            if not msg.pre_vote:
                self.voted_for = msg.src
                self._reset_election_timer(self._now)
        else:
            self._send(
                VoteResponse(self.id, msg.src, self.term, granted=False, pre_vote=msg.pre_vote)
            )

    def _handle_vote_response(self, msg: VoteResponse) -> None:
        expected = Role.PRE_CANDIDATE if msg.pre_vote else Role.CANDIDATE
        if self.role is not expected:
            return
        self._votes.setdefault(msg.src, msg.granted)
        result = self._tally()
        if result == 1:
            if self.role is Role.PRE_CANDIDATE:
                self._campaign(transfer=False)
            else:
                self._become_leader()
        elif result == -1:
            self._become_follower(self.term, None)

    # ---------------------------------------------------------- transitions

    def _clear_leader_state(self) -> None:
        self._prs = {}
        self._send_to = {}
        self._readonly.clear()
        self._reads_waiting = []
        self._transferee = None
        self._transfer_deadline = math.inf
        self._heartbeat_deadline = math.inf
        self._quorum_deadline = math.inf

    def _become_follower(self, term: Term, leader: NodeId | None) -> None:
        if term > self.term:
            self.term = term
            self.voted_for = None
        if self.role is not Role.FOLLOWER or self.leader != leader:
            logger.info("%s: follower in term %d (leader %s)", self.id, self.term, leader)
        self._clear_leader_state()
        self.role = Role.FOLLOWER
        self.leader = leader
        self._votes = {}
        self._reset_election_timer(self._now)

    def _become_leader(self) -> None:
        if self.role is not Role.CANDIDATE:
            raise RaftInvariantError(f"{self.id} becoming leader from {self.role}")
        self._clear_leader_state()
        self.role = Role.LEADER
        self.leader = self.id
        logger.info("%s: leader in term %d", self.id, self.term)
        last = self.log.last_index()
        for peer in self._members():
            self._prs[peer] = self._new_progress(last + 1)
        self._heartbeat_deadline = self._now + self.config.heartbeat_interval_s
        self._quorum_deadline = self._now + self.config.election_timeout_s
        # §5.4.2/§8: commit earlier terms' entries by committing one of our own.
        self._term_start = LogIndex(last + 1)
        self._append_local(EntryKind.EMPTY, b"")

    def _new_progress(self, next_index: int) -> Progress:
        pr = Progress(next_index, self.config.max_inflight_msgs, self.config.max_inflight_bytes)
        pr.recent_active = True
        return pr

    def _members(self) -> list[NodeId]:
        conf = self.conf
        return [*conf.voters, *conf.learners]

    # ------------------------------------------------------------- follower

    def _handle_append(self, msg: AppendEntries) -> None:
        prev, prev_term, entries = msg.prev_log_index, msg.prev_log_term, msg.entries
        committed = self.log.committed
        if prev < committed:
            # Everything up to our commit index matches the leader (§5.4): skip it.
            skip = committed - prev
            if skip >= len(entries):
                self._send(AppendResponse(self.id, msg.src, self.term, True, committed, *_NO_HINT))
                return
            entries = entries[skip:]
            prev = committed
            term = self.log.term(committed)
            if term is None:
                raise RaftInvariantError(f"no term at commit {committed}")
            prev_term = term
        if not self.log.match_term(prev, prev_term):
            hint_index, hint_term = self.log.find_conflict_by_term(prev, prev_term)
            self._send(
                AppendResponse(self.id, msg.src, self.term, False, prev, hint_index, hint_term)
            )
            return
        first = self.log.append_after(prev, entries)
        if first is not None:
            self._truncate_confs(first)
            self._track_conf_entries(entries[first - prev - 1 :])
        last_new = LogIndex(prev + len(entries))
        self.log.commit_to(min(msg.leader_commit, last_new))
        self._send(AppendResponse(self.id, msg.src, self.term, True, last_new, *_NO_HINT))

    def _handle_heartbeat(self, msg: Heartbeat) -> None:
        self.log.commit_to(min(msg.commit, self.log.last_index()))
        self._send(HeartbeatResponse(self.id, msg.src, self.term, msg.read_seq))

    def _handle_snapshot_chunk(self, msg: InstallSnapshot) -> None:
        meta = msg.meta
        if meta.index <= self.log.committed:
            self._snap_recv = None
            self._send(InstallSnapshotResponse(self.id, msg.src, self.term, meta.index, 0, True))
            return
        if msg.offset == 0:
            self._snap_recv = (meta, bytearray())
        recv = self._snap_recv
        if recv is None or recv[0] != meta or msg.offset != len(recv[1]):
            want = len(recv[1]) if recv is not None and recv[0] == meta else 0
            self._send(
                InstallSnapshotResponse(self.id, msg.src, self.term, meta.index, want, False)
            )
            return
        buf = recv[1]
        if len(buf) + len(msg.data) > self.config.snapshot_bytes_max:
            self._snap_recv = None
            raise RaftProtocolError(f"snapshot from {msg.src} exceeds snapshot_bytes_max")
        buf += msg.data
        if msg.done:
            self._snap_recv = None
            self._restore(Snapshot(meta, bytes(buf)))
        self._send(
            InstallSnapshotResponse(self.id, msg.src, self.term, meta.index, len(buf), msg.done)
        )

    def _restore(self, snap: Snapshot) -> None:
        meta = snap.meta
        if self.log.match_term(meta.index, meta.term):
            # We already hold that prefix: just fast-forward the commit index.
            self.log.commit_to(meta.index)
            return
        logger.info("%s: installing snapshot at %d (term %d)", self.id, meta.index, meta.term)
        self.log.restore(meta.index, meta.term)
        self._snapshot = snap
        self._pending_snapshot = snap
        self._pending_restore = True
        self._confs = [(meta.index, meta.conf)]

    # ------------------------------------------------------ configuration

    def _track_conf_entries(self, entries: Sequence[Entry]) -> None:
        for entry in entries:
            if entry.kind is EntryKind.CONF_CHANGE:
                try:
                    new = apply_conf_change(self.conf, ConfChange.decode(entry.data))
                except ConfChangeError as exc:
                    # Every replica sees the same bytes against the same conf, so all
                    # skip it alike.
                    logger.warning("%s: skipping conf entry %d: %s", self.id, entry.index, exc)
                    continue
                self._confs.append((entry.index, new))
                self._conf_changed()

    def _truncate_confs(self, first: int) -> None:
        if self._confs[-1][0] >= first:
            while len(self._confs) > 1 and self._confs[-1][0] >= first:
                self._confs.pop()
            self._conf_changed()

    def _conf_at(self, index: int) -> ConfState:
        conf = self._confs[0][1]
        for at, c in self._confs:
            if at > index:
                break
            conf = c
        return conf

    def _conf_changed(self) -> None:
        if self.role is not Role.LEADER:
            return
        members = self._members()
        for peer in list(self._prs):
            if peer not in members:
                del self._prs[peer]
                self._send_to.pop(peer, None)
        for peer in members:
            if peer not in self._prs:
                self._prs[peer] = self._new_progress(self.log.last_index() + 1)
                self._send_to[peer] = True
        if self._transferee is not None and self._transferee not in self.conf.voters:
            self._abort_transfer()
        self._maybe_commit()

    # --------------------------------------------------------------- leader

    def _check_can_propose(self) -> None:
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader)
        if self._transferee is not None:
            raise ProposalDropped(f"leadership transfer to {self._transferee} in progress")
        if self.id not in self._prs:
            raise ProposalDropped("this leader is being removed from the group")

    def _append_local(self, kind: EntryKind, data: bytes) -> ProposalResult:
        index = LogIndex(self.log.last_index() + 1)
        entry = Entry(self.term, index, kind, data)
        self.log.append(entry)
        if kind is EntryKind.CONF_CHANGE:
            self._track_conf_entries((entry,))
        own = self._prs.get(self.id)
        if own is not None:
            own.maybe_update(index)
        for peer in self._prs:
            if peer != self.id:
                self._send_to.setdefault(peer, False)
        self._maybe_commit()
        return ProposalResult(index, self.term)

    def _maybe_commit(self) -> bool:
        """Advance the commit index to what a quorum of voters stores, if that entry
        is from the current term (§5.4.2). True if it advanced."""
        voters = self.conf.voters
        matches = [self._prs[v].match if v in self._prs else 0 for v in voters]
        index = quorum_index(matches)
        if index <= self.log.committed or self.log.term(index) != self.term:
            return False
        self.log.commit_to(index)
        for peer in self._prs:
            if peer != self.id:
                self._send_to[peer] = True  # tell followers the new commit index
        if self._reads_waiting and self.log.committed >= self._term_start:
            waiting, self._reads_waiting = self._reads_waiting, []
            for context, requester in waiting:
                self._leader_read(context, requester)
        if self.id not in self.conf.voters and self._confs[-1][0] <= self.log.committed:
            self._step_down_removed()
        return True

    def _step_down_removed(self) -> None:
        """Our removal committed (§6): tell the followers the commit index, hand
        leadership to the most up-to-date voter, and step down."""
        logger.info("%s: removed from the group, stepping down", self.id)
        self._flush_appends()
        best: tuple[int, NodeId] | None = None
        for voter in self.conf.voters:
            pr = self._prs.get(voter)
            if pr is not None and pr.match == self.log.last_index():
                best = max(best or (pr.match, voter), (pr.match, voter))
        if best is not None:
            self._send(TimeoutNow(self.id, best[1], self.term))
        self._become_follower(self.term, None)

    def _send(self, msg: Message) -> None:
        self._msgs.append(msg)

    def _flush_appends(self) -> None:
        if self.role is not Role.LEADER:
            self._send_to = {}
            return
        if self._readonly.round_needed():
            self._broadcast_heartbeat()
        send_to, self._send_to = self._send_to, {}
        for peer, even_empty in send_to.items():
            pr = self._prs.get(peer)
            if pr is not None:
                self._send_appends(peer, pr, even_empty)

    def _send_appends(self, peer: NodeId, pr: Progress, even_empty: bool) -> None:
        """Send as many appends as flow control allows (one while probing)."""
        sent = False
        last = self.log.last_index()
        while not pr.is_paused():
            prev = pr.next - 1
            prev_term = self.log.term(prev)
            if prev_term is None:
                self._send_snapshot(peer, pr)
                return
            entries = self.log.slice(
                pr.next, last + 1, self.config.max_append_entries, self.config.max_append_bytes
            )
            if not entries and (sent or not even_empty):
                return
            self._send(
                AppendEntries(
                    self.id,
                    peer,
                    self.term,
                    LogIndex(prev),
                    prev_term,
                    tuple(entries),
                    self.log.committed,
                )
            )
            sent = True
            if pr.state is ProgressState.REPLICATE and entries:
                pr.next = entries[-1].index + 1
                pr.inflights.add(entries[-1].index, sum(entry_bytes(e) for e in entries))
            elif pr.state is ProgressState.PROBE:
                pr.probe_sent = True
            if not entries:
                return

    def _send_snapshot(self, peer: NodeId, pr: Progress) -> None:
        snap = self._snapshot
        if snap is None:
            raise RaftInvariantError("entries compacted but no snapshot held")
        logger.info("%s: sending snapshot %d to %s", self.id, snap.meta.index, peer)
        pr.become_snapshot(snap.meta.index, self._now)
        self._send_snapshot_chunk(peer, pr)

    def _send_snapshot_chunk(self, peer: NodeId, pr: Progress) -> None:
        snap = self._snapshot
        if snap is None or snap.meta.index != pr.snapshot_index:
            if snap is None:
                raise RaftInvariantError("no snapshot to send")
            pr.become_snapshot(snap.meta.index, self._now)  # a newer one replaced it
        start = pr.snapshot_offset
        data = snap.data[start : start + self.config.snapshot_chunk_bytes]
        done = start + len(data) >= len(snap.data)
        pr.snapshot_sent_at = self._now
        self._send(InstallSnapshot(self.id, peer, self.term, snap.meta, start, data, done))

    def _retransmit_snapshots(self, now: float) -> None:
        for peer, pr in self._prs.items():
            if (
                pr.state is ProgressState.SNAPSHOT
                and now - pr.snapshot_sent_at >= self.config.snapshot_retransmit_s
            ):
                self._send_snapshot_chunk(peer, pr)

    def _broadcast_heartbeat(self) -> None:
        seq = self._readonly.start_round()
        for peer, pr in self._prs.items():
            if peer != self.id:
                commit = LogIndex(min(pr.match, self.log.committed))
                self._send(Heartbeat(self.id, peer, self.term, commit, seq))
        self._release_reads()

    def _handle_leader_response(
        self, msg: AppendResponse | HeartbeatResponse | InstallSnapshotResponse
    ) -> None:
        pr = self._prs.get(msg.src)
        if pr is None:
            return
        pr.recent_active = True
        match msg:
            case AppendResponse():
                self._handle_append_response(msg, pr)
            case HeartbeatResponse():
                pr.probe_sent = False
                if pr.state is ProgressState.REPLICATE and pr.inflights.full():
                    pr.inflights.free_first()
                if pr.match < self.log.last_index():
                    self._send_to[msg.src] = True
                if msg.read_seq > pr.read_seq:
                    pr.read_seq = msg.read_seq
                    self._release_reads()
            case InstallSnapshotResponse():
                if pr.state is not ProgressState.SNAPSHOT:
                    return
                if msg.done:
                    pr.maybe_update(msg.snapshot_index)
                    pr.become_probe()
                    self._send_to[msg.src] = False
                elif msg.snapshot_index == pr.snapshot_index:
                    pr.snapshot_offset = msg.next_offset
                    self._send_snapshot_chunk(msg.src, pr)
            case _:
                assert_never(msg)

    def _handle_append_response(self, msg: AppendResponse, pr: Progress) -> None:
        if not msg.success:
            match_hint, _ = self.log.find_conflict_by_term(msg.hint_index, msg.hint_term)
            if pr.maybe_decrease_to(msg.index, match_hint):
                if pr.state is ProgressState.REPLICATE:
                    pr.become_probe()
                self._send_to[msg.src] = False
            return
        paused = pr.is_paused()
        if not pr.maybe_update(msg.index):
            if pr.state is ProgressState.REPLICATE:
                pr.inflights.free_le(msg.index)
            return
        if pr.state is ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state is ProgressState.SNAPSHOT and pr.match >= pr.snapshot_index:
            pr.become_probe()
        else:
            pr.inflights.free_le(msg.index)
        if not self._maybe_commit() and (paused or pr.next <= self.log.last_index()):
            self._send_to.setdefault(msg.src, False)
        if msg.src == self._transferee and pr.match == self.log.last_index():
            self._send(TimeoutNow(self.id, msg.src, self.term))

    def _quorum_active(self) -> bool:
        active = 0
        for voter in self.conf.voters:
            pr = self._prs.get(voter)
            if voter == self.id or (pr is not None and pr.recent_active):
                active += 1
        for peer, pr in self._prs.items():
            if peer != self.id:
                pr.recent_active = False
        return active >= len(self.conf.voters) // 2 + 1

    def _abort_transfer(self) -> None:
        self._transferee = None
        self._transfer_deadline = math.inf

    # ---------------------------------------------------------------- reads

    def _leader_read(self, context: bytes, requester: NodeId | None) -> bool:
        """Queue a read; False if too many are pending already."""
        if len(self._readonly) + len(self._reads_waiting) >= self.config.max_pending_reads:
            return False
        if self.log.committed < self._term_start:
            self._reads_waiting.append((context, requester))
            return True
        self._readonly.add(self.log.committed, context, requester)
        self._release_reads()  # a single-voter group needs no round
        return True

    def _release_reads(self) -> None:
        if not len(self._readonly):
            return
        voters = self.conf.voters
        # We vouch for every round we sent; a lone voter needs no round at all.
        own = self._readonly.last_sent_seq + (1 if len(voters) == 1 else 0)
        seqs = [
            own if v == self.id else (self._prs[v].read_seq if v in self._prs else 0)
            for v in voters
        ]
        for read in self._readonly.release(quorum_index(seqs)):
            if read.requester is None:
                self._read_states.append(ReadState(read.index, read.context))
            else:
                self._send(
                    ReadIndexResponse(
                        self.id, read.requester, self.term, read.context, read.index, True
                    )
                )

    def _hard_state(self) -> HardState:
        return HardState(self.term, self.voted_for, self.log.committed)


_NO_HINT = (LogIndex(0), Term(0))


def bootstrap_entries(conf: ConfState) -> list[Entry]:
    """The founding configuration as committed term-1 entries, identical on every
    founding member (voters first, then learners, each sorted)."""
    changes = [ConfChange(ConfChangeOp.ADD_VOTER, v) for v in sorted(conf.voters)]
    changes += [ConfChange(ConfChangeOp.ADD_LEARNER, n) for n in sorted(conf.learners)]
    return [
        Entry(Term(1), LogIndex(k + 1), EntryKind.CONF_CHANGE, change.encode())
        for k, change in enumerate(changes)
    ]
