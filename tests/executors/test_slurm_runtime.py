"""The Slurm kind's tracking decisions for answers a test cluster rarely gives.

The real-cluster tests (test_slurm_real.py) cover the usual paths; these
replay recorded answer shapes through ``SlurmExecutor._command`` to reach
the rare ones: a job already purged from slurmctld (sacct answers, or
nobody does), a finished job squeue still lists, a failing ``sbatch``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from colonymesh.executors.base import ProcessFailed
from colonymesh.executors.slurm import SlurmConfig
from colonymesh.executors.slurm.runtime import (
    SlurmCommandError,
    SlurmExecutor,
    SlurmRuntimeConfig,
)
from colonymesh.node.spec import FunctionSpec, parse_function_spec

Answer = Callable[[list[str]], str]


class Scripted(SlurmExecutor):
    """A SlurmExecutor whose commands are answered by ``answer`` (argv -> stdout or raise)."""

    def __init__(self, tmp_path: Path, answer: Answer, **overrides: Any) -> None:
        settings: dict[str, Any] = {
            "sbatch": SlurmConfig(log_dir=str(tmp_path), commands={"sh": ("/bin/sh", "-c")}),
            "poll_initial_s": 0.1,
            "poll_max_s": 1.0,
        }
        settings.update(overrides)
        super().__init__(SlurmRuntimeConfig(**settings))
        self.answer = answer
        self.calls: list[list[str]] = []

    async def _command(self, argv: list[str]) -> str:
        self.calls.append(argv)
        await trio.sleep(0)
        return self.answer(argv)


class Context:
    def __init__(self) -> None:
        self.process_id = "p1"
        self.spec: FunctionSpec = parse_function_spec(
            {"funcname": "sh", "args": ["true"], "conditions": {"executortype": "hpc"}}
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


INVALID = SlurmCommandError("squeue exited 1: slurm_load_jobs error: Invalid job id specified")
SACCT = (
    "JobID|JobName|State|ExitCode|NodeList|Elapsed\n"
    "7|colonymesh-p1|FAILED|4:0|node1|00:00:01\n"
    "7.batch|batch|FAILED|4:0|node1|00:00:01\n"
)


def purged(sacct: str) -> Answer:
    def answer(argv: list[str]) -> str:
        match argv[0]:
            case "sbatch":
                return "7\n"
            case "squeue" | "scontrol":
                raise INVALID
            case "sacct":
                return sacct
            case "scancel":
                raise SlurmCommandError("scancel exited 1: Invalid job id specified")
        raise AssertionError(argv)

    return answer


async def test_a_purged_job_is_read_from_sacct(tmp_path: Path) -> None:
    kind = Scripted(tmp_path, purged(SACCT), use_sacct=True, keep_scripts=True)
    ctx = Context()
    with (
        trio.fail_after(5),
        pytest.raises(ProcessFailed, match="Slurm job 7 FAILED: exit status 4"),
    ):
        await kind.run(ctx)
    assert ctx.attributes == {"slurm.jobid": "7", "slurm.nodelist": "node1"}
    assert (tmp_path / "p1.sbatch").read_text().startswith("#!/bin/bash")
    assert [
        "sbatch",
        "--parsable",
        f"--input={tmp_path}/p1.input.json",
        f"{tmp_path}/p1.sbatch",
    ] in kind.calls


async def test_a_job_nobody_knows_fails_after_the_limit(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    kind = Scripted(tmp_path, purged(""), use_sacct=True, unknown_for_s_max=30.0)
    started = trio.current_time()
    with pytest.raises(ProcessFailed, match="no longer known to Slurm"):
        await kind.run(Context())
    assert 30.0 < trio.current_time() - started < 40.0
    assert any(argv[0] == "scancel" for argv in kind.calls)  # and it tried to cancel


async def test_a_finished_job_squeue_still_lists_is_finished(tmp_path: Path) -> None:
    def answer(argv: list[str]) -> str:
        match argv[0]:
            case "sbatch":
                return "8;cluster\n"
            case "squeue":
                return "8|COMPLETED|None|node1\n"
            case "scontrol":
                return (
                    "JobId=8 JobName=x JobState=COMPLETED Reason=None ExitCode=0:0 NodeList=node1\n"
                )
        raise AssertionError(argv)

    (tmp_path / "p1_8.out").write_text("hi\n[1]\n")
    ctx = Context()
    with trio.fail_after(5):
        assert await Scripted(tmp_path, answer).run(ctx) == [1]
    assert "hi" in "\n".join(ctx.logs)


async def test_sbatch_refusing_the_job_fails_the_process(tmp_path: Path) -> None:
    def answer(argv: list[str]) -> str:
        raise SlurmCommandError("sbatch exited 1: Batch job submission failed: Invalid partition")

    kind = Scripted(tmp_path, answer)
    with pytest.raises(ProcessFailed, match=r"sbatch failed: .*Invalid partition"):
        await kind.run(Context())
    assert [argv[0] for argv in kind.calls] == ["sbatch"]  # nothing to cancel
