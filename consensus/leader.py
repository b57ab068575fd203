"""Everything a Raft leader keeps and does for one term: :class:`LeaderState`.

What it owns: the replication :class:`~.progress.Progress` of every member,
which followers owe an append, the ReadIndex queue, a pending leadership
transfer and the leader's timers. It lives exactly as long as one term of
leadership; :class:`~.raft.RaftNode` creates it on winning an election and
drops it on stepping down, so no leader-only state can leak into another role.

How it works:

* Appends are *lazy*: a proposal or an acknowledgement only marks a follower
  in ``_send_to``; :meth:`flush` (called from ``ready()``) sends what flow
  control allows. Proposals made between two ``ready()`` calls therefore
  travel in one AppendEntries per follower (batching), while a follower in
  ``REPLICATE`` may have up to ``max_inflight_msgs``/``max_inflight_bytes``
  appends outstanding (pipelining).
* The commit index advances to the largest index a quorum of voters stores,
  only if that entry is of the current term (Raft §5.4.2). The leader is one of
  those voters only up to its own ``log.stable_index`` (what its driver
  reported durable, :meth:`persisted`), so it may send appends before its own
  fsync and still never count a copy that a crash could lose (§10.2.1).
* A rejection carries the follower's conflict hint; the leader answers with a
  binary search of its own log (fast back-off), and falls back to a chunked
  snapshot when the entries it needs are compacted.

Signals back to the node: :meth:`on_timer` returns False when check-quorum
fails; ``resign`` becomes True once this leader's own removal is committed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from colonymesh.consensus.config import RaftConfig
from colonymesh.consensus.errors import ProposalDropped, RaftInvariantError, RaftUsageError
from colonymesh.consensus.log import RaftLog, entry_bytes
from colonymesh.consensus.messages import (
    AppendEntries,
    AppendResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    ReadIndexResponse,
    TimeoutNow,
)
from colonymesh.consensus.progress import Progress, ProgressState, quorum_index
from colonymesh.consensus.readonly import ReadOnly
from colonymesh.consensus.ready import ReadState
from colonymesh.consensus.types import ConfState, Entry, EntryKind, LogIndex, NodeId, Snapshot, Term

logger = logging.getLogger("colonymesh.consensus")


class LeaderState:
    __slots__ = (
        "_emit_read",
        "_heartbeat_deadline",
        "_now",
        "_quorum_deadline",
        "_readonly",
        "_reads_waiting",
        "_send",
        "_send_to",
        "_transfer_deadline",
        "conf",
        "conf_index",
        "config",
        "id",
        "log",
        "prs",
        "resign",
        "snapshot",
        "term",
        "term_start",
        "transferee",
    )

    def __init__(
        self,
        node_id: NodeId,
        term: Term,
        log: RaftLog,
        config: RaftConfig,
        conf: ConfState,
        conf_index: LogIndex,
        snapshot: Snapshot | None,
        send: Callable[[Message], None],
        emit_read: Callable[[ReadState], None],
        now: float,
    ) -> None:
        self.id = node_id
        self.term = term
        self.log = log
        self.config = config
        self.conf = conf
        self.conf_index = conf_index  # index of the entry that set ``conf``
        self.snapshot = snapshot
        self.resign = False
        self._send = send
        self._emit_read = emit_read
        self._now = now
        self.prs: dict[NodeId, Progress] = {}
        self._send_to: dict[NodeId, bool] = {}  # follower -> send even an empty append
        self._readonly = ReadOnly()
        self._reads_waiting: list[tuple[bytes, NodeId | None]] = []
        self.transferee: NodeId | None = None
        self._transfer_deadline = math.inf
        self._heartbeat_deadline = now + config.heartbeat_interval_s
        self._quorum_deadline = now + config.election_timeout_s
        last = log.last_index()
        for peer in (*conf.voters, *conf.learners):
            self.prs[peer] = self._new_progress(last + 1)
        own = self.prs.get(node_id)
        if own is not None:
            own.maybe_update(log.stable_index)  # we vouch only for what is on our disk
        # §5.4.2/§8: commit earlier terms' entries by committing one of our own.
        self.term_start = LogIndex(last + 1)
        self.append(EntryKind.EMPTY, b"")

    def _new_progress(self, next_index: int) -> Progress:
        pr = Progress(next_index, self.config.max_inflight_msgs, self.config.max_inflight_bytes)
        pr.recent_active = True
        return pr

    # -------------------------------------------------------------- proposals

    def check_can_propose(self, size: int = 0) -> None:
        if size > self.config.max_append_bytes:
            raise ProposalDropped(f"a {size}-byte command exceeds max_append_bytes")
        if self.log.last_index() - self.log.committed >= self.config.max_uncommitted_entries:
            raise ProposalDropped("too many uncommitted entries: the group is not keeping up")
        if self.transferee is not None:
            raise ProposalDropped(f"leadership transfer to {self.transferee} in progress")
        if self.id not in self.prs:
            raise ProposalDropped("this leader is being removed from the group")

    def check_can_change_conf(self) -> None:
        self.check_can_propose()
        if self.log.committed < self.term_start:
            raise ProposalDropped("the leader has not yet committed an entry in its term")
        if self.conf_index > self.log.committed:
            raise ProposalDropped("a membership change is still uncommitted")

    def append(self, kind: EntryKind, data: bytes) -> Entry:
        entry = Entry(self.term, LogIndex(self.log.last_index() + 1), kind, data)
        self.log.append(entry)
        # Our own copy counts towards a quorum only once the driver reports it
        # durable (:meth:`persisted`), so the followers' fsyncs overlap ours.
        for peer in self.prs:
            if peer != self.id:
                self._send_to.setdefault(peer, False)
        return entry

    def persisted(self, stable_index: LogIndex) -> None:
        """The driver made our log durable up to ``stable_index`` (dissertation §10.2.1)."""
        own = self.prs.get(self.id)
        if own is not None and own.maybe_update(stable_index):
            self.maybe_commit()

    def conf_changed(self, conf: ConfState, conf_index: LogIndex) -> None:
        """A conf entry was appended (it takes effect now, §6)."""
        self.conf = conf
        self.conf_index = conf_index
        members = (*conf.voters, *conf.learners)
        for peer in list(self.prs):
            if peer not in members:
                del self.prs[peer]
                self._send_to.pop(peer, None)
        for peer in members:
            if peer not in self.prs:
                self.prs[peer] = self._new_progress(self.log.last_index() + 1)
                self._send_to[peer] = True
        if self.transferee is not None and self.transferee not in conf.voters:
            self._abort_transfer()
        self.maybe_commit()

    def maybe_commit(self) -> bool:
        """Advance the commit index to what a quorum of voters stores, if that entry
        is from the current term (§5.4.2). True if it advanced."""
        prs = self.prs
        index = quorum_index([prs[v].match if v in prs else 0 for v in self.conf.voters])
        if index <= self.log.committed or self.log.term(index) != self.term:
            return False
        self.log.commit_to(index)
        for peer in prs:
            if peer != self.id:
                self._send_to[peer] = True  # tell followers the new commit index
        if self._reads_waiting and self.log.committed >= self.term_start:
            waiting, self._reads_waiting = self._reads_waiting, []
            for context, requester in waiting:
                self.read(context, requester)
        if self.id not in self.conf.voters and self.conf_index <= self.log.committed:
            self._hand_over()
        return True

    def _hand_over(self) -> None:
        """Our removal committed (§6): tell the followers the commit index, hand
        leadership to the most up-to-date voter, and resign."""
        logger.info("%s: removed from the group, stepping down", self.id)
        self.flush()
        last = self.log.last_index()
        best = [v for v in self.conf.voters if v in self.prs and self.prs[v].match == last]
        if best:
            self._send(TimeoutNow(self.id, max(best), self.term))
        self.resign = True

    def transfer(self, to: NodeId, now: float) -> None:
        """Leadership transfer (dissertation §3.10)."""
        if to == self.id or to not in self.conf.voters or to not in self.prs:
            raise RaftUsageError(f"cannot transfer leadership to {to}")
        self._now = now
        self.transferee = to
        self._transfer_deadline = now + self.config.election_timeout_s
        if self.prs[to].match == self.log.last_index():
            self._send(TimeoutNow(self.id, to, self.term))
        else:
            self._send_to[to] = True  # probe now rather than wait for a heartbeat

    def _abort_transfer(self) -> None:
        self.transferee = None
        self._transfer_deadline = math.inf

    # ----------------------------------------------------------------- timers

    def next_deadline(self) -> float:
        return min(self._heartbeat_deadline, self._quorum_deadline, self._transfer_deadline)

    def on_timer(self, now: float) -> bool:
        """Fire due timers; False if check-quorum says we must step down."""
        self._now = now
        if now >= self._heartbeat_deadline:
            self._heartbeat_deadline = now + self.config.heartbeat_interval_s
            self._broadcast_heartbeat()
            self._retransmit_snapshots(now)
        if now >= self._transfer_deadline:
            logger.info("%s: leadership transfer to %s timed out", self.id, self.transferee)
            self._abort_transfer()
        if now >= self._quorum_deadline:
            self._quorum_deadline = now + self.config.election_timeout_s
            if self.config.check_quorum and not self._quorum_active():
                logger.info("%s: lost contact with a quorum in term %d", self.id, self.term)
                return False
        return True

    def _quorum_active(self) -> bool:
        active = 0
        for voter in self.conf.voters:
            pr = self.prs.get(voter)
            if voter == self.id or (pr is not None and pr.recent_active):
                active += 1
        for peer, pr in self.prs.items():
            if peer != self.id:
                pr.recent_active = False
        return active >= len(self.conf.voters) // 2 + 1

    # ---------------------------------------------------------------- sending

    def has_work(self) -> bool:
        return bool(self._send_to) or self._readonly.round_needed()

    def flush(self) -> None:
        """Send every append owed (called once per ``ready()``)."""
        if self._readonly.round_needed():
            self._broadcast_heartbeat()
        send_to, self._send_to = self._send_to, {}
        for peer, even_empty in send_to.items():
            pr = self.prs.get(peer)
            if pr is not None:
                self._send_appends(peer, pr, even_empty)

    def _send_appends(self, peer: NodeId, pr: Progress, even_empty: bool) -> None:
        """Send as many appends as flow control allows (one while probing)."""
        log, config = self.log, self.config
        sent = False
        last = log.last_index()
        while not pr.is_paused():
            prev = pr.next - 1
            prev_term = log.term(prev)
            if prev_term is None:
                self._start_snapshot(peer, pr)
                return
            entries = log.slice(
                pr.next, last + 1, config.max_append_entries, config.max_append_bytes
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
                    log.committed,
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

    def _start_snapshot(self, peer: NodeId, pr: Progress) -> None:
        snap = self.snapshot
        if snap is None:
            raise RaftInvariantError("entries compacted but no snapshot held")
        logger.info("%s: sending snapshot %d to %s", self.id, snap.meta.index, peer)
        pr.become_snapshot(snap.meta.index, self._now)
        self._send_snapshot_chunk(peer, pr)

    def _send_snapshot_chunk(self, peer: NodeId, pr: Progress) -> None:
        snap = self.snapshot
        if snap is None:
            raise RaftInvariantError("no snapshot to send")
        if snap.meta.index != pr.snapshot_index:
            pr.become_snapshot(snap.meta.index, self._now)  # a newer one replaced it
        start = pr.snapshot_offset
        data = snap.data[start : start + self.config.snapshot_chunk_bytes]
        done = start + len(data) >= len(snap.data)
        pr.snapshot_sent_at = self._now
        self._send(InstallSnapshot(self.id, peer, self.term, snap.meta, start, data, done))

    def _retransmit_snapshots(self, now: float) -> None:
        for peer, pr in self.prs.items():
            if (
                pr.state is ProgressState.SNAPSHOT
                and now - pr.snapshot_sent_at >= self.config.snapshot_retransmit_s
            ):
                self._send_snapshot_chunk(peer, pr)

    def _broadcast_heartbeat(self) -> None:
        seq = self._readonly.start_round()
        committed = self.log.committed
        for peer, pr in self.prs.items():
            if peer != self.id:
                # Never tell a follower to commit past what it is known to hold.
                commit = LogIndex(min(pr.match, committed))
                self._send(Heartbeat(self.id, peer, self.term, commit, seq))
        self._release_reads()

    # -------------------------------------------------------------- responses

    def on_response(
        self, msg: AppendResponse | HeartbeatResponse | InstallSnapshotResponse, now: float
    ) -> None:
        self._now = now
        pr = self.prs.get(msg.src)
        if pr is None:
            return
        pr.recent_active = True
        if isinstance(msg, AppendResponse):
            self._on_append_response(msg, pr)
        elif isinstance(msg, HeartbeatResponse):
            pr.probe_sent = False
            if pr.state is ProgressState.REPLICATE and pr.inflights.full():
                pr.inflights.free_first()  # an append may be lost: make room to probe
            if pr.match < self.log.last_index():
                self._send_to[msg.src] = True
            if msg.read_seq > pr.read_seq:
                pr.read_seq = msg.read_seq
                self._release_reads()
        elif pr.state is ProgressState.SNAPSHOT:
            if msg.done:
                pr.maybe_update(msg.snapshot_index)
                pr.become_probe()
                self._send_to[msg.src] = False
            elif msg.snapshot_index == pr.snapshot_index:
                pr.snapshot_offset = msg.next_offset
                self._send_snapshot_chunk(msg.src, pr)

    def _on_append_response(self, msg: AppendResponse, pr: Progress) -> None:
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
        elif pr.state is ProgressState.SNAPSHOT:
            if pr.match >= pr.snapshot_index:
                pr.become_probe()
        else:
            pr.inflights.free_le(msg.index)
        if not self.maybe_commit() and (paused or pr.next <= self.log.last_index()):
            self._send_to.setdefault(msg.src, False)
        if msg.src == self.transferee and pr.match == self.log.last_index():
            self._send(TimeoutNow(self.id, msg.src, self.term))

    # ------------------------------------------------------------------ reads

    def read(self, context: bytes, requester: NodeId | None) -> bool:
        """Queue a ReadIndex read; False if too many are pending already."""
        if len(self._readonly) + len(self._reads_waiting) >= self.config.max_pending_reads:
            return False
        if self.log.committed < self.term_start:
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
        prs = self.prs
        seqs = [own if v == self.id else (prs[v].read_seq if v in prs else 0) for v in voters]
        for read in self._readonly.release(quorum_index(seqs)):
            if read.requester is None:
                self._emit_read(ReadState(read.index, read.context))
            else:
                self._send(
                    ReadIndexResponse(
                        self.id, read.requester, self.term, read.context, read.index, True
                    )
                )
