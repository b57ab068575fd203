"""The simulated Raft server: a :class:`~colonymesh.consensus.RaftNode` with a key-value store.

What it owns: :class:`RaftServer`, the simulator adapter around the real
Raft core. It honours the core's Ready contract as the trio driver does --
persist (snapshot, entries, hard state) through the simulated disk, send,
apply committed entries to a :class:`~colonymesh.simulations.kv.KvStore`
and answer clients, *then* ``advance``. It rebuilds
the core from its disk at every (re)start (:func:`replay`), snapshots its
store every ``snapshot_every`` applied entries (``compact``, then an atomic
disk rewrite), serves reads through the log or by ReadIndex, and carries
out operator requests (leadership transfer, membership change).

How a persist is carried out is a per-server choice (:class:`PersistModel`,
drawn per seed by the raft scenario; the default is the old one):

* ``fsync_s == 0``: the persist is instantaneous: written and synced
  within the step that produced the Ready (a torn crash armed on the node
  cuts it there).
* ``fsync_s > 0``: the write + fsync of a Ready that ``must_sync`` takes
  simulated time (``fsync_s`` times a jitter in [0.5, 1.5)); the records
  reach the disk, and ``advance`` is called, only when it completes. The
  core keeps being fed meanwhile (messages, timers, proposals: the contract
  allows inputs between ``ready`` and ``advance``) but is asked for no new
  Ready. A crash in between tears the write: a random prefix of its records
  survives (:meth:`RaftServer.crashed`, which the scenario's crash hook
  calls; a torn crash armed by the fault injector tears it at completion).
* ``parallel``: a Ready with ``send_while_persisting`` (a leader whose term
  and vote are durable) sends its messages *before* its persist starts, as
  the trio driver does (dissertation §10.2.1) -- so the simulator explores
  the window in which followers hold entries the leader has not made
  durable and the leader may crash. Otherwise messages go out only once the
  persist is durable (the serial path every follower and candidate takes).

Everything it persists and applies is reported to the cluster's
:class:`~colonymesh.simulations.raft_checks.RaftChecker`; how often the
parallel window was used and hit by a crash is counted in
:class:`PersistStats` (``RaftCluster.persist_stats``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import cast

from colonymesh.consensus import (
    AppendEntries,
    ConfChange,
    ConfChangeError,
    Message,
    NotLeader,
    ProposalDropped,
    RaftConfig,
    RaftNode,
    RaftProtocolError,
    Ready,
    Role,
)
from colonymesh.consensus.types import (
    ConfState,
    Entry,
    EntryKind,
    HardState,
    LogIndex,
    NodeId,
    Snapshot,
)
from colonymesh.simulations.engine import InvariantViolation, NodeCrashed, NodeIO
from colonymesh.simulations.kv import ClientRequest, ClientResponse, KvStore, KvWorkload
from colonymesh.simulations.raft_checks import RaftChecker


@dataclass(frozen=True, slots=True)
class RaftScenarioConfig:
    peers: int = 5
    clients: int = 3
    keys: int = 2  # few keys: more contention, sharper linearizability checks
    safety_s: float = 20.0
    heal_bound_s: float = 15.0
    snapshot_every: int = 64
    election_timeout_s: float = 0.3
    heartbeat_interval_s: float = 0.05
    events_max: int = 2_000_000  # for the whole run; a 20 s run takes ~20,000
    membership: bool = True  # some seeds add, promote and remove servers
    spares: int = 2  # servers outside the group at the start, for membership changes


@dataclass(frozen=True, slots=True)
class PersistModel:
    """How one server's driver persists a Ready (see the module docs)."""

    fsync_s: float = 0.0  # simulated duration of one synced write; 0: instantaneous
    parallel: bool = False  # honour Ready.send_while_persisting (send before durable)


