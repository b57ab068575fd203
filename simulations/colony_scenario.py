"""The ``colony`` scenario: a whole colony -- ledger servers, executors, a workload -- under faults.

What it owns: :func:`run`, one seeded run of

* ``servers`` :class:`~colonymesh.simulations.colony_actors.ColonyServer`
  peers (the real Raft core with the real colony ledger as its state
  machine; every entry a member-signed envelope frame), ticking the ledger
  clock and declaring silent executors lost while they lead;
* submitters (one by default), submitting plain function specs and small
  workflows (diamond DAGs), some of which the workload makes fail: either a
  fixed number spread over the first half of the safety phase
  (``processes_per_peer``, issue 7's sweep) or Poisson streams
  (:class:`Arrivals`, by function and executor type, with priorities);
* ``peers - servers - submitters`` executors with one slot each, by type and
  hardware (:attr:`ColonyScenarioConfig.executor_groups`), which claim,
  "run" for a drawn virtual duration and close or fail, crash mid-process
  (drawn) and restart or stay down for a while. Idle executors are dormant
  and cost nothing: a process becoming ready wakes one dormant executor of
  its type through the simulated network (the leader's tick re-sends lost
  wake-ups), so a 10,000-peer colony runs as fast as its working set.

Locations with a one-way delay matrix, explicit loss and jitter, executor
churn and partitions of locations over time come from the config (see
:mod:`~colonymesh.simulations.description` for the public description).
Results include time series (``series``: queue length, running processes,
completion latency p50/p99 by window, leader changes) for the plots.

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

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from colonymesh.consensus import Role
from colonymesh.node.certs import Capabilities, Gpu
from colonymesh.node.ledger.commands import SubmitWorkflow
from colonymesh.node.ledger.ledger import Ledger
from colonymesh.node.ledger.model import ProcessState
from colonymesh.simulations.colony_actors import (
    ColonyServer,
    ExecutorActor,
    Submission,
    SubmitterActor,
    SubmitterState,
)
from colonymesh.simulations.colony_workload import (
    Arrivals,
    Workload,
    build_arrivals,
    build_workload,
    latency_series,
    latency_summary,
)
from colonymesh.simulations.colony_world import EXECUTOR_TYPE, ColonyTiming, ColonyWorld
from colonymesh.simulations.engine import NodeIO, Simulator
from colonymesh.simulations.faults import FaultInjector, FaultProfile
from colonymesh.simulations.kv import KvWorkload
from colonymesh.simulations.network import LinkSpec
from colonymesh.simulations.raft_server import RaftCluster, RaftScenarioConfig
from colonymesh.simulations.runner import ScenarioResult, report_progress

__all__ = ["Arrivals", "ColonyRun", "ColonyScenarioConfig", "Workload", "run", "scenario"]


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
    submitters: int = 1
    # Executors by type: ((type, count), ...); empty: every executor is of type "sim".
    executor_groups: tuple[tuple[str, int], ...] = ()
    # Per executor group: (cpu millicores, memory bytes, gpus); empty: 64 cores, 1 TiB.
    executor_hardware: tuple[tuple[int, int, int], ...] = ()
    # Arrivals: non-empty replaces ``processes_per_peer`` (see :class:`Arrivals`).
    arrivals: tuple[Arrivals, ...] = ()
    arrivals_until_s: float = 0.0  # arrivals stop here (0: at the end of the safety phase)
    # Locations: names, a base one-way delay matrix in seconds, each node's location.
    locations: tuple[str, ...] = ()
    location_delay_s: tuple[tuple[float, ...], ...] = ()
    node_locations: tuple[int, ...] = ()  # one per node, in node order; empty: all at 0
    jitter_s: float | None = None  # None: the drawn profile's
    loss: float | None = None  # None: the drawn profile's
    server_faults: bool = True  # False: no drawn server faults (crashes, partitions, ...)
    # Executor churn; None: drawn from the seed.
    executor_crash_interval_s: float | None = None
    executor_restart_fraction: float | None = None
    executor_cut_interval_s: float | None = None
    executor_cut_mean_s: float | None = None
    # Partitions over time: (start s, duration s, location indices cut off from the rest).
    partitions: tuple[tuple[float, float, tuple[int, ...]], ...] = ()
    series_step_s: float = 0.0  # sampling step of the time series (0: duration / 120)


@dataclass(slots=True)
class ColonyRun:
    violation: str | None
    violation_at: tuple[float, int] | None
    profile: FaultProfile
    figures: dict[str, Any]


def _executor_layout(
    cfg: ColonyScenarioConfig, executors_n: int
) -> tuple[list[str], list[Capabilities] | None]:
    if not cfg.executor_groups:
        return [EXECUTOR_TYPE] * executors_n, None
    types: list[str] = []
    caps: list[Capabilities] = []
    for g, (executor_type, count) in enumerate(cfg.executor_groups):
        types += [executor_type] * count
        if cfg.executor_hardware:
            cpu, mem, gpus = cfg.executor_hardware[g]
            gpu = Gpu(name="sim-gpu", mem_bytes=16 * 2**30, count=gpus) if gpus else Gpu()
            caps += [Capabilities(cpu_millicores=cpu, mem_bytes=mem, gpu=gpu)] * count
    if len(types) != executors_n:
        raise ValueError(f"executor groups count {len(types)} executors, expected {executors_n}")
    return types, caps or None


def run(seed: int, cfg: ColonyScenarioConfig) -> ColonyRun:
    """One seeded run: safety phase under faults, heal phase, final checks."""
    servers_n = cfg.servers
    submitters_n = cfg.submitters
    executors_n = cfg.peers - servers_n - submitters_n
    if executors_n < 1 or submitters_n < 1:
        raise ValueError(f"a colony of {cfg.peers} peers has no room for executors")
    sim = Simulator(seed, shared_node_rng=cfg.peers > 1000)
    sim.events_limit = cfg.events_max
    rng = sim.rng
    drawn = FaultProfile.draw(rng)
    # Servers keep NTP-grade clocks: drift of at most 1e-3, no offset (see the module docs).
    profile = replace(drawn, clock_drift=min(drawn.clock_drift, 1e-3), clock_offset_max_s=0.0)
    if not cfg.server_faults:
        profile = FaultProfile(delay_base_s=drawn.delay_base_s, delay_jitter_s=drawn.delay_jitter_s)
    if cfg.loss is not None:
        profile = replace(profile, loss=cfg.loss)
    if cfg.jitter_s is not None:
        profile = replace(profile, delay_jitter_s=cfg.jitter_s)

    def churn(value: float | None, options: tuple[float, ...]) -> float:
        draw = options[rng.randrange(len(options))]  # always drawn: the seed's stream stays put
        return draw if value is None else value

    executor_crash_interval_s = churn(cfg.executor_crash_interval_s, (0.0, 0.5, 2.0, 5.0))
    executor_restart_fraction = churn(cfg.executor_restart_fraction, (0.5, 0.9, 1.0))
    executor_cut_interval_s = churn(cfg.executor_cut_interval_s, (0.0, 1.0, 3.0))
    executor_cut_mean_s = churn(cfg.executor_cut_mean_s, (1.0, 4.0, 10.0))
    timing = ColonyTiming()
    types, caps = _executor_layout(cfg, executors_n)
    location_names = None
    if cfg.locations:
        location_names = [cfg.locations[loc] for loc in _node_locations(cfg)]
    world = ColonyWorld(
        rng.randbytes(32 * (cfg.peers + 1)),
        servers_n,
        executors_n,
        timing,
        submitters=submitters_n,
        executor_types=types,
        capabilities=caps,
        locations=location_names,
    )
    world.clock = lambda: sim.now
    workload = Workload(cfg)
    if cfg.arrivals:
        queue = build_arrivals(rng, cfg, cfg.arrivals_until_s or cfg.safety_s)
        gap_s = 0.0
    else:
        processes = cfg.processes_per_peer * cfg.peers
        queue = build_workload(rng, cfg, processes)
        gap_s = 0.5 * cfg.safety_s / max(1, len(queue))  # arrives over the safety phase
    states = [SubmitterState(queue[i::submitters_n]) for i in range(submitters_n)]
    if cfg.location_delay_s:
        sim.network.location_delay_s = [list(row) for row in cfg.location_delay_s]
    node_locations = _node_locations(cfg)

    raft_cfg = RaftScenarioConfig(peers=servers_n, snapshot_every=cfg.snapshot_every)
    cluster = RaftCluster(raft_cfg, KvWorkload([]))
    for i in range(servers_n):
        rate, _ = profile.draw_clock(rng)
        sim.add_node(
            lambda io: ColonyServer(io, cluster, world), clock_rate=rate, location=node_locations[i]
        )

    def make_submitter(state: SubmitterState) -> Callable[[NodeIO], SubmitterActor]:
        return lambda io: SubmitterActor(io, world, state, gap_s)

    for state in states:
        sim.add_node(make_submitter(state), location=node_locations[sim.node_count])

    def make_executor(io: NodeIO) -> ExecutorActor:
        return ExecutorActor(io, world, workload)

    first_executor = servers_n + submitters_n
    for i in range(executors_n):
        sim.add_node(make_executor, location=node_locations[first_executor + i])
    executors = range(first_executor, first_executor + executors_n)

    checker = cluster.checker
    leaders: list[list[float]] = []
    last_leader = [(-1, -1)]

    def check_step(index: int) -> None:
        if 0 <= index < servers_n:
            server = sim.adapter(index)
            if isinstance(server, ColonyServer) and server.node is not None:
                role, term = server.role_term()
                if role is Role.LEADER:
                    checker.leader_seen(index, term)
                    if (index, term) != last_leader[0]:
                        last_leader[0] = (index, term)
                        leaders.append([round(sim.now, 6), index])
        if world.violation is not None:
            sim.fail(world.violation)

    def crashed(index: int) -> None:
        if index < servers_n:
            cluster.servers[index] = None
            checker.rebuild(index, sim.disk(index).records)
        else:
            world.run_stopped(index, sim.now)
            world.unpark(index)

    sim.checkers.append(check_step)
    sim.on_crash.append(crashed)

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

    def some_executor() -> int:
        """A running executor more often than not: crashes and cuts should hit work."""
        if world.running_at and rng.random() < 0.7:
            running = list(world.running_at)
            return running[rng.randrange(len(running))]
        return executors[rng.randrange(executors_n)]

    def crash_executor() -> None:
        nonlocal executor_crashes
        if not safety_active:
            return
        victim = some_executor()
        if sim.is_up(victim):
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
        victim = some_executor()
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

    by_location: dict[int, list[int]] = {}
    for node, loc in enumerate(node_locations):
        by_location.setdefault(loc, []).append(node)
    for start_s, length_s, cut in cfg.partitions:
        inside = [n for loc in cut for n in by_location.get(loc, [])]
        outside = [n for loc in sorted(by_location) if loc not in cut for n in by_location[loc]]

        def split(inside: list[int] = inside, outside: list[int] = outside) -> None:
            if safety_active:
                sim.network.partition([inside, outside])

        sim.call_at(start_s, split)
        sim.call_at(start_s + length_s, sim.network.heal)

    step_s = cfg.series_step_s or max(0.5, round(cfg.safety_s / 120, 1))
    queue_series: list[list[float]] = []
    running_series: list[list[float]] = []

    finished_series: list[list[float]] = []
    leader_series: list[list[float]] = []

    def sample() -> None:
        """One point of every time series (a scheduled call: idle stretches cost nothing)."""
        t = round(sim.now, 6)
        queue_series.append([t, len(world.ready)])
        running_series.append([t, len(world.running_at)])
        finished_series.append([t, len(world.final)])
        leader = leader_index()
        leader_series.append([t, -1 if leader is None else leader])
        sim.call_later(step_s, sample)

    sim.call_at(0.0, sample)

    ok = _run_reporting(sim, cfg.safety_s, cfg.safety_s + cfg.heal_bound_s)
    heal_s: float | None = None
    if ok:
        safety_active = False
        injector.heal()
        sim.network.heal()
        cut_links.clear()
        for i in executors:
            sim.restart(i)
        heal_s = _heal(sim, cfg, world, cluster, states)
    if sim.violation is None and heal_s is not None:
        _final_checks(sim, world, cluster)

    finals = list(world.final.values())
    submitted = [sub for st in states for sub in st.queue[: st.next_index]]
    figures: dict[str, Any] = {
        "virtual_seconds": round(sim.now, 6),
        "servers": servers_n,
        "submitters": submitters_n,
        "executors": executors_n,
        "executors_activated": sum(world.activated),
        "processes_submitted": sum(_process_count(s) for s in submitted),
        "submissions_acked": len(world.acked),
        "workflows_acked": len(world.workflows_acked),
        "processes_succeeded": sum(1 for s in finals if s is ProcessState.SUCCESS),
        "processes_failed": sum(1 for s in finals if s is ProcessState.FAILED),
        "claims": world.claims,
        "requeues": world.requeues,
        "executor_losses": world.executor_losses,
        "executor_crashes": executor_crashes,
        "executor_crash_interval_s": executor_crash_interval_s,
        "executor_cuts": executor_cuts,
        "executor_cut_interval_s": executor_cut_interval_s,
        "wakes_sent": world.wakes_sent,
        "runs": world.runs_total,
        "runs_stopped_on_lease": world.runs_stopped,
        "runs_timed_out": world.runs_timed_out,
        "closes": world.closes,
        "fails": world.fails,
        "reports_refused": world.reports_refused,
        "ledger_events": world.ledger_events,
        "leader_changes": checker.leader_changes,
        "commits": checker.commits,
        "partitions": injector.partitions + len(cfg.partitions),
        "heal_seconds": None if heal_s is None else round(heal_s, 6),
        "completion_latency_s": latency_summary(world),
        **sim.stats.as_dict(),
        "series": {
            "queue_length": queue_series,
            "running_processes": running_series,
            "finished_processes": finished_series,
            "leader": leader_series,
            **latency_series(world, step_s * 5),
            "leaders": leaders,
        },
    }
    return ColonyRun(sim.violation, sim.violation_at, profile, figures)


def _node_locations(cfg: ColonyScenarioConfig) -> list[int]:
    if cfg.node_locations:
        if len(cfg.node_locations) != cfg.peers:
            raise ValueError("node_locations needs one location per peer")
        return list(cfg.node_locations)
    return [0] * cfg.peers


def _run_reporting(sim: Simulator, until_s: float, total_s: float) -> bool:
    """Run the safety phase in chunks, telling ``--progress`` how far it got."""
    chunk = max(1.0, until_s / 100)
    while sim.now < until_s:
        if not sim.run_until(min(until_s, sim.now + chunk)):
            return False
        report_progress(sim.now, total_s)
    return True


def _process_count(sub: Submission) -> int:
    return 4 if isinstance(sub.body, SubmitWorkflow) else 1


def _all_final(world: ColonyWorld, cluster: RaftCluster, states: list[SubmitterState]) -> bool:
    if any(state.next_index < len(state.queue) for state in states):
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
    states: list[SubmitterState],
) -> float | None:
    heal_at = sim.now
    deadline = heal_at + cfg.heal_bound_s
    target = 0  # once the leader holds every submission final, every server must reach it
    while sim.now < deadline:
        if not sim.run_until(min(deadline, sim.now + 1.0)):
            return None
        report_progress(
            min(sim.now, cfg.safety_s + cfg.heal_bound_s), cfg.safety_s + cfg.heal_bound_s
        )
        if not target and _all_final(world, cluster, states):
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
        f"after healing (submitted {sum(st.next_index for st in states)}/"
        f"{sum(len(st.queue) for st in states)}, pending {pending})"
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


# Above this many peers the registry's colony uses arrival rates scaled with the peers.
_ARRIVALS_FROM_PEERS = 200
ARRIVALS_PER_PEER_PER_S = 0.001  # submissions per second per peer (10/s at 10,000 peers)


def default_config(peers: int, duration: float | None) -> ColonyScenarioConfig:
    """The ``colony`` registry entry's colony: small ones as issue 7's sweep, large ones
    with Poisson arrivals (plain specs and diamond workflows) scaled with the peers."""
    cfg = ColonyScenarioConfig(peers=peers, servers=5 if peers >= 100 else 3)
    if duration is not None:
        cfg = replace(cfg, safety_s=duration)
    if peers > _ARRIVALS_FROM_PEERS:
        rate = ARRIVALS_PER_PEER_PER_S * peers
        cfg = replace(
            cfg,
            servers=3,  # issue 7's default group: every entry is applied by each server
            submitters=max(1, peers // 200),  # members submitting: one each would lag
            arrivals=(
                Arrivals("ok", rate_per_s=0.8 * rate, run_mean_s=1.0, fail_fraction=0.03),
                Arrivals("wf", rate_per_s=0.05 * rate, run_mean_s=0.5, workflow=True),
                Arrivals("urgent", rate_per_s=0.15 * rate, run_mean_s=0.2, priority=2),
            ),
            snapshot_every=4000,
            events_max=200_000_000,
        )
    return cfg


def scenario(seed: int, peers: int, duration: float | None) -> ScenarioResult:
    """The registry entry: ``duration`` is the safety phase in virtual seconds."""
    if not 5 <= peers <= 100_000:
        raise ValueError("the colony scenario runs 5 to 100,000 peers")
    outcome = run(seed, default_config(peers, duration))
    return ScenarioResult(
        outcome.violation, outcome.violation_at, outcome.profile.as_dict(), outcome.figures
    )
