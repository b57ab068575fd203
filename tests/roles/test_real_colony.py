"""A colony of real OS processes on loopback: 3 ``node run`` servers, ``executor run`` executors.

The basic test submits through the SDK and reads the results back, and
checks what ``node status`` says about the ledger and the executor. The
chaos tests (see ``chaos.py``) SIGKILL the Raft leader and an executor under
load and count the three zeros: processes lost, run twice concurrently,
closed by a non-assignee. The small one runs in the default suite; the
200-process one is ``slow``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from chaos import ChaosReport, run_chaos, spec
from rolekit import Cluster, make_cluster, wait_for

from colonymesh.node.sdk import connect
from support.cli import run


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    made = make_cluster(tmp_path, servers=3, executors=2)
    try:
        yield made
    finally:
        made.close()


def _start(cluster: Cluster) -> None:
    cluster.start(cluster.servers)
    cluster.wait_leader()
    cluster.start(cluster.executors)
    count = len(cluster.executors)
    wait_for("executors registered", lambda: cluster.registered_executors() == count, 30)


async def test_submissions_run_on_real_processes(cluster: Cluster) -> None:
    _start(cluster)
    assert cluster.submitter_certificate is not None
    follower = next(s for s in cluster.servers if s is not cluster.leader())
    async with connect(  # knowing only a follower: its not-leader answer says where the leader is
        key=cluster.submitter_keys,
        certificate=cluster.submitter_certificate,
        colony=cluster.colony_dir,
        bootstrap=[follower.address],
    ) as colony:
        processes = [await colony.submit(spec(i, 5)) for i in range(8)]
        for process in processes:
            await process.wait(timeout_s=30)
        assert [p.state for p in processes] == ["success"] * 8
        assert [p.output[0] for p in processes] == list(range(8))
        executors = {p.view["executor"] for p in processes}
        assert executors <= {e.peer_id for e in cluster.executors}
    leader = cluster.leader()
    assert leader is not None
    text = run("node", "status", "--state-dir", leader.state).stdout
    assert "ledger:       raft leader" in text
    document = json.loads(
        run("node", "status", "--json", "--config", leader.folder / "node.toml").stdout
    )
    assert document["ledger"]["leader"] == leader.peer_id
    assert document["ledger"]["processes"]["success"] == 8
    executor = cluster.executors[0].status()["executor"]
    assert executor["name"] == "e1" and executor["type"] == "python"


def test_executor_run_refuses_kinds_not_available(cluster: Cluster) -> None:
    config = cluster.executors[0].folder / "node.toml"
    result = run("executor", "run", "--config", config, "--kind", "slurm")
    assert result.code != 0 and "not available" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = run("executor", "run", "--config", config, "--functions", "no_such_module:x")
    assert result.code != 0 and "cannot import no_such_module" in result.stderr
    result = run("executor", "run", "--config", config, "--functions", "x:y", "--type", "slurm")
    assert result.code != 0 and "executor type 'python', not 'slurm'" in result.stderr
    server_config = cluster.servers[0].folder / "node.toml"
    result = run("executor", "run", "--config", server_config, "--functions", "roletasks:functions")
    assert result.code != 0 and "needs a certificate with the executor role" in result.stderr


def _assert_three_zeros(report: ChaosReport, total: int) -> None:
    print(json.dumps(report.figures()))
    assert len(report.acknowledged) == total
    assert report.lost == [], report.lost
    assert report.concurrent == [], report.concurrent
    assert report.foreign_closes == [], report.foreign_closes
    if report.killed_executors:  # a killed executor's work ran again elsewhere
        assert report.reruns >= 1
    assert len(report.failovers_s) == len(report.killed_leaders)
    assert all(f < 3.0 for f in report.failovers_s), report.failovers_s  # election timeout 0.5 s


def _assert_dead_executors_dropped(cluster: Cluster, report: ChaosReport) -> None:
    alive = len(cluster.executors) - len(report.killed_executors) + len(report.restarted_executors)
    wait_for("the dead executors dropped", lambda: cluster.registered_executors() == alive, 10)


async def test_leader_and_executor_killed_under_load(tmp_path: Path) -> None:
    cluster = make_cluster(tmp_path, servers=3, executors=3)
    try:
        _start(cluster)
        report = await run_chaos(
            cluster, total=200, plan=[(50, "leader"), (110, "executor")], restart_server=True
        )
        _assert_three_zeros(report, 200)
        _assert_dead_executors_dropped(cluster, report)
        assert report.caught_up  # the old leader, restarted, applied up to the commit
    finally:
        cluster.close()


@pytest.mark.slow
async def test_repeated_leader_kills_and_executor_kills_soak(tmp_path: Path) -> None:
    cluster = make_cluster(tmp_path, servers=3, executors=4)
    try:
        _start(cluster)
        plan = [(100, "leader"), (250, "executor"), (251, "restart-executor"), (400, "leader")]
        plan += [(550, "executor"), (700, "leader")]
        report = await run_chaos(cluster, total=900, plan=plan, restart_server=True, pace_s=0.01)
        _assert_three_zeros(report, 900)
        _assert_dead_executors_dropped(cluster, report)
        assert report.caught_up
    finally:
        cluster.close()
