"""The simulated Raft server: a :class:`~colonymesh.consensus.RaftNode` with a key-value store.

What it owns: :class:`RaftServer`, the simulator adapter around the real
Raft core. It honours the core's Ready contract exactly as the trio driver
does -- persist (snapshot, entries, hard state) through the simulated disk,
*then* send, *then* apply committed entries to a :class:`~colonymesh.
simulations.kv.KvStore` and answer clients, *then* ``advance``. It rebuilds
the core from its disk at every (re)start (:func:`replay`), snapshots its
store every ``snapshot_every`` applied entries (``compact``, then an atomic
disk rewrite), serves reads through the log or by ReadIndex, and carries
out operator requests (leadership transfer, membership change).

Everything it persists and applies is reported to the cluster's
:class:`~colonymesh.simulations.raft_checks.RaftChecker`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from colonymesh.consensus import (
    ConfChange,
    ConfChangeError,
    Message,
    NotLeader,
    ProposalDropped,
    RaftConfig,
    RaftNode,
    RaftProtocolError,
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
from colonymesh.simulations.engine import InvariantViolation, NodeIO
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


class RaftCluster:
    """What the servers share across restarts: names, the checker, the workload."""

    def __init__(
        self,
        cfg: RaftScenarioConfig,
        workload: KvWorkload,
        *,
        read_index: bool = False,
        spares: int = 0,
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
        self._drain(now)

    def load_disk(self) -> tuple[HardState | None, list[Entry], Snapshot | None]:
        """What the core restarts from: everything durable on this server's disk."""
        return replay(self.io.disk.records)

    def next_deadline(self) -> float | None:
        return None if self.node is None else self.node.next_deadline()

    def fire(self, now: float) -> None:
        self._node().handle_timer(now)
        self._drain(now)

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
        """Honour every Ready: persist, then send, then apply, then advance."""
        node = self._node()
        checker = self.cluster.checker
        while True:
            rd = node.ready()
            if rd is None:
                break
            records: list[object] = []
            if rd.snapshot is not None:
                records.append(rd.snapshot)
            records.extend(rd.entries)
            if rd.hard_state is not None:
                records.append(rd.hard_state)
            if records:
                self.io.persist(records)
                checker.persisted(self.index, records)
                if rd.snapshot is not None:
                    self._compact_disk()
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
        self._maybe_snapshot()

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


def _as_message(msg: object) -> Message:
    # Servers receive only client requests and Raft messages; the core validates the latter.
    return cast(Message, msg)
