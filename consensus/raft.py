"""The sans-I/O Raft core: :class:`RaftNode`, one member of a Raft group.

What it owns: the role, term and vote of one node, its log (in memory since
the last snapshot, see :mod:`.log`), the configuration, and on a leader the
replication state of its term (:mod:`.leader`, with :mod:`.progress` and
:mod:`.readonly`). It implements leader election with randomised timeouts,
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

1. **Persist** ``snapshot`` atomically — keeping the stored entries after it
   only if the stored log holds the snapshot's last entry (same index and
   term), otherwise discarding the whole stored log — then ``entries``
   (truncating any stored entry at or above the first one's index, then
   appending), then ``hard_state``; fsync if ``must_sync`` (False when only
   the commit index changed: that write need not be durable).
2. **Send** ``messages`` (any order, best effort: Raft tolerates loss) once
   step 1 is durable — or, if ``send_while_persisting``, before or while
   persisting. The core sets that flag only on a leader whose term and vote
   are already durable: its appends, heartbeats and snapshots vouch for
   nothing on its own disk, so followers fsync in parallel with the leader
   (dissertation §10.2.1).
3. **Apply**, after step 1 is durable: if ``restore_snapshot``, reset the
   state machine from ``snapshot.data``; then apply ``committed_entries`` in
   order; then serve each of ``read_states`` once the applied index reaches
   its ``index``.
4. Call ``advance(ready)``: this also tells the core that step 1 is durable.
   Only then may ``ready()`` be called again; inputs (``step``, ``propose``,
   ...) may be fed at any time, also between ``ready`` and ``advance``.

Because a vote or an acknowledgement is only sent after what it vouches for
is durable, a crash at any point loses nothing another node relied on. A
leader counts its own log in a quorum only up to ``log.stable_index``, which
``advance`` raises to what the Ready made durable: an entry commits once a
quorum of *durable* copies exists, whether or not the leader's is among them,
so a leader that crashes before its fsync loses only entries nobody
committed. On restart the driver passes the persisted hard state, entries and
snapshot to the constructor.

Time is an argument (``now``, float seconds, any monotonic origin);
randomness comes only from the injected ``random.Random``; sets are never
iterated where order matters, so a run is a function of its inputs.

Invariants checked at runtime (raising :class:`RaftInvariantError`): a
committed entry is never truncated, the log stays contiguous, commit never
passes the last index.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, assert_never

from colonymesh.consensus.confchange import (
    ConfChange,
    ConfChangeError,
    ConfHistory,
    apply_conf_change,
    bootstrap_entries,
)
from colonymesh.consensus.config import RaftConfig
from colonymesh.consensus.errors import (
    NotLeader,
    ProposalDropped,
    RaftInvariantError,
    RaftProtocolError,
    RaftUsageError,
)
from colonymesh.consensus.leader import LeaderState
from colonymesh.consensus.log import RaftLog
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
from colonymesh.consensus.ready import ReadState, Ready
from colonymesh.consensus.snapshot import SnapshotReceiver
from colonymesh.consensus.status import ProposalResult, Role, Status
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
        last_entry_term = entries[-1].term if entries else Term(0)
        if last_entry_term > hs.term:
            # A crash between the log's fsync and the hard state's kept entries of a
            # newer term but lost the record of that term. Any vote in that record
            # was never sent (votes go out only after their hard state is durable,
            # and storage never tears the last durable record), so taking the
            # entries' term with no vote cannot make this node vote twice.
            hs = HardState(last_entry_term, None, hs.commit)
        self.term: Term = hs.term
        self.voted_for: NodeId | None = hs.voted_for
        self._snapshot: Snapshot | None = snapshot
        snap_index = snapshot.meta.index if snapshot else LogIndex(0)
        snap_term = snapshot.meta.term if snapshot else Term(0)
        self.log = RaftLog(snap_index, snap_term, entries, hs.commit)
        if fresh and handed_hs != hs:
            self.log.mark_unstable_from(1)  # the bootstrap entries are not durable yet
        # (index, conf) in log order; the first is the snapshot's (or empty) conf.
        self._confs = ConfHistory(snap_index, snapshot.meta.conf if snapshot else ConfState())
        self.applied: LogIndex = max(applied if applied is not None else snap_index, snap_index)
        if self.applied > self.log.committed:
            raise RaftInvariantError(f"applied {self.applied} beyond commit {self.log.committed}")
        self._applying: LogIndex = self.applied  # handed out in a Ready, not yet advanced
        self.role = Role.FOLLOWER
        self.leader: NodeId | None = None
        self._lead: LeaderState | None = None  # set exactly while role is LEADER
        self._votes: dict[NodeId, bool] = {}
        self._msgs: list[Message] = []
        self._read_states: list[ReadState] = []
        self._election_deadline = math.inf
        self._leader_contact = -math.inf
        self._snap_recv = SnapshotReceiver(config.snapshot_bytes_max)
        self._pending_snapshot: Snapshot | None = None
        self._pending_restore = False
        self._handed_hs = handed_hs
        self._outstanding: Ready | None = None
        self._track_conf_entries(self.log.slice(self.log.first_index(), self.log.last_index() + 1))
        self._reset_election_timer(now)

    # ------------------------------------------------------------------ API

    @property
    def conf(self) -> ConfState:
        return self._confs.current

    @property
    def commit(self) -> LogIndex:
        return self.log.committed

    def status(self) -> Status:
        role = self.role
        if role is Role.FOLLOWER and self.id in self.conf.learners:
            role = Role.LEARNER
        prs = self._lead.prs if self._lead is not None else {}
        progress = tuple((peer, LogIndex(pr.match)) for peer, pr in prs.items())
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
        """Feed one message from a peer.

        A structurally malformed message (or one not addressed to us) raises
        :class:`RaftProtocolError` before any state changes; a well-formed one
        that no correct peer could send (a second leader for our term, an
        oversized snapshot) raises it too. The driver drops the message and
        carries on."""
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
        if self._lead is not None:
            if not self._lead.on_timer(now):
                self._become_follower(self.term, None)  # check-quorum failed
        elif now >= self._election_deadline:
            self._reset_election_timer(now)
            if self._promotable():
                self._start_election(transfer=False)

    def next_deadline(self) -> float:
        """When ``handle_timer`` must next be called (may be ``math.inf``)."""
        if self._lead is not None:
            return self._lead.next_deadline()
        return self._election_deadline if self._promotable() else math.inf

    def campaign(self, now: float) -> None:
        """Start an election now (as the election timer would)."""
        self._now = now
        if self.role is not Role.LEADER and self._promotable():
            self._reset_election_timer(now)
            self._start_election(transfer=False)

    def propose(self, data: bytes) -> ProposalResult:
        """Append a command to the leader's log; it commits once a quorum stores it."""
        return self._append_local(self._leader_for_proposal(len(data)), EntryKind.NORMAL, data)

    def propose_conf_change(self, change: ConfChange) -> ProposalResult:
        """Propose one membership change (§6); it takes effect once appended.

        Refused while another change is uncommitted or before the leader has
        committed an entry of its own term (the dissertation's fix for the
        single-server change bug).
        """
        lead = self._leader_for_proposal()
        lead.check_can_change_conf()
        apply_conf_change(self.conf, change)  # raises ConfChangeError if it cannot apply
        return self._append_local(lead, EntryKind.CONF_CHANGE, change.encode())

    def transfer_leadership(self, to: NodeId, now: float) -> None:
        """Hand leadership to voter ``to`` (dissertation §3.10): bring its log up to
        date, then tell it to campaign. Proposals are refused meanwhile; the
        transfer is abandoned after an election timeout."""
        self._now = now
        if self._lead is None:
            raise NotLeader(self.leader)
        self._lead.transfer(to, now)

    def read_index(self, context: bytes) -> None:
        """Request a linearizable read; a ReadState with ``context`` comes in a later
        Ready (none if leadership is lost meanwhile: retry after a timeout)."""
        if self._lead is not None:
            if not self._lead.read(context, None):
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
        snap = Snapshot(SnapshotMeta(index, term, self._confs.at(index)), snapshot_data)
        self.log.compact(index)
        self._snapshot = snap
        if self._lead is not None:
            self._lead.snapshot = snap
        self._pending_snapshot = snap
        self._pending_restore = False
        self._confs.compact(index)

    def has_ready(self) -> bool:
        """Whether ``ready()`` may return a batch (cheap; no side effects)."""
        return self._outstanding is None and (
            (self._lead is not None and self._lead.has_work()) or self._has_output()
        )

    def _has_output(self) -> bool:
        log, hs = self.log, self._handed_hs
        return bool(
            self._msgs
            or self._read_states
            or self._pending_snapshot is not None
            or log.unstable_from <= log.last_index()
            or self._applying < log.committed
            or self.term != hs.term
            or self.voted_for != hs.voted_for
            or log.committed != hs.commit
        )

    def ready(self) -> Ready | None:
        """The next batch of work, or None if there is none. See the module docstring."""
        if self._outstanding is not None:
            raise RaftUsageError("ready() called again before advance()")
        if self._lead is not None and self._lead.has_work():
            self._lead.flush()
        if not self._has_output():
            return None
        log = self.log
        entries = tuple(log.unstable_entries())
        hs = self._hard_state()
        snapshot = self._pending_snapshot
        restore = self._pending_restore
        applying = self._applying
        if restore and snapshot is not None:
            applying = snapshot.meta.index
        committed: tuple[Entry, ...] = ()
        if applying < log.committed:
            committed = tuple(
                log.slice(applying + 1, log.committed + 1, self.config.max_apply_entries)
            )
        handed = self._handed_hs
        vote_durable = hs.term == handed.term and hs.voted_for == handed.voted_for
        rd = Ready(
            hard_state=hs if hs != handed else None,
            snapshot=snapshot,
            restore_snapshot=restore,
            entries=entries,
            messages=tuple(self._msgs),
            committed_entries=committed,
            read_states=tuple(self._read_states),
            # A leader's messages vouch for nothing on its own disk once its term and
            # vote are durable: they may go out while it persists (§10.2.1).
            send_while_persisting=self._lead is not None and vote_durable,
            must_sync=bool(entries) or snapshot is not None or not vote_durable,
        )
        self._msgs = []
        self._read_states = []
        self._pending_snapshot = None
        self._pending_restore = False
        log.mark_handed_out()
        self._handed_hs = hs
        self._applying = committed[-1].index if committed else applying
        self._outstanding = rd
        return rd

    def advance(self, ready: Ready) -> None:
        """Acknowledge that ``ready`` was persisted, sent and applied."""
        if ready is not self._outstanding:
            raise RaftUsageError("advance() of a Ready that is not outstanding")
        self._outstanding = None
        log = self.log
        if ready.snapshot is not None:
            log.mark_stable(ready.snapshot.meta.index)
        if ready.entries:
            log.mark_stable(ready.entries[-1].index)
        if self._lead is not None:
            self._lead.persisted(log.stable_index)
            self._check_resign()
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
                if self._lead is not None:
                    self._lead.read(msg.context, msg.src)  # dropped if too many: retried
            case ReadIndexResponse():
                if msg.ok:
                    self._read_states.append(ReadState(msg.index, msg.context))
            case AppendResponse() | HeartbeatResponse() | InstallSnapshotResponse():
                if self._lead is not None:
                    self._lead.on_response(msg, self._now)
                    self._check_resign()
            case _:
                assert_never(msg)

    def _follow(self, leader: NodeId) -> bool:
        """A same-term leader message arrived; become (or stay) its follower."""
        if self.role is Role.LEADER:
            # Impossible from a correct peer (election safety): blame the sender.
            raise RaftProtocolError(f"{leader} claims to lead term {self.term}, led by {self.id}")
        if self.role is not Role.FOLLOWER or self.leader != leader:
            self._become_follower(self.term, leader)
        self._leader_contact = self._now
        self._reset_election_timer(self._now)
        return True

    # ------------------------------------------------------------ elections

    def _promotable(self) -> bool:
        """May this node campaign? A voter of its latest configuration may; so may a
        voter of the last *committed* one whose demotion or removal is still
        uncommitted. Without that, a leader that appended its own removal and then
        lost leadership can deadlock the group: it alone holds the newest entry,
        so it denies every vote, yet its latest configuration says it may not
        campaign. Campaigning is still safe: votes are counted only among the
        voters of the candidate's latest configuration, which overlaps every
        majority of the previous one (single-server change, §6)."""
        if self.id in self.conf.voters:
            return True
        committed = self.log.committed
        return self._confs.current_index > committed and self.id in self._confs.at(committed).voters

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
        self._lead = None
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

    def _become_follower(self, term: Term, leader: NodeId | None) -> None:
        if term > self.term:
            self.term = term
            self.voted_for = None
        if self.role is not Role.FOLLOWER or self.leader != leader:
            logger.info("%s: follower in term %d (leader %s)", self.id, self.term, leader)
        self._lead = None
        self.role = Role.FOLLOWER
        self.leader = leader
        self._votes = {}
        self._reset_election_timer(self._now)

    def _become_leader(self) -> None:
        if self.role is not Role.CANDIDATE:
            raise RaftInvariantError(f"{self.id} becoming leader from {self.role}")
        self.role = Role.LEADER
        self.leader = self.id
        logger.info("%s: leader in term %d", self.id, self.term)
        self._lead = LeaderState(
            self.id,
            self.term,
            self.log,
            self.config,
            self.conf,
            self._confs.current_index,
            self._snapshot,
            self._send,
            self._emit_read,
            self._now,
        )
        self._check_resign()

    def _check_resign(self) -> None:
        if self._lead is not None and self._lead.resign:
            self._become_follower(self.term, None)

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
            self._confs.truncate_from(first)
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
            # We already hold (and have committed) everything it covers.
            self._snap_recv.reset()
            self._send(InstallSnapshotResponse(self.id, msg.src, self.term, meta.index, 0, True))
            return
        want, snap = self._snap_recv.receive(msg)
        if snap is not None:
            self._restore(snap)
        self._send(
            InstallSnapshotResponse(self.id, msg.src, self.term, meta.index, want, snap is not None)
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
        self._confs.reset(meta.index, meta.conf)

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
                self._confs.append(entry.index, new)
                if self._lead is not None:
                    self._lead.conf_changed(new, entry.index)

    # --------------------------------------------------------------- leader

    def _leader_for_proposal(self, size: int = 0) -> LeaderState:
        if self._lead is None:
            raise NotLeader(self.leader)
        self._lead.check_can_propose(size)
        return self._lead

    def _append_local(self, lead: LeaderState, kind: EntryKind, data: bytes) -> ProposalResult:
        entry = lead.append(kind, data)
        if kind is EntryKind.CONF_CHANGE:
            self._track_conf_entries((entry,))
        self._check_resign()
        return ProposalResult(entry.index, entry.term)

    def _send(self, msg: Message) -> None:
        self._msgs.append(msg)

    def _emit_read(self, state: ReadState) -> None:
        self._read_states.append(state)

    def _hard_state(self) -> HardState:
        return HardState(self.term, self.voted_for, self.log.committed)


_NO_HINT = (LogIndex(0), Term(0))
