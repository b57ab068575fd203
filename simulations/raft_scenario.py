"""The ``raft`` scenario: N real Raft cores under a seeded fault swarm, then healed.

What it owns: :class:`RaftServer`, the simulator adapter around
:class:`~colonymesh.consensus.RaftNode` (the same persist -> send -> apply
contract the trio driver honours), and :func:`run`, one seeded run:

1. **Safety phase.** ``peers`` servers and a few :class:`~colonymesh.
   simulations.kv.KvClient` nodes; a :class:`~colonymesh.simulations.faults.
   FaultProfile` drawn from the seed plays loss, duplication, delay,
   reordering, partitions (some one-way), crashes and torn writes. The
   :class:`~colonymesh.simulations.raft_checks.RaftChecker` runs after every
   step.
2. **Heal phase.** Faults off, every server restarted, network whole. Within
   ``heal_bound_s`` the cluster must have a leader, a client operation
   invoked after the heal must complete, and every server must have applied
   the same, complete log.
3. **Final checks.** Every acknowledged write is in every server's state
   machine; the clients' history is linearizable.

The servers snapshot their key-value state every ``snapshot_every`` applied
entries and hand it to the core (``compact``), so snapshots, log compaction
and snapshot transfer to lagging servers are exercised too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, cast

from colonymesh.consensus import (
    ConfChange,
    ConfChangeError,
    ConfChangeOp,
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
from colonymesh.simulations.engine import InvariantViolation, NodeIO, Simulator
from colonymesh.simulations.faults import FaultInjector, FaultProfile
from colonymesh.simulations.kv import ClientRequest, ClientResponse, KvClient, KvStore, KvWorkload
from colonymesh.simulations.linearizability import check_kv
from colonymesh.simulations.raft_checks import RaftChecker
from colonymesh.simulations.runner import ScenarioResult


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

    Mirrors the :class:`~colonymesh.consensus.Ready` contract: an entry
    replaces every stored entry from its index on; a snapshot drops every
    entry at or below its index.
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
            entries = [e for e in entries if e.index > record.meta.index]
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


@dataclass(slots=True)
class RaftRun:
    """The outcome of one seeded run, before it is turned into JSON."""

    violation: str | None
    violation_at: tuple[float, int] | None
    profile: FaultProfile
    figures: dict[str, Any]


class Operator:
    """Scheduled operator actions on the leader: leadership transfers and membership changes.

    Membership changes go one server at a time (§6): a spare server joins as
    a learner, a learner is promoted, a voter is removed (the leader too),
    keeping between ``peers - 1`` and ``peers + 1`` voters.
    """

    def __init__(self, sim: Simulator, cluster: RaftCluster, until_s: float) -> None:
        self.sim = sim
        self.cluster = cluster
        self.until_s = until_s
        self.transfers = 0
        self.conf_changes = 0

    def leader(self) -> RaftServer | None:
        """The live leader with the highest term (a deposed one may not know yet)."""
        best: RaftServer | None = None
        for server in self.cluster.servers:
            if server is None or server.node is None or not server.is_leader():
                continue
            if best is None or server.role_term()[1] > best.role_term()[1]:
                best = server
        return best

    def leader_index(self) -> int | None:
        best = self.leader()
        return None if best is None else best.index

    def every(self, interval_s: float, action: Callable[[], None]) -> None:
        if interval_s <= 0.0:
            return

        def tick() -> None:
            if self.sim.now < self.until_s:
                action()
                self.sim.call_later(self.sim.rng.expovariate(1.0 / interval_s), tick)

        self.sim.call_later(self.sim.rng.expovariate(1.0 / interval_s), tick)

    def transfer(self) -> None:
        lead = self.leader()
        if lead is None or lead.node is None:
            return
        others = [v for v in lead.node.conf.voters if v != lead.node.id]
        if others:
            to = self.cluster.index_of[others[self.sim.rng.randrange(len(others))]]
            self.transfers += 1
            self.sim.poke(lead.index, lambda adapter: cast(RaftServer, adapter).transfer(to))

    def reconfigure(self) -> None:
        lead = self.leader()
        if lead is None or lead.node is None:
            return
        conf = lead.node.conf
        ids = self.cluster.ids
        spares = [n for n in ids if n not in conf.voters and n not in conf.learners]
        peers = self.cluster.cfg.peers
        options: list[ConfChange] = [ConfChange(ConfChangeOp.ADD_LEARNER, n) for n in spares]
        if len(conf.voters) < peers + 1:
            options += [ConfChange(ConfChangeOp.ADD_VOTER, n) for n in conf.learners]
        if len(conf.voters) > max(1, peers - 1):
            options += [ConfChange(ConfChangeOp.REMOVE_NODE, n) for n in conf.voters]
        options += [ConfChange(ConfChangeOp.REMOVE_NODE, n) for n in conf.learners]
        if options:
            change = options[self.sim.rng.randrange(len(options))]
            self.conf_changes += 1
            self.sim.poke(lead.index, lambda adapter: cast(RaftServer, adapter).change(change))


def run(seed: int, cfg: RaftScenarioConfig, server_cls: type[RaftServer] = RaftServer) -> RaftRun:
    """One seeded run: safety phase under faults, heal phase, final checks."""
    sim = Simulator(seed)
    sim.events_limit = cfg.events_max
    rng = sim.rng
    profile = FaultProfile.draw(rng)
    read_index = rng.random() < 0.5
    transfer_interval_s = (0.0, 1.0, 4.0)[rng.randrange(3)]
    conf_interval_s = (0.0, 0.5, 2.0)[rng.randrange(3)] if cfg.membership else 0.0
    spares = cfg.spares if conf_interval_s > 0.0 else 0
    servers = list(range(cfg.peers + spares))
    workload = KvWorkload(
        servers,
        keys=cfg.keys,
        request_timeout_s=4 * cfg.election_timeout_s,
        attempts_max=20,
        think_s=cfg.heartbeat_interval_s,
    )
    cluster = RaftCluster(cfg, workload, read_index=read_index, spares=spares)
    for _ in servers:
        sim.add_node(lambda io: server_cls(io, cluster))
    clients: list[KvClient] = []

    def make_client(io: NodeIO) -> KvClient:
        client = KvClient(io, workload, len(clients))
        clients.append(client)
        return client

    for _ in range(cfg.clients):
        sim.add_node(make_client)

    checker = cluster.checker
    servers_n = len(servers)

    def check_step(index: int) -> None:
        if 0 <= index < servers_n:
            server = sim.adapter(index)
            if isinstance(server, RaftServer) and server.node is not None:
                role, term = server.role_term()
                if role is Role.LEADER:
                    checker.leader_seen(index, term)

    def crashed(index: int) -> None:
        if index < servers_n:
            cluster.servers[index] = None
            checker.rebuild(index, sim.disk(index).records)

    sim.checkers.append(check_step)
    sim.on_crash.append(crashed)
    operator = Operator(sim, cluster, cfg.safety_s)
    injector = FaultInjector(sim, profile, servers, focus=operator.leader_index)
    injector.start()
    operator.every(transfer_interval_s, operator.transfer)
    operator.every(conf_interval_s, operator.reconfigure)

    ok = sim.run_until(cfg.safety_s)
    heal_s: float | None = None
    if ok:
        injector.heal()
        heal_s = _heal(sim, cfg, cluster, clients, operator)
    workload.active = False
    for client in clients:
        client.finish()
    lin = None
    if sim.violation is None:
        _final_checks(sim, cluster, operator)
    if sim.violation is None:
        lin = check_kv(workload.history, steps_max=2_000_000)
        if lin.ok is False:
            sim.fail("linearizability: no legal order for " + "; ".join(lin.failed_partition[:20]))
    lead = operator.leader()
    final_conf = lead.node.conf if lead is not None and lead.node is not None else ConfState()
    figures: dict[str, Any] = {
        "virtual_seconds": round(sim.now, 6),
        "reads": "read_index" if read_index else "log",
        "transfer_interval_s": transfer_interval_s,
        "transfers": operator.transfers,
        "conf_interval_s": conf_interval_s,
        "conf_changes_asked": operator.conf_changes,
        "conf_changes_committed": max(0, checker.conf_entries - cfg.peers),
        "final_voters": len(final_conf.voters),
        "leader_changes": checker.leader_changes,
        "max_term": max(checker.leaders, default=0),
        "commits": checker.commits,
        "heal_seconds": None if heal_s is None else round(heal_s, 6),
        "partitions": injector.partitions,
        "client_ops": len(workload.history),
        "client_ops_ok": workload.ops_completed(),
        "acked_writes": len(workload.acked_writes),
        "linearizability": None if lin is None else lin.as_dict() | {"failed_partition": []},
        **sim.stats.as_dict(),
    }
    return RaftRun(sim.violation, sim.violation_at, profile, figures)


def _members(operator: Operator) -> list[int] | None:
    """Indexes of the current leader's voters and learners (None without a leader)."""
    lead = operator.leader()
    if lead is None or lead.node is None:
        return None
    conf = lead.node.conf
    index_of = operator.cluster.index_of
    return sorted(index_of[n] for n in (*conf.voters, *conf.learners))


