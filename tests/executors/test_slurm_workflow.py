"""Issue 8's end-to-end check: one workflow across a Python function, a local process and a Slurm job.

A colony on loopback (3 Raft servers, a submitter) with three executors of
three types and kinds: ``python`` (PythonFunctions), ``local``
(ProcessExecutor) and ``hpc`` (SlurmExecutor on the real single-node Slurm
that ``.ci/slurm/start.sh`` starts; skipped when not root, failed when root
and Slurm cannot start). Outputs flow from step to step, and the logs and
attributes are read back from the submitter, another peer.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from colonymesh.executors.process import ProcessConfig, ProcessExecutor
from colonymesh.executors.python import PythonFunctions
from colonymesh.executors.slurm import SlurmConfig
from colonymesh.executors.slurm.runtime import SlurmExecutor, SlurmRuntimeConfig
from colonymesh.node.colony.local import ExecutorGroup, LocalColonyConfig, open_local_colony

START = Path(__file__).resolve().parents[2] / ".ci" / "slurm" / "start.sh"

SUM = (
    "import json, sys; xs = json.load(sys.stdin); "
    "print('summing', xs, file=sys.stderr); print(json.dumps(sum(xs)))"
)
SQUARE = "import json, sys; [x] = json.load(sys.stdin); print('squaring', x); print(x * x)"


@pytest.fixture(scope="session")
def slurm() -> None:
    if os.geteuid() != 0:
        pytest.skip("a real Slurm needs root to start its daemons (.ci/slurm/start.sh)")
    done = subprocess.run(["bash", str(START)], capture_output=True, text=True, timeout=180)
    if done.returncode != 0:
        pytest.fail(f"cannot start Slurm: {done.stderr.strip() or done.stdout.strip()}")


def numbers_functions() -> PythonFunctions:
    functions = PythonFunctions()

    @functions.function
    def numbers(n: int) -> list[int]:
        """1..n"""
        return list(range(1, n + 1))

    return functions


async def test_workflow_runs_on_python_process_and_slurm_executors(
    slurm: None, tmp_path: Path
) -> None:
    process_kind = ProcessExecutor(
        ProcessConfig(
            commands={"sum": (sys.executable, "-c", SUM)},
            workdir_root=str(tmp_path),
            log_interval_s=0.1,
        )
    )
    slurm_kind = SlurmExecutor(
        SlurmRuntimeConfig(
            sbatch=SlurmConfig(
                log_dir=str(tmp_path / "slurm"),
                commands={"square": (sys.executable, "-c", SQUARE)},
            ),
            poll_initial_s=0.1,
            poll_max_s=1.0,
            tail_interval_s=0.1,
            log_interval_s=0.1,
        )
    )
    config = LocalColonyConfig(
        state_dir=tmp_path / "colony",
        functions=numbers_functions(),
        executors=1,
        executor_groups=(
            ExecutorGroup("local", process_kind),
            ExecutorGroup("hpc", slurm_kind),
        ),
    )
    workflow = {
        "colonyname": "local",
        "functionspecs": [
            {"nodename": "numbers", "funcname": "numbers", "args": [4],
             "conditions": {"executortype": "python"}},
            {"nodename": "sum", "funcname": "sum",
             "conditions": {"executortype": "local", "dependencies": ["numbers"]}},
            {"nodename": "square", "funcname": "square",
             "conditions": {"executortype": "hpc", "dependencies": ["sum"]}},
        ],
    }  # fmt: skip
    with trio.fail_after(120):
        async with open_local_colony(config) as colony:
            # Only gather inside the colony: a failed check there would be buried in
            # nested exception groups; the checks run after it has closed.
            client = colony.client
            wid = await client.submit_workflow(workflow)
            try:
                finished = await client.wait_workflow(wid, timeout_s=90)
            except trio.TooSlowError:
                finished = {"state": "not final", "processes": await client.processes("", "", 10)}
            steps = {p["spec"]["nodename"]: p for p in finished["processes"]}
            # Logs and attributes, read from the submitter peer through the servers.
            summed = await client.process(steps["sum"]["processid"])
            squared = await client.process(steps["square"]["processid"])
    assert finished["state"] == "success", finished
    assert steps["numbers"]["output"] == [1, 2, 3, 4]
    assert steps["sum"]["input"] == [1, 2, 3, 4] and steps["sum"]["output"] == [10]
    assert steps["square"]["input"] == [10] and steps["square"]["output"] == [100]
    assert len({steps[name]["executor"] for name in steps}) == 3  # three executor peers
    assert summed is not None and squared is not None
    sum_lines = [m["message"] for m in summed["logs"]]
    square_lines = [m["message"] for m in squared["logs"]]
    assert any("[stderr] summing [1, 2, 3, 4]" in m for m in sum_lines), sum_lines
    assert any("squaring 10" in m for m in square_lines), square_lines
    assert squared["attributes"]["slurm.jobid"].isdigit()
    assert squared["attributes"]["slurm.nodelist"]
