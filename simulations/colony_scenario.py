"""The ``colony`` scenario: a whole colony -- ledger servers, executors, a workload -- under faults.

What it owns: :func:`run`, one seeded run of

* ``servers`` :class:`~colonymesh.simulations.colony_actors.ColonyServer`
  peers (the real Raft core with the real colony ledger as its state
  machine; every entry a member-signed envelope frame), ticking the ledger
  clock and declaring silent executors lost while they lead;
* one submitter, submitting plain function specs and small workflows
  (diamond DAGs), some of which the workload makes fail;
* ``peers - servers - 1`` executors with one slot each, which claim, "run"
  for a drawn virtual duration and close or fail, crash mid-process (drawn)
  and restart or stay down for a while.

Phases: a **safety phase** (``safety_s``) where a drawn
:class:`~colonymesh.simulations.faults.FaultProfile` plays on the servers
(crashes, torn writes, partitions, slow nodes; loss, duplication, reordering
and delay hit every message), executors crash mid-process (drawn rate; some
stay down), and executors are cut off the servers for a drawn while, both
ways or one way; then a **heal phase**: faults off, every node restarted,
until the leader holds every acknowledged submission final and every server
has applied that far (bounded by ``heal_bound_s``).

Checkers, after every step: the Raft safety checks of
:mod:`~colonymesh.simulations.raft_checks`; (2) no process runs at two
executors at once (the actors' run intervals in virtual time); (3) only the
assignee closes or fails a process (from the applied events). At the end:
(1) no process lost -- on every server, every acknowledged submission is
final, SUCCESS unless the workload made it fail.

Server clocks drift by at most 1e-3 (NTP-grade) and have no offset: the
ledger's time is the leader's clock, and a server clock far ahead would
re-queue running processes early by design (the ledger assumes synchronised
server clocks), which is a deployment assumption, not a bug to report.
Executors read the assignment time the ledger recorded against their own
clock; the drift stays well inside the ledger's 2 s re-queue grace.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, replace
from typing import Any

from colonymesh.consensus import Role
from colonymesh.node.ledger.commands import SubmitFunction, SubmitWorkflow
from colonymesh.node.ledger.ledger import Ledger
from colonymesh.node.ledger.model import ProcessState
from colonymesh.simulations.colony_actors import (
    ColonyServer,
    ExecutorActor,
    Submission,
    SubmitterActor,
    SubmitterState,
)
from colonymesh.simulations.colony_world import EXECUTOR_TYPE, ColonyTiming, ColonyWorld
from colonymesh.simulations.engine import NodeIO, Simulator
from colonymesh.simulations.faults import FaultInjector, FaultProfile
from colonymesh.simulations.kv import KvWorkload
from colonymesh.simulations.network import LinkSpec
from colonymesh.simulations.raft_server import RaftCluster, RaftScenarioConfig
from colonymesh.simulations.runner import ScenarioResult

__all__ = ["ColonyRun", "ColonyScenarioConfig", "run", "scenario"]


_SERIES_SAMPLE_S = 1.0  # the time series in the figures (plots) sample this often


@dataclass(frozen=True, slots=True)
class ColonyScenarioConfig:
    peers: int = 50  # servers + 1 submitter + executors
    servers: int = 3
    processes_per_peer: int = 20  # the workload: 1,000 processes at 50 peers
    safety_s: float = 40.0
    heal_bound_s: float = 120.0
    maxexectime_s: int = 8
    maxretries: int = 3
    snapshot_every: int = 400
    events_max: int = 20_000_000


@dataclass(slots=True)
class ColonyRun:
    violation: str | None
    violation_at: tuple[float, int] | None
    profile: FaultProfile
    figures: dict[str, Any]


class Workload:
    """Durations by function name; what the executors ask the scenario."""

    def __init__(self, cfg: ColonyScenarioConfig) -> None:
        self.spec_maxexectime_s = cfg.maxexectime_s
        # When an executor kills a run: the spec's maxexectime (a test breaks this seam).
        self.maxexectime_s = float(cfg.maxexectime_s)

    def draw_duration(self, rng: random.Random, funcname: str) -> float:
        if funcname == "slow":
            return self.spec_maxexectime_s * (1.2 + rng.random())
        if rng.random() < 0.15:  # long runs: an executor cut off mid-run must stop in time
            return 2.0 + 5.0 * rng.random()
        return 0.05 + 1.5 * rng.random() ** 2


def _spec(funcname: str, cfg: ColonyScenarioConfig, **extra: Any) -> dict[str, Any]:
    conditions = extra.pop("conditions", {})
    return {
        "funcname": funcname,
        "conditions": {"executortype": EXECUTOR_TYPE, **conditions},
        "maxexectime": cfg.maxexectime_s,
        # A claim whose answer is lost leaves the process assigned and unrun
        # until maxexectime re-queues it, spending a retry; only the processes
        # meant to overrun have a retry limit, so the others cannot fail so.
        "maxretries": cfg.maxretries if funcname == "slow" else -1,
        **extra,
    }


def build_workload(
    rng: random.Random, cfg: ColonyScenarioConfig, processes: int
) -> list[Submission]:
    """Plain specs and diamond workflows; ~5% of plain specs fail, ~2% overrun maxexectime."""
    subs: list[Submission] = []
    count = 0
    while count < processes:
        roll = rng.random()
        if roll < 0.12 and processes - count >= 4:
            failing = rng.random() < 0.15
            names = ["a", "b", "c", "d"]
            bad = names[rng.randrange(4)] if failing else ""
            deps = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}
            specs = [
                _spec(
                    "fail" if n == bad else "ok",
                    cfg,
                    nodename=n,
                    conditions={"dependencies": deps[n]},
                )
                for n in names
            ]
            text = json.dumps({"colonyname": "", "functionspecs": specs})
            subs.append(
                Submission(SubmitWorkflow(text, rng.randbytes(16)), "fail" if failing else "ok")
            )
            count += 4
        else:
            r = rng.random()
            funcname = "fail" if r < 0.05 else "slow" if r < 0.07 else "ok"
            text = json.dumps(_spec(funcname, cfg, priority=rng.randrange(3)))
            subs.append(
                Submission(
                    SubmitFunction(text, rng.randbytes(16)), "ok" if funcname == "ok" else "fail"
                )
            )
            count += 1
    return subs


def run(seed: int, cfg: ColonyScenarioConfig) -> ColonyRun:
    """One seeded run: safety phase under faults, heal phase, final checks."""
    servers_n = cfg.servers
    executors_n = cfg.peers - servers_n - 1
    if executors_n < 1:
        raise ValueError(f"a colony of {cfg.peers} peers has no room for executors")
    sim = Simulator(seed)
    sim.events_limit = cfg.events_max
    rng = sim.rng
    drawn = FaultProfile.draw(rng)
    # Servers keep NTP-grade clocks: drift of at most 1e-3, no offset (see the module docs).
    profile = replace(drawn, clock_drift=min(drawn.clock_drift, 1e-3), clock_offset_max_s=0.0)
    executor_crash_interval_s = (0.0, 0.5, 2.0, 5.0)[rng.randrange(4)]
    executor_restart_fraction = (0.5, 0.9, 1.0)[rng.randrange(3)]
    executor_cut_interval_s = (0.0, 1.0, 3.0)[rng.randrange(3)]
    executor_cut_mean_s = (1.0, 4.0, 10.0)[rng.randrange(3)]
    timing = ColonyTiming()
    world = ColonyWorld(rng.randbytes(32 * (cfg.peers + 1)), servers_n, executors_n, timing)
    workload = Workload(cfg)
    processes = cfg.processes_per_peer * cfg.peers
    queue = build_workload(rng, cfg, processes)
    submitter_state = SubmitterState(queue)
    gap_s = 0.5 * cfg.safety_s / max(1, len(queue))  # the workload arrives over the safety phase

    raft_cfg = RaftScenarioConfig(peers=servers_n, snapshot_every=cfg.snapshot_every)
    cluster = RaftCluster(raft_cfg, KvWorkload([]))
    for _ in range(servers_n):
        rate, _ = profile.draw_clock(rng)
        sim.add_node(lambda io: ColonyServer(io, cluster, world), clock_rate=rate)
    sim.add_node(lambda io: SubmitterActor(io, world, submitter_state, gap_s))

    def make_executor(io: NodeIO) -> ExecutorActor:
        return ExecutorActor(io, world, workload)

    executors = [sim.add_node(make_executor) for _ in range(executors_n)]

    checker = cluster.checker

    def check_step(index: int) -> None:
        if 0 <= index < servers_n:
            server = sim.adapter(index)
            if isinstance(server, ColonyServer) and server.node is not None:
                role, term = server.role_term()
                if role is Role.LEADER:
                    checker.leader_seen(index, term)
        if world.violation is not None:
            sim.fail(world.violation)

    def crashed(index: int) -> None:
        if index < servers_n:
            cluster.servers[index] = None
            checker.rebuild(index, sim.disk(index).records)
        else:
            world.run_stopped(index, sim.now)

    sim.checkers.append(check_step)
    sim.on_crash.append(crashed)
    series: dict[str, list[list[float]]] = {
        "running_processes": [],
        "finished_processes": [],
        "leader": [],
    }
    sample_at = [0.0]

    def sample(_index: int) -> None:
        """Time series for plots, read after a step once per virtual second (no events)."""
        if sim.now < sample_at[0]:
            return
        sample_at[0] = sim.now + _SERIES_SAMPLE_S
        t = round(sim.now, 3)
        series["running_processes"].append([t, float(len(world.running_at))])
        series["finished_processes"].append([t, float(len(world.final))])
        leader = leader_index()
        series["leader"].append([t, -1.0 if leader is None else float(leader)])

    sim.checkers.append(sample)

    def leader_index() -> int | None:
        best: tuple[int, int] | None = None
        for s in cluster.servers:
            if s is not None and s.node is not None and s.is_leader():
                term = s.role_term()[1]
                if best is None or term > best[0]:
                    best = (term, s.index)
        return None if best is None else best[1]

    injector = FaultInjector(sim, profile, list(range(servers_n)), focus=leader_index)
    injector.start()
    executor_crashes = 0
    safety_active = True

    def crash_executor() -> None:
        nonlocal executor_crashes
        if not safety_active:
            return
        up = [i for i in executors if sim.is_up(i)]
        if up:
            victim = up[rng.randrange(len(up))]
            sim.crash(victim)
            executor_crashes += 1
            if rng.random() < executor_restart_fraction:
                sim.restart_at(sim.now + rng.expovariate(1.0), victim)
        sim.call_later(rng.expovariate(1.0 / executor_crash_interval_s), crash_executor)

    if executor_crash_interval_s > 0.0:
        sim.call_later(rng.expovariate(1.0 / executor_crash_interval_s), crash_executor)

    executor_cuts = 0
    cut_links: dict[tuple[int, int], LinkSpec] = sim.network.links

    def cut_executor() -> None:
        """Cut one executor off the servers (one or both ways) for a while."""
        nonlocal executor_cuts
        if not safety_active:
            return
        victim = executors[rng.randrange(len(executors))]
        way = rng.randrange(3)  # 0: both ways, 1: it cannot send, 2: it cannot hear
        pairs = [
            pair
            for server in range(servers_n)
            for pair in ((victim, server), (server, victim))
            if way == 0 or (pair[0] == victim) == (way == 1)
        ]
        dead = LinkSpec(delay_s=0.001, loss=1.0)
        for pair in pairs:
            cut_links[pair] = dead
        executor_cuts += 1

        def mend() -> None:
            for pair in pairs:
                if cut_links.get(pair) is dead:
                    del cut_links[pair]

        sim.call_later(rng.expovariate(1.0 / executor_cut_mean_s), mend)
        sim.call_later(rng.expovariate(1.0 / executor_cut_interval_s), cut_executor)

    if executor_cut_interval_s > 0.0:
        sim.call_later(rng.expovariate(1.0 / executor_cut_interval_s), cut_executor)

    ok = sim.run_until(cfg.safety_s)
    heal_s: float | None = None
    if ok:
        safety_active = False
        injector.heal()
        cut_links.clear()
        for i in executors:
            sim.restart(i)
        heal_s = _heal(sim, cfg, world, cluster, submitter_state)
    if sim.violation is None and heal_s is not None:
        _final_checks(sim, world, cluster)

    states = list(world.final.values())
    figures: dict[str, Any] = {
        "virtual_seconds": round(sim.now, 6),
        "servers": servers_n,
        "executors": executors_n,
        "processes_submitted": sum(_process_count(s) for s in queue[: submitter_state.next_index]),
        "submissions_acked": len(world.acked),
        "workflows_acked": len(world.workflows_acked),
        "processes_succeeded": sum(1 for s in states if s is ProcessState.SUCCESS),
        "processes_failed": sum(1 for s in states if s is ProcessState.FAILED),
        "claims": world.claims,
        "requeues": world.requeues,
        "executor_losses": world.executor_losses,
        "executor_crashes": executor_crashes,
        "executor_crash_interval_s": executor_crash_interval_s,
        "executor_cuts": executor_cuts,
        "executor_cut_interval_s": executor_cut_interval_s,
        "runs": world.runs_total,
        "runs_stopped_on_lease": world.runs_stopped,
        "runs_timed_out": world.runs_timed_out,
        "closes": world.closes,
        "fails": world.fails,
        "reports_refused": world.reports_refused,
        "ledger_events": world.ledger_events,
        "leader_changes": checker.leader_changes,
        "commits": checker.commits,
        "partitions": injector.partitions,
        "heal_seconds": None if heal_s is None else round(heal_s, 6),
        **sim.stats.as_dict(),
        "series": series,
    }
    return ColonyRun(sim.violation, sim.violation_at, profile, figures)


def _process_count(sub: Submission) -> int:
    return 4 if isinstance(sub.body, SubmitWorkflow) else 1


def _all_final(world: ColonyWorld, cluster: RaftCluster, state: SubmitterState) -> bool:
    if state.next_index < len(state.queue):
        return False
    ledger = _leader_ledger(cluster)
    if ledger is None:
        return False
    for sid in world.acked:
        workflow = ledger.workflows.get(sid)
        if workflow is not None:
            if not workflow.state.is_final:
                return False
            if any(not ledger.processes[p].state.is_final for p in workflow.process_ids):
                return False
            continue
        process = ledger.processes.get(sid)
        if process is None or not process.state.is_final:
            return False
    return True


def _caught_up(cluster: RaftCluster, index: int) -> bool:
    return all(s is not None and s.applied >= index for s in cluster.servers)


def _leader_ledger(cluster: RaftCluster) -> Ledger | None:
    for s in cluster.servers:
        if isinstance(s, ColonyServer) and s.node is not None and s.is_leader():
            return s.ledger
    return None


def _heal(
    sim: Simulator,
    cfg: ColonyScenarioConfig,
    world: ColonyWorld,
    cluster: RaftCluster,
    state: SubmitterState,
) -> float | None:
    heal_at = sim.now
    deadline = heal_at + cfg.heal_bound_s
    target = 0  # once the leader holds every submission final, every server must reach it
    while sim.now < deadline:
        if not sim.run_until(min(deadline, sim.now + 1.0)):
            return None
        if not target and _all_final(world, cluster, state):
            target = cluster.checker.commits
        if target and _caught_up(cluster, target):
            return sim.now - heal_at
    ledger = _leader_ledger(cluster)
    pending = []
    if ledger is not None:
        pending = [
            f"{p.id[:12]}={p.state.value}"
            for p in ledger.processes.values()
            if not p.state.is_final
        ][:10]
    sim.fail(
        f"liveness: not every acknowledged submission final within {cfg.heal_bound_s}s "
        f"after healing (submitted {state.next_index}/{len(state.queue)}, pending {pending})"
    )
    return None


def _final_checks(sim: Simulator, world: ColonyWorld, cluster: RaftCluster) -> None:
    """(1) No process lost: on every server, every acknowledged submission final, as meant."""
    for server in cluster.servers:
        if not isinstance(server, ColonyServer):
            sim.fail("a server is down at the end of the heal phase")
            return
        problem = _submissions_problem(server.ledger, world)
        if problem is not None:
            sim.fail(f"{cluster.ids[server.index]}: {problem}")
            return


def _submissions_problem(ledger: Ledger, world: ColonyWorld) -> str | None:
    for sid, expect in world.acked.items():
        want = ProcessState.SUCCESS if expect == "ok" else ProcessState.FAILED
        workflow = ledger.workflows.get(sid)
        if workflow is not None:
            if workflow.state is not want:
                return f"workflow {sid} ended {workflow.state.value}, expected {want.value}"
            for pid in workflow.process_ids:
                if not ledger.processes[pid].state.is_final:
                    return f"workflow {sid} ended with process {pid} not final"
            continue
        process = ledger.processes.get(sid)
        if process is None:
            return f"acknowledged process {sid} lost: not in the ledger"
        if process.state is not want:
            return (
                f"process {sid} ({process.spec.funcname}) ended {process.state.value}, "
                f"expected {want.value}: {process.errors}"
            )
    return None


def scenario(seed: int, peers: int, duration: float | None) -> ScenarioResult:
    """The registry entry: ``duration`` is the safety phase in virtual seconds."""
    if not 5 <= peers <= 2000:
        raise ValueError("the colony scenario runs 5 to 2000 peers")
    cfg = ColonyScenarioConfig(peers=peers, servers=5 if peers >= 100 else 3)
    if duration is not None:
        cfg = replace(cfg, safety_s=duration)
    outcome = run(seed, cfg)
    return ScenarioResult(
        outcome.violation, outcome.violation_at, outcome.profile.as_dict(), outcome.figures
    )