def _heal(
    sim: Simulator,
    cfg: RaftScenarioConfig,
    cluster: RaftCluster,
    clients: list[KvClient],
    operator: Operator,
) -> float | None:
    """Run until the cluster converges after the faults stop; returns how long it took."""
    heal_at = sim.now
    deadline = heal_at + cfg.heal_bound_s
    step_s = cfg.heartbeat_interval_s
    while sim.now < deadline:
        if not sim.run_until(min(deadline, sim.now + step_s)):
            return None
        if _converged(cluster, clients, heal_at, operator):
            return sim.now - heal_at
    applied = [s.applied if s else -1 for s in cluster.servers]
    sim.fail(
        f"liveness: no convergence within {cfg.heal_bound_s}s after healing "
        f"(applied {applied}, commits {cluster.checker.commits}, members {_members(operator)})"
    )
    return None


def _converged(
    cluster: RaftCluster, clients: list[KvClient], heal_at: float, operator: Operator
) -> bool:
    # A client operation invoked after the heal completed: a new entry was committed.
    if not any(t >= heal_at for c in clients for t in c.completed_calls):
        return False
    members = _members(operator)
    if members is None:
        return False
    commits = cluster.checker.commits
    for index in members:
        server = cluster.servers[index]
        if server is None or server.node is None or server.applied != commits:
            return False
        if server.is_leader() and server is not operator.leader():
            return False  # a second, deposed leader among the members
    return True


