"""The real-process chaos run: submissions under load while the Raft leader and an executor die.

:func:`run_chaos` submits ``total`` short processes through the SDK from a
few concurrent tasks. At the points of its plan it
sends SIGKILL to the leader's process group and measures the failover (time
until a surviving server leads and its commit index moves past what it was
at the kill), or SIGKILLs an executor while it runs a process. Executors are
not restarted (the leader declares a silent executor lost after
``executor_stale_s``, which re-queues its processes); a killed
server is restarted before the next leader kill, and with
``restart_server`` at the end, when it must catch up. Then every
acknowledged process must become final, and the checker counts:

* **lost**: acknowledged but not SUCCESS, or missing from ``process ps``;
* **concurrent**: two runs of one process id overlapping in wall time, on
  any executors (a run cut by SIGKILL ends at the kill);
* **foreign closes**: a SUCCESS process whose output's nonce belongs to no
  run, or to a run at another executor than the one the ledger names.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import trio
from rolekit import Cluster, Node, read_runs

from colonymesh.node.sdk import ColonySession, connect

SUBMITTERS = 6


def spec(i: int, sleep_ms: int) -> dict[str, Any]:
    return {
        "funcname": "work",
        "args": [i, sleep_ms],
        "maxexectime": 120,  # generous: a dead executor's work returns through liveness
        "maxretries": 10,
        "conditions": {"executortype": "python"},
    }


@dataclass
class ChaosReport:
    submitted: int = 0
    acknowledged: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    concurrent: list[str] = field(default_factory=list)
    foreign_closes: list[str] = field(default_factory=list)
    failovers_s: list[float] = field(default_factory=list)
    ack_gap_s: float = 0.0
    killed_leaders: list[str] = field(default_factory=list)
    killed_executors: list[str] = field(default_factory=list)
    restarted_executors: list[str] = field(default_factory=list)
    cut_runs: int = 0  # runs the executor kill interrupted
    reruns: int = 0  # processes run more than once (after their executor died)
    seconds: float = 0.0
    caught_up: bool | None = None
    failover_paths: dict[str, int] = field(default_factory=dict)  # summed client/worker counters

    def figures(self) -> dict[str, Any]:
        return {
            "submitted": self.submitted,
            "acknowledged": len(self.acknowledged),
            "lost": len(self.lost),
            "run_twice_concurrently": len(self.concurrent),
            "closed_by_non_assignee": len(self.foreign_closes),
            "leader_kills": len(self.killed_leaders),
            "executor_kills": len(self.killed_executors),
            "executor_restarts": len(self.restarted_executors),
            "failover_s": [round(f, 3) for f in self.failovers_s],
            "largest_ack_gap_s": round(self.ack_gap_s, 3),
            "runs_cut_by_kill": self.cut_runs,
            "reruns": self.reruns,
            "seconds": round(self.seconds, 1),
            "restarted_server_caught_up": self.caught_up,
            "failover_paths": self.failover_paths,
        }


async def _status(node: Node) -> dict[str, Any] | None:
    return await trio.to_thread.run_sync(node.try_status)


async def _measure_failover(cluster: Cluster, dead: Node, report: ChaosReport) -> None:
    survivors = [s for s in cluster.servers if s is not dead]
    before = 0
    for node in survivors:
        status = await _status(node)
        if status:
            before = max(before, int(status["ledger"]["commit"]))
    killed_at = time.monotonic()
    await trio.to_thread.run_sync(dead.kill)
    while time.monotonic() - killed_at < 20:  # no failover within 20 s: none recorded
        for node in survivors:
            status = await _status(node)
            ledger = (status or {}).get("ledger", {})
            if ledger.get("role") == "leader" and int(ledger.get("commit", 0)) > before:
                report.failovers_s.append(time.monotonic() - killed_at)
                return
        await trio.sleep(0.01)


async def _kill_busy_executor(cluster: Cluster, report: ChaosReport) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for node in cluster.executors:
            if not node.alive():
                continue
            status = await _status(node)
            if status and status.get("executor", {}).get("running"):
                await trio.to_thread.run_sync(node.kill)
                report.killed_executors.append(node.name)
                return
        await trio.sleep(0.005)
    raise AssertionError("no executor was running a process to kill")


async def run_chaos(
    cluster: Cluster,
    *,
    total: int,
    plan: list[tuple[int, str]],
    restart_server: bool = False,
    pace_s: float = 0.02,
) -> ChaosReport:
    """Submit ``total`` processes; at each ``(acknowledged, "leader"|"executor")`` kill one.

    ``"restart-executor"`` starts the last killed executor again at once, so it
    hands back what the ledger still assigns to it (or registers anew).

    Before a second leader kill the previous victim is restarted (a 3-server
    colony keeps its quorum); with ``restart_server`` the last victim is
    restarted at the end and must catch up.
    """
    report = ChaosReport()
    started = time.monotonic()
    certificate = cluster.submitter_certificate
    if certificate is None:
        raise AssertionError("the cluster has no submitter")
    next_index = [0]
    last_ack = [time.monotonic()]
    victim: Node | None = None

    async with connect(
        key=cluster.submitter_keys,
        certificate=certificate,
        colony=cluster.colony_dir,
        bootstrap=[s.address for s in cluster.servers],
        timeout_s=30.0,
    ) as colony:

        async def submitter() -> None:
            while next_index[0] < total:
                i = next_index[0]
                next_index[0] += 1
                report.submitted += 1
                process = await colony.submit(spec(i, 10 + (i * 7) % 41))
                now = time.monotonic()
                report.ack_gap_s = max(report.ack_gap_s, now - last_ack[0])
                last_ack[0] = now
                report.acknowledged.append(process.id)
                await trio.sleep(pace_s)

        async with trio.open_nursery() as nursery:
            for _ in range(SUBMITTERS):
                nursery.start_soon(submitter)
            for threshold, what in sorted(plan):
                while len(report.acknowledged) < threshold:
                    await trio.sleep(0.005)
                if what == "leader":
                    if victim is not None:
                        await trio.to_thread.run_sync(cluster.start, [victim])
                    victim = await trio.to_thread.run_sync(cluster.wait_leader)
                    report.killed_leaders.append(victim.name)
                    await _measure_failover(cluster, victim, report)
                elif what == "executor":
                    await _kill_busy_executor(cluster, report)
                else:  # "restart-executor": the last one killed, at once (within the stale time)
                    name = report.killed_executors[-1]
                    dead = next(n for n in cluster.executors if n.name == name)
                    await trio.to_thread.run_sync(cluster.start, [dead])
                    report.restarted_executors.append(name)
        await _wait_all_final(colony, report.acknowledged)
        if restart_server and victim is not None:
            report.caught_up = await _restart_and_catch_up(cluster, victim)
        await _check(colony, cluster, report)
        await _count_failover_paths(colony, cluster, report)
    report.seconds = time.monotonic() - started
    return report


async def _count_failover_paths(
    colony: ColonySession, cluster: Cluster, report: ChaosReport
) -> None:
    """The submitter's and the surviving executors' counters of failover paths taken."""
    counters = {
        "submitter_resent": colony.client.stats.resent,
        "submitter_lost_answers": colony.client.stats.lost_answers,
    }
    for node in cluster.executors:
        status = await _status(node)
        executor = (status or {}).get("executor", {})
        for group, prefix in (("client", "executor_"), ("stats", "executor_")):
            for key in ("resent", "lost_answers", "adopted", "reports_resent"):
                if key in executor.get(group, {}):
                    name = prefix + key
                    counters[name] = counters.get(name, 0) + int(executor[group][key])
    report.failover_paths = counters


async def _wait_all_final(colony: ColonySession, process_ids: list[str]) -> None:
    for process_id in process_ids:
        await colony.client.wait(process_id, timeout_s=60)


async def _restart_and_catch_up(cluster: Cluster, node: Node) -> bool:
    """Start ``node`` again; whether it applies up to the leader's commit, with equal counts."""
    await trio.to_thread.run_sync(cluster.start, [node])
    leader = await trio.to_thread.run_sync(cluster.wait_leader)
    target = await _status(leader)
    if target is None:
        return False
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        mine = await _status(node)
        ours = (mine or {}).get("ledger")
        if ours and ours["applied"] >= target["ledger"]["commit"]:
            return bool(ours["processes"] == target["ledger"]["processes"])
        await trio.sleep(0.1)
    return False


