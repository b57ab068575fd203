"""Python functions in worker processes: a hang or crash costs a worker, never the executor."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from colonymesh.executors.base import ProcessFailed
from colonymesh.executors.pool import IsolatedFunctions
from colonymesh.node.spec import FunctionSpec, parse_function_spec

exectasks = pytest.importorskip("exectasks")


class Context:
    def __init__(
        self, funcname: str, args: list[Any] | None = None, process_id: str = "p1"
    ) -> None:
        self.process_id = process_id
        self.spec: FunctionSpec = parse_function_spec(
            {"funcname": funcname, "args": args or [], "conditions": {"executortype": "py"}}
        )
        self.input: list[Any] = []
        self.logs: list[str] = []
        self.attributes: dict[str, str] = {}
        self.fs_root = ""
        self.fs_mount = ""

    async def log(self, message: str) -> None:
        self.logs.append(message)

    async def set_attribute(self, key: str, value: str) -> None:
        self.attributes[key] = value

    async def add_child(self, spec: dict[str, Any], *, insert: bool = True) -> str:
        return "child-1"

    @property
    def lines(self) -> list[str]:
        return [line for message in self.logs for line in message.split("\n")]


def pool(workers: int = 1) -> IsolatedFunctions:
    return IsolatedFunctions(
        "exectasks:functions",
        exectasks.functions.functions(),
        workers=workers,
        grace_s=0.5,
        log_interval_s=0.05,
    )


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


async def test_a_call_returns_its_output_logs_and_attributes() -> None:
    kind = pool()
    ctx = Context("chatty")
    ctx.input = [1, 2, 3]
    with trio.fail_after(30):
        assert await kind.run(ctx) == [3, 2, 1]
    assert [x for x in ctx.lines if "line" in x][:2] == ["printed line", "logged line"]
    assert "raw fd line" in ctx.lines  # fd 1 is the log stream, not the protocol
    assert ctx.attributes == {"where": "worker"}
    with trio.fail_after(30):
        assert await kind.run(Context("double", [21])) == [42]
    assert kind.started == 1  # the worker was reused


async def test_the_worker_is_another_process() -> None:
    with trio.fail_after(30):
        [worker_pid] = await pool().run(Context("pid"))
    assert worker_pid != os.getpid()


async def test_an_exception_fails_the_process_and_keeps_the_worker() -> None:
    kind = pool()
    with trio.fail_after(30), pytest.raises(ProcessFailed, match="ValueError: bad input"):
        await kind.run(Context("boom", ["bad input"]))
    with trio.fail_after(30):
        assert await kind.run(Context("numbers", [2])) == [1, 2]
    assert kind.started == 1


async def test_a_crash_kills_only_its_worker() -> None:
    kind = pool()
    with trio.fail_after(30), pytest.raises(ProcessFailed) as failed:
        await kind.run(Context("crash"))
    assert failed.value.errors[0] == "the worker process was killed by SIGSEGV"
    assert "about to crash" in failed.value.errors[1]
    with trio.fail_after(30):
        assert await kind.run(Context("numbers", [3])) == [1, 2, 3]
    assert kind.started == 2


async def test_a_stopped_run_kills_its_hanging_worker(tmp_path: Path) -> None:
    """maxexectime and cancel reach the kind as a cancelled run()."""
    kind = pool()
    marker = tmp_path / "pid"
    started = time.monotonic()
    with trio.move_on_after(3) as deadline:
        await kind.run(Context("hang", [str(marker)]))
    assert deadline.cancelled_caught
    worker_pid = int(marker.read_text())
    assert not alive(worker_pid), "the hanging worker survived its run"
    assert time.monotonic() - started < 10
    assert kind.killed == 1
    with trio.fail_after(30):
        assert await kind.run(Context("numbers", [1])) == [1]


async def test_workers_run_calls_in_parallel(tmp_path: Path) -> None:
    kind = pool(workers=2)
    pids: list[int] = []

    async def one() -> None:
        [value] = await kind.run(Context("pid"))
        pids.append(value)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(one)
            nursery.start_soon(one)
    assert len(set(pids)) == 2


async def test_an_unknown_function_is_refused_without_a_worker() -> None:
    kind = pool()
    with pytest.raises(ProcessFailed, match="no function 'nope'"):
        await kind.run(Context("nope"))
    assert kind.started == 0


async def test_a_registry_that_cannot_load_fails_clearly() -> None:
    kind = IsolatedFunctions("no_such_module_here:functions", {"x": ""}, grace_s=0.5)
    with trio.fail_after(30), pytest.raises(ProcessFailed) as failed:
        await kind.run(Context("x"))
    assert "could not load no_such_module_here:functions" in failed.value.errors[0]
    assert "ModuleNotFoundError" in failed.value.errors[1]


async def test_without_isolation_a_stopped_thread_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The documented limit: a plain function keeps running in its thread; a warning says so."""
    caplog.set_level(logging.WARNING, "colonymesh.executors.python")
    marker = tmp_path / "pid"
    with trio.move_on_after(1):
        await exectasks.functions.run(Context("hang", [str(marker)]))
    assert marker.exists()
    assert any("keeps running in its thread" in r.getMessage() for r in caplog.records)


async def test_a_blocking_function_sees_the_fs_folders_in_process_and_isolated() -> None:
    """ctx.fs_root / ctx.fs_mount reach a plain function in a thread and in a worker."""
    context = Context("fs_folders")
    context.fs_root, context.fs_mount = "/srv/fs", "/srv/fs/work/p1"
    assert await exectasks.functions.run(context) == ["/srv/fs", "/srv/fs/work/p1"]
    with trio.fail_after(30):
        assert await pool().run(context) == ["/srv/fs", "/srv/fs/work/p1"]
