"""Issue 8's end-to-end check: one workflow across a Python function, a local process and a Slurm job.

Everything runs as a user would run it: a local colony of real processes
(a ``node run`` server, three ``colonymesh executor run --kind KIND
--executor-config executor.toml`` peers) and the CLI with a client profile
for the submitter, another peer. The three executors have three types and
kinds: ``python`` (a registry, isolated in worker processes), ``local``
(registered command lines) and ``hpc`` (batch jobs on the real single-node
Slurm that ``.ci/slurm/start.sh`` starts; skipped when not root, failed when
root and Slurm cannot start). Outputs flow from step to step; logs and
attributes are read back from the submitter; ``executor ls`` shows each
executor's capabilities; a malformed spec for each executor type is refused
at submission with the field named. A second test runs a step on an
``executor run --kind kubernetes`` peer whose cluster is kubefake's API
server. Both are marked ``slow`` (real processes, about 45 s and 15 s):
``pytest tests/executors -m slow`` runs them, as CI does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli import fails, ok

START = Path(__file__).resolve().parents[2] / ".ci" / "slurm" / "start.sh"
HERE = Path(__file__).parent

SUM = (
    "import json, sys; xs = json.load(sys.stdin); "
    "print('summing', xs, file=sys.stderr); print(json.dumps(sum(xs)))"
)
SQUARE = "import json, sys; [x] = json.load(sys.stdin); print('squaring', x); print(x * x)"


@pytest.fixture(scope="module")
def slurm() -> None:
    if os.geteuid() != 0:
        pytest.skip("a real Slurm needs root to start its daemons (.ci/slurm/start.sh)")
    done = subprocess.run(["bash", str(START)], capture_output=True, text=True, timeout=180)
    if done.returncode != 0:
        pytest.fail(f"cannot start Slurm: {done.stderr.strip() or done.stdout.strip()}")


@pytest.fixture
def colony(slurm: None, tmp_path: Path) -> Iterator[object]:
    from executor_kit import Capabilities, Gpu, make_colony

    kit = make_colony(tmp_path)
    pythonpath = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH", "")]))
    kit.add_executor(
        "py1", executor_type="python", kind="python", location="lab-rack-1",
        capabilities=Capabilities(cpu_millicores=2000, mem_bytes=4 << 30, storage_bytes=10 << 30),
        executor_toml='[python]\nfunctions = "exectasks:functions"\nisolation = "subprocess"\n',
        env={"PYTHONPATH": pythonpath},
    )  # fmt: skip
    kit.add_executor(
        "proc1", executor_type="local", kind="process", location="lab-rack-2",
        capabilities=Capabilities(cpu_millicores=1000, mem_bytes=1 << 30),
        executor_toml=(
            f"[process]\nworkdir_root = {json.dumps(str(tmp_path / 'work'))}\n"
            f"[process.commands]\nsum = {json.dumps([sys.executable, '-c', SUM])}\n"
        ),
    )  # fmt: skip
    kit.add_executor(
        "hpc1", executor_type="hpc", kind="slurm", location="cluster-a",
        capabilities=Capabilities(
            cpu_millicores=64000, mem_bytes=256 << 30, storage_bytes=1 << 40,
            gpu=Gpu(name="a100", count=4, mem_bytes=40 << 30),
        ),
        executor_toml=(
            f"[slurm]\nlog_dir = {json.dumps(str(tmp_path / 'slurm'))}\npartition = \"debug\"\n"
            "poll_interval_s = 0.1\npoll_max_s = 1.0\ntail_interval_s = 0.1\nlog_interval_s = 0.1\n"
            f"[slurm.commands]\nsquare = {json.dumps([sys.executable, '-c', SQUARE])}\n"
        ),
    )  # fmt: skip
    (tmp_path / "work").mkdir()
    try:
        kit.start([kit.server])
        kit.start(list(kit.executors.values()))
        from executor_kit import wait_for

        wait_for("three executors registered", lambda: kit.registered() == 3, 60)
        yield kit
    finally:
        kit.close()


def cli(*args: str | Path, profile: Path) -> dict[str, object]:
    result = ok(*args, "--json", "--profile", profile)
    document: dict[str, object] = json.loads(result.stdout)
    return document


@pytest.mark.slow  # ~45 s of real processes; CI runs it with -m slow
def test_workflow_runs_on_python_process_and_slurm_executors(
    colony: object, tmp_path: Path
) -> None:
    from executor_kit import LocalColony

    assert isinstance(colony, LocalColony)
    me = colony.profile
    workflow = {
        "colonyname": "lab",
        "functionspecs": [
            {"nodename": "numbers", "funcname": "numbers", "args": [4],
             "conditions": {"executortype": "python"}},
            {"nodename": "sum", "funcname": "sum",
             "conditions": {"executortype": "local", "dependencies": ["numbers"]}},
            {"nodename": "square", "funcname": "square",
             "conditions": {"executortype": "hpc", "dependencies": ["sum"], "cpu": "1",
                            "mem": "100Mi", "walltime": 120}},
        ],
    }  # fmt: skip
    (tmp_path / "wf.json").write_text(json.dumps(workflow))
    finished = cli("workflow", "submit", tmp_path / "wf.json", "--wait", "--timeout", "120", profile=me)  # fmt: skip
    assert finished["state"] == "success", json.dumps(finished, indent=1)
    steps = {p["spec"]["nodename"]: p for p in finished["processes"]}  # type: ignore[attr-defined]
    assert steps["numbers"]["output"] == [1, 2, 3, 4]
    assert steps["sum"]["input"] == [1, 2, 3, 4] and steps["sum"]["output"] == [10]
    assert steps["square"]["input"] == [10] and steps["square"]["output"] == [100]
    peers = {name: node.keys.peer_id for name, node in colony.executors.items()}
    assert steps["numbers"]["executor"] == peers["py1"]
    assert steps["sum"]["executor"] == peers["proc1"]
    assert steps["square"]["executor"] == peers["hpc1"]

    # Logs and attributes, read by the submitter peer.
    sum_logs = cli("log", "get", steps["sum"]["processid"], profile=me)["logs"]
    square_logs = cli("log", "get", steps["square"]["processid"], profile=me)["logs"]
    assert any("[stderr] summing [1, 2, 3, 4]" in m["message"] for m in sum_logs), sum_logs  # type: ignore[attr-defined]
    assert any("squaring 10" in m["message"] for m in square_logs), square_logs  # type: ignore[attr-defined]
    squared = cli("process", "get", steps["square"]["processid"], profile=me)
    attributes = squared["attributes"]
    assert isinstance(attributes, dict)
    assert attributes["slurm.jobid"].isdigit() and attributes["slurm.nodelist"]

    # Capabilities from the certificates, as registered in the ledger.
    listed = {e["name"]: e for e in cli("executor", "ls", profile=me)["executors"]}  # type: ignore[attr-defined]
    assert sorted(listed) == ["hpc1", "proc1", "py1"]
    hpc = listed["hpc1"]
    assert (hpc["executortype"], hpc["location"]) == ("hpc", "cluster-a")
    assert (hpc["cpu_millicores"], hpc["mem_bytes"], hpc["storage_bytes"]) == (64000, 256 << 30, 1 << 40)  # fmt: skip
    assert hpc["gpu"] == {"name": "a100", "count": 4}
    assert listed["py1"]["location"] == "lab-rack-1" and "numbers" in listed["py1"]["functions"]
    assert listed["proc1"]["functions"] == ["sum"]
    table = ok("executor", "ls", "--profile", me).stdout
    assert "cluster-a" in table and "64000m" in table

    # A malformed spec for each executor type is refused at submission, the field named.
    for executor_type in ("python", "local", "hpc"):
        for conditions, field in (
            ({"cpu": "2 cores"}, "conditions.cpu"),
            ({"walltime": -5}, "conditions.walltime"),
            ({"gpu": {"count": 1, "model": "a100"}}, "conditions.gpu.model"),
        ):
            spec = {"funcname": "sum", "conditions": {"executortype": executor_type, **conditions}}
            (tmp_path / "bad.json").write_text(json.dumps(spec))
            line = fails("function", "submit", tmp_path / "bad.json", "--profile", me)
            assert field in line, line

    # A clean shutdown unregisters every executor and exits 0.
    for node in colony.executors.values():
        assert node.stop() == 0, node.log()[-2000:]
    assert colony.registered() == 0


@pytest.mark.slow  # real processes; CI runs it with -m slow
def test_workflow_step_on_a_kubernetes_executor_peer(tmp_path: Path) -> None:
    """``executor run --kind kubernetes`` as a peer, its cluster the kubefake API server.

    No cluster is reachable here: the Kubernetes step's Job goes to kubefake
    (strict OpenAPI validation, containers' commands run as local processes).
    """
    from executor_kit import Capabilities, make_colony, wait_for

    kubefake = pytest.importorskip("kubefake")
    kit = make_colony(tmp_path)
    pythonpath = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH", "")]))
    script = (
        "import json, os; xs = json.loads(os.environ['COLONYMESH_INPUT']);"
        "print('pod got', xs); print(json.dumps(sum(xs) * 10))"
    )
    with kubefake.FakeCluster(tmp_path / "cluster") as cluster:
        kubeconfig = cluster.kubeconfig(tmp_path / "kubeconfig")
        kit.add_executor(
            "py1", executor_type="python", kind="python", location="edge",
            capabilities=Capabilities(cpu_millicores=1000),
            executor_toml='[python]\nfunctions = "exectasks:functions"\n',
            env={"PYTHONPATH": pythonpath},
        )  # fmt: skip
        kit.add_executor(
            "k8s1", executor_type="k8s", kind="kubernetes", location="cloud",
            capabilities=Capabilities(cpu_millicores=8000, mem_bytes=32 << 30),
            executor_toml=(
                f'[kubernetes]\nnamespace = "colony"\nkubeconfig = {json.dumps(str(kubeconfig))}\n'
                "poll_interval_s = 0.2\n[kubernetes.commands]\n"
                f"tensum = {{ argv = {json.dumps([sys.executable, '-c', script])}, image = \"python:3.11\" }}\n"
            ),
        )  # fmt: skip
        try:
            kit.start([kit.server])
            kit.start(list(kit.executors.values()))
            wait_for("two executors registered", lambda: kit.registered() == 2, 60)
            workflow = {
                "colonyname": "lab",
                "functionspecs": [
                    {"nodename": "numbers", "funcname": "numbers", "args": [3],
                     "conditions": {"executortype": "python"}},
                    {"nodename": "tensum", "funcname": "tensum",
                     "conditions": {"executortype": "k8s", "dependencies": ["numbers"],
                                    "cpu": "250m", "mem": "64Mi", "walltime": 60}},
                ],
            }  # fmt: skip
            (tmp_path / "wf.json").write_text(json.dumps(workflow))
            finished = cli("workflow", "submit", tmp_path / "wf.json", "--wait", "--timeout", "90", profile=kit.profile)  # fmt: skip
            assert finished["state"] == "success", json.dumps(finished, indent=1)
            steps = {p["spec"]["nodename"]: p for p in finished["processes"]}  # type: ignore[attr-defined]
            assert steps["tensum"]["output"] == [60]
            pid = steps["tensum"]["processid"]
            logs = cli("log", "get", pid, profile=kit.profile)["logs"]
            assert any("pod got [1, 2, 3]" in m["message"] for m in logs), logs  # type: ignore[attr-defined]
            attributes = cli("process", "get", pid, profile=kit.profile)["attributes"]
            assert isinstance(attributes, dict) and attributes["kubernetes.namespace"] == "colony"
            [job] = [path for method, path in cluster.requests if method == "POST"]
            assert job == "/apis/batch/v1/namespaces/colony/jobs" and cluster.refusals == []
            assert [d[2] for d in cluster.deletions] == ["Background"]
        finally:
            kit.close()