async def _check(colony: ColonySession, cluster: Cluster, report: ChaosReport) -> None:
    listed = {p["processid"] for p in await colony.client.processes(limit=10_000)}
    views: dict[str, dict[str, Any]] = {}
    for process_id in report.acknowledged:
        view = await colony.client.process(process_id)
        if view is None or view["state"] != "success" or process_id not in listed:
            report.lost.append(process_id)
        if view is not None:
            views[process_id] = view
    runs = read_runs(cluster.records)
    kill_times = {n.peer_id: n.kills for n in cluster.executors if n.kills}
    report.concurrent, report.reruns, report.cut_runs = concurrent_runs(runs, kill_times)
    report.foreign_closes = foreign_closes(views, runs)


def concurrent_runs(
    runs: dict[str, dict[str, Any]], kill_times: dict[str, list[float]]
) -> tuple[list[str], int, int]:
    """Processes with overlapping runs; how many processes ran more than once; runs cut short.

    A run without an end record was cut by its executor's SIGKILL and ends at
    the first kill after its start; with no such kill it never ends.
    """
    by_process: dict[str, list[tuple[float, float]]] = {}
    cut = 0
    for run in runs.values():
        if run["start"] is None:
            continue
        end = run["end"]
        if end is None:
            cut += 1
            kills = [t for t in kill_times.get(run["executor"], []) if t >= run["start"]]
            end = min(kills, default=float("inf"))
        by_process.setdefault(run["process"], []).append((run["start"], end))
    overlapping: list[str] = []
    reruns = 0
    for process_id, intervals in sorted(by_process.items()):
        intervals.sort()
        reruns += len(intervals) > 1
        latest_end = -float("inf")
        for start, end in intervals:
            if start < latest_end:
                overlapping.append(process_id)
                break
            latest_end = max(latest_end, end)
    return overlapping, reruns, cut


def foreign_closes(views: dict[str, dict[str, Any]], runs: dict[str, dict[str, Any]]) -> list[str]:
    """SUCCESS processes whose output no finished run of their assigned executor produced."""
    foreign = []
    for process_id, view in sorted(views.items()):
        if view["state"] != "success":
            continue
        output = view["output"]
        run = runs.get(output[1]) if len(output) == 2 and isinstance(output[1], str) else None
        if (
            run is None
            or run["process"] != process_id
            or run["executor"] != view["executor"]
            or run["end"] is None
            or output[0] != view["spec"]["args"][0]
        ):
            foreign.append(process_id)
    return foreign