def _final_checks(sim: Simulator, cluster: RaftCluster, operator: Operator) -> None:
    """Every acknowledged write is in the state machine of every member."""
    members = _members(operator)
    if members is None:
        sim.fail("no leader at the end of the heal phase")
        return
    for index in members:
        server = cluster.servers[index]
        if server is None:
            sim.fail(f"member {cluster.ids[index]} is down at the end of the heal phase")
            return
        sessions = server.kv.sessions
        for client, seq in cluster.workload.acked_writes:
            last = sessions.get(client)
            if last is None or last[0] < seq:
                sim.fail(
                    f"acknowledged write lost: client {client} op {seq} is not in "
                    f"{cluster.ids[server.index]}'s state machine"
                )
                return


def scenario(seed: int, peers: int, duration: float | None) -> ScenarioResult:
    """The registry entry: ``duration`` is the safety phase in virtual seconds."""
    if not 1 <= peers <= 64:
        raise ValueError("the raft scenario runs 1 to 64 servers")
    cfg = RaftScenarioConfig(peers=peers)
    if duration is not None:
        cfg = replace(cfg, safety_s=duration)
    outcome = run(seed, cfg)
    return ScenarioResult(
        outcome.violation, outcome.violation_at, outcome.profile.as_dict(), outcome.figures
    )
