"""The ``raft`` scenario: N real Raft cores under a seeded fault swarm, then healed.

What it owns: :func:`run`, one seeded run of :class:`~colonymesh.
simulations.raft_server.RaftServer` nodes (the real Raft core behind the
simulator adapter), KV clients and an :class:`Operator`:

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

Drawn per seed besides the fault profile: reads through the log or by
ReadIndex, how often the operator transfers leadership, how often it
changes the membership (spare servers join as learners, get promoted,
voters are removed), and how the servers persist (:func:`draw_persist`):
how long an fsync takes and which servers, as leaders, send their appends
while persisting them (dissertation §10.2.1) rather than after -- so both
paths, and crashes inside the leader's send-before-durable window, are
covered. Servers snapshot every ``snapshot_every`` applied entries, so
compaction and snapshot transfer are exercised too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, cast

from colonymesh.consensus import ConfChange, ConfChangeOp, Role
from colonymesh.consensus.types import ConfState
from colonymesh.simulations.engine import NodeIO, Simulator
from colonymesh.simulations.faults import FaultInjector, FaultProfile
from colonymesh.simulations.kv import KvClient, KvWorkload
from colonymesh.simulations.linearizability import check_kv
from colonymesh.simulations.raft_server import (
    PersistModel,
    RaftCluster,
    RaftScenarioConfig,
    RaftServer,
    draw_persist,
    replay,
)
from colonymesh.simulations.runner import ScenarioResult

__all__ = [
    "PersistModel",
    "RaftRun",
    "RaftScenarioConfig",
    "RaftServer",
    "draw_persist",
    "replay",
    "run",
    "scenario",
]


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


def run(
    seed: int,
    cfg: RaftScenarioConfig,
    server_cls: type[RaftServer] = RaftServer,
    *,
    persist: list[PersistModel] | None = None,
    setup: Callable[[Simulator, RaftCluster], None] | None = None,
) -> RaftRun:
    """One seeded run: safety phase under faults, heal phase, final checks.

    ``persist`` replaces the seed's persist models (one per server, spares
    included: ``cfg.peers + cfg.spares`` covers every draw); ``setup`` runs once the cluster is built, before the first
    event, to schedule directed faults (tests).
    """
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
        request_timeout_s=2 * cfg.election_timeout_s,
        attempts_max=20,
        think_s=cfg.heartbeat_interval_s,
    )
    drawn = draw_persist(rng, len(servers))
    if persist is not None and len(persist) < len(servers):
        raise ValueError(f"{len(servers)} servers need as many persist models")
    persist = drawn if persist is None else persist[: len(servers)]
    cluster = RaftCluster(cfg, workload, read_index=read_index, spares=spares, persist=persist)
    for _ in servers:
        rate, offset_s = profile.draw_clock(rng)
        sim.add_node(lambda io: server_cls(io, cluster), clock_rate=rate, clock_offset_s=offset_s)
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
            server = cluster.servers[index]
            if server is not None:
                server.crashed(rng)  # tear a persist in flight before the disk is read
            cluster.servers[index] = None
            checker.rebuild(index, sim.disk(index).records)

    sim.checkers.append(check_step)
    sim.on_crash.append(crashed)
    operator = Operator(sim, cluster, cfg.safety_s)
    injector = FaultInjector(sim, profile, servers, focus=operator.leader_index)
    injector.start()
    operator.every(transfer_interval_s, operator.transfer)
    operator.every(conf_interval_s, operator.reconfigure)
    if setup is not None:
        setup(sim, cluster)

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
        "fsync_s": persist[0].fsync_s,
        "parallel_servers": sum(m.parallel for m in persist),
        **cluster.persist_stats.as_dict(),
        "partitions": injector.partitions,
        "slowdowns": injector.slowdowns,
        "client_ops": len(workload.history),
        "client_ops_ok": workload.ops_completed(),
        "acked_writes": len(workload.acked_writes),
        "linearizability": None if lin is None else lin.as_dict() | {"failed_partition": []},
        # 1 when the checker's search budget ran out: neither a pass nor a violation.
        "linearizability_unknown": int(lin is not None and lin.ok is None),
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