@dataclass(slots=True)
class PersistStats:
    """Counters of the persist window, over all servers of a cluster (deterministic)."""

    timed_persists: int = 0  # persists that took simulated time
    early_readies: int = 0  # Readies whose messages went out before their persist was durable
    early_appends: int = 0  # AppendEntries carrying entries not yet durable on the sender
    crashes_mid_persist: int = 0  # crashes that tore a persist (in flight, or at its write)
    crashes_after_early_send: int = 0  # ... of which after its messages had gone out
    torn_records_lost: int = 0  # records of in-flight persists a crash cut off
    committed_before_durable: int = 0  # entries a leader committed before its own copy was durable
    crashes_losing_committed: int = 0  # crashes that cut a leader's only copy of committed entries

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in PersistStats.__slots__}


# Simulated fsync durations to draw from (0: instantaneous, the write cannot
# overlap anything but a torn crash at that instant).
FSYNC_S_CHOICES = (0.0, 0.001, 0.005, 0.02)
# Fractions of servers that send while persisting (the rest persist first).
PARALLEL_FRACTIONS = (0.0, 0.5, 1.0, 1.0)


def draw_persist(rng: random.Random, servers: int) -> list[PersistModel]:
    """One seed's persist models: a shared fsync duration, per server serial or parallel."""
    fsync_s = FSYNC_S_CHOICES[rng.randrange(len(FSYNC_S_CHOICES))]
    fraction = PARALLEL_FRACTIONS[rng.randrange(len(PARALLEL_FRACTIONS))]
    return [PersistModel(fsync_s, rng.random() < fraction) for _ in range(servers)]


class RaftCluster:
    """What the servers share across restarts: names, the checker, the workload."""

    def __init__(
        self,
        cfg: RaftScenarioConfig,
        workload: KvWorkload,
        *,
        read_index: bool = False,
        spares: int = 0,
        persist: list[PersistModel] | None = None,
    ) -> None:
        self.cfg = cfg
        self.read_index = read_index  # serve reads by ReadIndex instead of through the log
        # Servers 0..peers-1 found the group; the spares start empty and may join later.
        self.ids = [NodeId(f"s{i}") for i in range(cfg.peers + spares)]
        self.index_of = {nid: i for i, nid in enumerate(self.ids)}
        self.conf = ConfState(voters=tuple(self.ids[: cfg.peers]))
        self.raft_config = RaftConfig(
            election_timeout_s=cfg.election_timeout_s,
            heartbeat_interval_s=cfg.heartbeat_interval_s,
        )
        self.checker = RaftChecker(self.ids)
        self.workload = workload
        self.servers: list[RaftServer | None] = [None] * len(self.ids)
        # Per server index (kept across restarts); default: instantaneous, serial.
        self.persist = persist if persist is not None else [PersistModel()] * len(self.ids)
        if len(self.persist) != len(self.ids):
            raise ValueError("one persist model per server")
        self.persist_stats = PersistStats()


def replay(records: list[object]) -> tuple[HardState | None, list[Entry], Snapshot | None]:
    """Rebuild (hard state, entries, snapshot) from a server's disk records, in write order.

    Mirrors :class:`~colonymesh.consensus.storage` (the real store): an entry
    replaces every stored entry from its index on; a snapshot drops every
    entry at or below its index, and the entries after it too unless the log
    holds the snapshot's last entry (same index and term; Raft §7).
    """
    hard_state: HardState | None = None
    snapshot: Snapshot | None = None
    entries: list[Entry] = []
    for record in records:
        if isinstance(record, HardState):
            hard_state = record
        elif isinstance(record, Entry):
            base = 0 if snapshot is None else int(snapshot.meta.index)
            k = int(record.index) - base - 1
            if k < 0:
                continue
            if k > len(entries):
                raise ValueError(f"disk holds entry {record.index} after a gap")
            del entries[k:]
            entries.append(record)
        elif isinstance(record, Snapshot):
            base = 0 if snapshot is None else int(snapshot.meta.index)
            k = int(record.meta.index) - base - 1
            held = entries[k] if 0 <= k < len(entries) else None
            same = held is not None and held.term == record.meta.term
            if snapshot is not None and snapshot.meta.index == record.meta.index:
                same = snapshot.meta.term == record.meta.term
            entries = [e for e in entries if e.index > record.meta.index] if same else []
            snapshot = record
        else:
            raise ValueError(f"unknown disk record {record!r}")
    return hard_state, entries, snapshot


