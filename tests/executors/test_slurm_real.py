"""The Slurm executor kind against a real single-node Slurm (Debian's slurmctld, slurmd, munge).

The session fixture starts the cluster with ``.ci/slurm/start.sh`` (idempotent).
Not root: skipped, since the daemons and their state need root. Root but
Slurm cannot be installed or started: the tests FAIL with the script's
reason; nothing here fakes a Slurm.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from colonymesh.executors.base import ProcessFailed
from colonymesh.executors.slurm import SlurmConfig, SlurmJobState, parse_scontrol_show_job
from colonymesh.executors.slurm.runtime import (
    ATTRIBUTE_JOB_ID,
    ATTRIBUTE_NODE_LIST,
    SlurmExecutor,
    SlurmRuntimeConfig,
)
from colonymesh.node.spec import FunctionSpec, parse_function_spec

START = Path(__file__).resolve().parents[2] / ".ci" / "slurm" / "start.sh"


@pytest.fixture(scope="session")
def slurm() -> str:
    """A running single-node Slurm; its node name."""
    if os.geteuid() != 0:
        pytest.skip("a real Slurm needs root to start its daemons (.ci/slurm/start.sh)")
    done = subprocess.run(["bash", str(START)], capture_output=True, text=True, timeout=180)
    if done.returncode != 0:
        pytest.fail(f"cannot start Slurm: {done.stderr.strip() or done.stdout.strip()}")
    return socket.gethostname().split(".")[0]


class Context:
    def __init__(self, spec: dict[str, Any], process_id: str) -> None:
        self.process_id = process_id
        self.spec: FunctionSpec = parse_function_spec(
            {"conditions": {"executortype": "hpc"}, **spec}
        )
        self.input: list[Any] = []
        self.logs: list[str] = []
        self.attributes: dict[str, str] = {}

    async def log(self, message: str) -> None:
        self.logs.append(message)

    async def set_attribute(self, key: str, value: str) -> None:
        self.attributes[key] = value

    async def add_child(self, spec: dict[str, Any], *, insert: bool = True) -> str:
        raise NotImplementedError

    @property
    def lines(self) -> list[str]:
        return [line for message in self.logs for line in message.split("\n")]


def make_executor(tmp_path: Path) -> SlurmExecutor:
    return SlurmExecutor(
        SlurmRuntimeConfig(
            sbatch=SlurmConfig(
                log_dir=str(tmp_path / "slurm"),
                commands={"py": (sys.executable, "-c"), "sh": ("/bin/sh", "-c"), "echo": ("echo",)},
            ),
            poll_initial_s=0.1,
            poll_max_s=1.0,
            tail_interval_s=0.1,
            log_interval_s=0.1,
        )
    )


def pid(name: str) -> str:
    return f"{name}-{os.getpid()}-{time.monotonic_ns() % 10**9}"


def job_record(job_id: str) -> Any:
    text = subprocess.run(
        ["scontrol", "--oneliner", "show", "job", job_id],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    [job] = parse_scontrol_show_job(text)
    return job


async def wait_attribute(ctx: Context, key: str, timeout_s: float = 30) -> str:
    with trio.fail_after(timeout_s):
        while key not in ctx.attributes:
            await trio.sleep(0.05)
    return ctx.attributes[key]


async def wait_state(job_id: str, state: SlurmJobState, timeout_s: float = 30) -> None:
    with trio.fail_after(timeout_s):
        while job_record(job_id).state != state:
            await trio.sleep(0.1)


async def test_a_job_that_succeeds_gives_its_output_logs_and_attributes(
    slurm: str, tmp_path: Path
) -> None:
    script = "import os; print('hello from', os.environ['COLONYMESH_PROCESS_ID']); print('[6, 7]')"
    ctx = Context({"funcname": "py", "args": [script]}, pid("ok"))
    with trio.fail_after(60):
        output = await make_executor(tmp_path).run(ctx)
    assert output == [6, 7]
    assert f"hello from {ctx.process_id}" in ctx.lines
    assert ctx.attributes[ATTRIBUTE_NODE_LIST] == slurm
    job = job_record(ctx.attributes[ATTRIBUTE_JOB_ID])
    assert job.state is SlurmJobState.COMPLETED and job.exit_code.status == 0
    files = sorted(p.name for p in (tmp_path / "slurm").iterdir())
    job_id = ctx.attributes[ATTRIBUTE_JOB_ID]
    assert files == [f"{ctx.process_id}_{job_id}.err", f"{ctx.process_id}_{job_id}.out"]


async def test_parents_outputs_are_the_jobs_stdin(slurm: str, tmp_path: Path) -> None:
    script = "import json, sys; print([x * 2 for x in json.load(sys.stdin)])"
    ctx = Context({"funcname": "py", "args": [script]}, pid("stdin"))
    ctx.input = [1, 2, 3]
    with trio.fail_after(60):
        assert await make_executor(tmp_path).run(ctx) == [2, 4, 6]


async def test_a_job_that_fails_reports_its_exit_code_and_stderr(
    slurm: str, tmp_path: Path
) -> None:
    ctx = Context({"funcname": "sh", "args": ["echo working; echo oops >&2; exit 3"]}, pid("bad"))
    with trio.fail_after(60), pytest.raises(ProcessFailed) as failed:
        await make_executor(tmp_path).run(ctx)
    job_id = ctx.attributes[ATTRIBUTE_JOB_ID]
    assert failed.value.errors[0] == f"Slurm job {job_id} FAILED: exit status 3"
    tail = failed.value.errors[1].splitlines()
    assert tail[0] == "stderr tail:" and "oops" in tail[1:]
    assert "working" in ctx.lines and "[stderr] oops" in ctx.lines
    assert job_record(job_id).exit_code.status == 3


async def test_cancelling_the_process_scancels_the_job(slurm: str, tmp_path: Path) -> None:
    ctx = Context({"funcname": "sh", "args": ["echo started; sleep 300"]}, pid("cancel"))
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(make_executor(tmp_path).run, ctx)
            job_id = await wait_attribute(ctx, ATTRIBUTE_JOB_ID)
            await wait_state(job_id, SlurmJobState.RUNNING)
            nursery.cancel_scope.cancel()
        # run() returned only after Slurm reported the job finished
        assert job_record(job_id).state is SlurmJobState.CANCELLED


async def test_maxexectime_cancels_the_job_in_slurm(slurm: str, tmp_path: Path) -> None:
    """The runtime enforces maxexectime by cancelling run() at the deadline."""
    ctx = Context({"funcname": "sh", "args": ["sleep 300"]}, pid("maxexec"))
    started = time.monotonic()
    with trio.move_on_after(3) as deadline:
        await make_executor(tmp_path).run(ctx)
    assert deadline.cancelled_caught
    assert time.monotonic() - started < 20
    assert job_record(ctx.attributes[ATTRIBUTE_JOB_ID]).state is SlurmJobState.CANCELLED


async def test_a_job_cancelled_in_slurm_fails_the_process(slurm: str, tmp_path: Path) -> None:
    ctx = Context({"funcname": "sh", "args": ["sleep 300"]}, pid("scancel"))
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:

            async def scancel_it() -> None:
                job_id = await wait_attribute(ctx, ATTRIBUTE_JOB_ID)
                await wait_state(job_id, SlurmJobState.RUNNING)
                await trio.run_process(["scancel", job_id])

            nursery.start_soon(scancel_it)
            with pytest.raises(ProcessFailed, match="was cancelled in Slurm"):
                await make_executor(tmp_path).run(ctx)


async def test_shell_words_in_args_reach_the_job_as_data(slurm: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    word = f"$(touch {marker}); `touch {marker}` | touch {marker}"
    ctx = Context({"funcname": "echo", "args": [word]}, pid("inert"))
    with trio.fail_after(60):
        assert await make_executor(tmp_path).run(ctx) == [word]
    assert not marker.exists()


@pytest.mark.slow
async def test_a_job_over_its_walltime_times_out(slurm: str, tmp_path: Path) -> None:
    """Slurm keeps time limits in whole minutes: walltime 1 s is a 1-minute limit."""
    conditions = {"executortype": "hpc", "walltime": 1}
    ctx = Context({"funcname": "sh", "args": ["sleep 600"], "conditions": conditions}, pid("wall"))
    started = time.monotonic()
    with trio.fail_after(240), pytest.raises(ProcessFailed, match="exceeded its walltime"):
        await make_executor(tmp_path).run(ctx)
    job = job_record(ctx.attributes[ATTRIBUTE_JOB_ID])
    assert job.state is SlurmJobState.TIMEOUT
    print(f"walltime 1 s: TIMEOUT after {time.monotonic() - started:.1f} s")