class RaftServer:
    """Simulator adapter for one Raft server with a key-value state machine on top.

    ``store_cls`` and :meth:`load_disk` are the seams the tests use to plant
    bugs (a store without sessions, a disk that loses acknowledged writes)
    and prove the checkers catch them.
    """

    store_cls: type[KvStore] = KvStore

    def __init__(self, io: NodeIO, cluster: RaftCluster) -> None:
        self.io = io
        self.cluster = cluster
        self.index = io.index
        self.node: RaftNode | None = None
        self.kv = self.store_cls()
        self.applied = 0
        self.snapshot_index = 0
        self.waiting: dict[tuple[int, int], int] = {}  # (client, seq) -> client node
        self.reads: dict[bytes, tuple[int, ClientRequest]] = {}  # ReadIndex context -> request
        self.reads_due: list[tuple[int, int, ClientRequest]] = []  # (index, client node, req)
        self.persist_model = cluster.persist[self.index]
        self.in_flight: _InFlight | None = None  # a timed persist not yet durable
        self.quorum_checked = 0  # commit index up to which the durable quorum was checked

    def _node(self) -> RaftNode:
        if self.node is None:
            raise RuntimeError("server not started")
        return self.node

    def start(self, now: float) -> None:
        c = self.cluster
        hard_state, entries, snapshot = self.load_disk()
        if snapshot is not None:
            self.kv = self.store_cls.decode(snapshot.data)
            self.applied = self.snapshot_index = int(snapshot.meta.index)
            c.checker.restored(self.index, snapshot)
        self.node = RaftNode(
            c.ids[self.index],
            c.conf if self.index < c.cfg.peers else ConfState(),
            c.raft_config,
            self.io.rng,
            now,
            hard_state=hard_state,
            entries=entries,
            snapshot=snapshot,
            applied=LogIndex(self.applied),
        )
        c.servers[self.index] = self
        self.quorum_checked = int(self.node.log.committed)
        self._drain(now)

    def load_disk(self) -> tuple[HardState | None, list[Entry], Snapshot | None]:
        """What the core restarts from: everything durable on this server's disk."""
        return replay(self.io.disk.records)

    def next_deadline(self) -> float | None:
        if self.node is None:
            return None
        d = self.node.next_deadline()
        flight = self.in_flight
        if flight is not None and flight.done_at < d:
            return flight.done_at
        return d

    def fire(self, now: float) -> None:
        node = self._node()
        flight = self.in_flight
        if flight is not None and now >= flight.done_at:
            self.in_flight = None
            self._complete(flight.ready, flight.records, flight.early, now)
            if now >= node.next_deadline():
                node.handle_timer(now)
        else:
            node.handle_timer(now)
        self._drain(now)

    def crashed(self, rng: random.Random) -> None:
        """This server's node crashed (the scenario's crash hook calls this before
        anyone reads its disk): a persist in flight is torn, a random prefix of its
        records survives (records are whole or absent, as the store's checksums make
        them)."""
        flight = self.in_flight
        if flight is None:
            return
        self.in_flight = None
        entries = flight.ready.entries
        if self.node is not None and entries and self.node.log.committed >= entries[0].index:
            # Committed by a quorum of followers; our copy dies with this crash.
            self.cluster.persist_stats.crashes_losing_committed += 1
        kept = self.io.disk.append_torn(flight.records, rng)
        self._count_crash(len(flight.records) - kept, flight.early)

    def _count_crash(self, lost: int, early: bool) -> None:
        """A crash cut a persist, ``lost`` of its records with it."""
        stats = self.cluster.persist_stats
        stats.crashes_mid_persist += 1
        if early:
            stats.crashes_after_early_send += 1
        stats.torn_records_lost += lost

    def deliver(self, src: int, msg: object, now: float) -> None:
        if isinstance(msg, ClientRequest):
            self._client_request(src, msg)
        else:
            try:
                self._node().step(_as_message(msg), now)
            except RaftProtocolError as exc:
                # The real driver drops the frame and carries on. Here every peer
                # runs the same honest code, so a malformed message is a bug.
                raise InvariantViolation(
                    f"{self.cluster.ids[self.index]} rejected a malformed message "
                    f"from node {src}: {exc}"
                ) from exc
        self._drain(now)

    def _client_request(self, src: int, req: ClientRequest) -> None:
        done, result = self.kv.cached(req.client, req.seq)
        if done:
            self.io.send(src, ClientResponse(req.client, req.seq, True, result))
            return
        try:
            if req.op == "get" and self.cluster.read_index:
                context = f"{req.client}.{req.seq}".encode()
                self._node().read_index(context)
                self.reads[context] = (src, req)
                return
            self._node().propose(KvStore.encode_command(req))
        except NotLeader as exc:
            hint = self.cluster.index_of.get(exc.leader_hint, -1) if exc.leader_hint else -1
            self.io.send(src, ClientResponse(req.client, req.seq, False, leader_hint=hint))
            return
        except ProposalDropped:
            self.io.send(src, ClientResponse(req.client, req.seq, False))
            return
        self.waiting[(req.client, req.seq)] = src

    def _drain(self, now: float) -> None:
        """Honour every Ready: persist and send (in the order the model says), apply,
        advance; stop at a persist that takes simulated time (``fire`` resumes)."""
        node = self._node()
        model = self.persist_model
        self._check_commit_quorum(node)
        while self.in_flight is None:
            rd = node.ready()
            if rd is None:
                break
            records: list[object] = []
            if rd.snapshot is not None:
                records.append(rd.snapshot)
            records.extend(rd.entries)
            if rd.hard_state is not None:
                records.append(rd.hard_state)
            early = model.parallel and rd.send_while_persisting
            if early:
                self._send_early(rd)
            if model.fsync_s > 0.0 and rd.must_sync and records:
                jitter = 0.5 + self.io.rng.random()
                self.in_flight = _InFlight(rd, records, early, now + model.fsync_s * jitter)
                self.cluster.persist_stats.timed_persists += 1
                return  # nothing more until this persist is durable
            self._complete(rd, records, early, now)
        self._maybe_snapshot()

    def _send_early(self, rd: Ready) -> None:
        """Send a leader's messages before its persist is durable (§10.2.1)."""
        stats = self.cluster.persist_stats
        index_of = self.cluster.index_of
        if rd.entries and rd.must_sync:
            stats.early_readies += 1
            first = rd.entries[0].index
            for m in rd.messages:
                if isinstance(m, AppendEntries) and m.entries and m.entries[-1].index >= first:
                    stats.early_appends += 1
        for m in rd.messages:
            self.io.send(index_of[m.dst], m)

    def _complete(self, rd: Ready, records: list[object], early: bool, now: float) -> None:
        """The persist of ``rd`` becomes durable now: send (if not yet), apply, advance."""
        node = self._node()
        checker = self.cluster.checker
        if early and rd.entries and node.log.committed >= rd.entries[0].index:
            # A quorum of followers made these durable before we did (§10.2.1).
            last = min(int(node.log.committed), int(rd.entries[-1].index))
            self.cluster.persist_stats.committed_before_durable += last - rd.entries[0].index + 1
        if records:
            before = len(self.io.disk.records)
            try:
                self.io.persist(records)
            except NodeCrashed:  # an armed crash tore this very write
                self._count_crash(before + len(records) - len(self.io.disk.records), early)
                raise
            checker.persisted(self.index, records)
            if rd.snapshot is not None:
                self._compact_disk()
        if not early:
            index_of = self.cluster.index_of
            for m in rd.messages:
                self.io.send(index_of[m.dst], m)
        if rd.snapshot is not None and rd.restore_snapshot:
            self.kv = self.store_cls.decode(rd.snapshot.data)
            self.applied = int(rd.snapshot.meta.index)
            checker.restored(self.index, rd.snapshot)
        if rd.committed_entries:
            term = int(node.term)
            for e in rd.committed_entries:
                checker.applying(self.index, e, term)
                self._apply(e)
        for rs in rd.read_states:
            read = self.reads.pop(rs.context, None)
            if read is not None:
                self.reads_due.append((int(rs.index), read[0], read[1]))
        if self.reads_due:
            self._serve_reads()
        node.advance(rd)
        self._check_commit_quorum(node)  # our own copy counting may have moved the commit

    def _check_commit_quorum(self, node: RaftNode) -> None:
        """Called right after every step: what a leader newly committed must be
        durable on a majority of its voters (the checkers' view of the disks)."""
        committed = int(node.log.committed)
        if committed <= self.quorum_checked:
            return
        first = max(self.quorum_checked + 1, int(node.log.first_index()))
        self.quorum_checked = committed
        if node.role is not Role.LEADER or first > committed:
            return
        index_of = self.cluster.index_of
        voters = [index_of[v] for v in node.conf.voters]
        entries = node.log.slice(first, committed + 1)
        self.cluster.checker.commit_quorum(self.index, int(node.term), first, entries, voters)

    def _apply(self, e: Entry) -> None:
        self.applied = int(e.index)
        if e.kind != EntryKind.NORMAL:
            return
        outcome = self.kv.apply(e.data)
        if outcome is None:
            return
        client, seq, result = outcome
        dst = self.waiting.pop((client, seq), None)
        if dst is not None:
            self.io.send(dst, ClientResponse(client, seq, True, result))

    def _serve_reads(self) -> None:
        """Answer each ReadIndex read whose index the state machine has reached."""
        due = []
        for index, dst, req in self.reads_due:
            if index <= self.applied:
                value = self.kv.data.get(req.key)
                self.io.send(dst, ClientResponse(req.client, req.seq, True, value))
            else:
                due.append((index, dst, req))
        self.reads_due = due

    def transfer(self, to: int) -> None:
        """An operator asks this server, if leader, to hand leadership to server ``to``."""
        now = self.io.now
        try:
            self._node().transfer_leadership(self.cluster.ids[to], now)
        except NotLeader:
            return
        self._drain(now)

    def change(self, change: ConfChange) -> None:
        """An operator asks this server, if leader, to change the membership."""
        try:
            self._node().propose_conf_change(change)
        except (NotLeader, ProposalDropped, ConfChangeError):
            return
        self._drain(self.io.now)

    def _maybe_snapshot(self) -> None:
        every = self.cluster.cfg.snapshot_every
        if every and self.applied - self.snapshot_index >= every:
            self.snapshot_index = self.applied
            self._node().compact(LogIndex(self.applied), self.kv.encode())
            self._drain_after_compact()

    def _drain_after_compact(self) -> None:
        node = self._node()
        if node.has_ready():
            self._drain(self.io.now)

    def _compact_disk(self) -> None:
        """After a snapshot is durable, rewrite the disk without what it covers (atomic)."""
        hard_state, entries, snapshot = replay(self.io.disk.records)
        records: list[object] = []
        if snapshot is not None:
            records.append(snapshot)
        records.extend(entries)
        if hard_state is not None:
            records.append(hard_state)
        self.io.disk.rewrite(records)

    def is_leader(self) -> bool:
        return self._node().role is Role.LEADER

    def role_term(self) -> tuple[Role, int]:
        node = self._node()
        return node.role, int(node.term)


@dataclass(frozen=True, slots=True)
class _InFlight:
    """A Ready whose persist is under way; durable at ``done_at`` (local time)."""

    ready: Ready
    records: list[object]
    early: bool  # its messages already went out
    done_at: float


def _as_message(msg: object) -> Message:
    # Servers receive only client requests and Raft messages; the core validates the latter.
    return cast(Message, msg)
