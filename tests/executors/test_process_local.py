"""The local-process executor kind, with real processes: output, failure, groups killed, env, argv."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from colonymesh.executors.base import ProcessFailed
from colonymesh.executors.process import (
    LogBatcher,
    ProcessConfig,
    ProcessExecutor,
    output_from_stdout,
)
from colonymesh.node.spec import FunctionSpec, parse_function_spec

PY = sys.executable


class Context:
    """A ProcessContext that records what the kind does."""

    def __init__(self, spec: dict[str, Any], process_id: str = "p0123") -> None:
        self.process_id = process_id
        self.spec: FunctionSpec = parse_function_spec(
            {"conditions": {"executortype": "local"}, **spec}
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
        raise NotImplementedError

    @property
    def lines(self) -> list[str]:
        return [line for message in self.logs for line in message.split("\n")]


def executor(tmp_path: Path | None = None, **overrides: Any) -> ProcessExecutor:
    commands = {
        "py": (PY, "-c"),
        "sh": ("/bin/sh", "-c"),
        "echo": ("/bin/echo",),
        "pwd": ("/bin/pwd",),
        "missing": ("/nonexistent/program",),
    }
    settings: dict[str, Any] = {"commands": commands, "grace_s": 1.0, "log_interval_s": 0.05}
    if tmp_path is not None:
        settings["workdir_root"] = str(tmp_path)
    settings.update(overrides)
    return ProcessExecutor(ProcessConfig(**settings))


def alive(pid: int) -> bool:
    """Running or sleeping, not gone and not a zombie nobody reaped yet."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


async def wait_for_file(path: Path, timeout_s: float = 10.0) -> str:
    with trio.fail_after(timeout_s):
        while not path.exists() or not path.read_text().strip():
            await trio.sleep(0.02)
    return path.read_text().strip()


async def test_success_output_is_stdout_last_line_as_json(tmp_path: Path) -> None:
    ctx = Context(
        {"funcname": "py", "args": ["import sys; print('working'); print('[1, {\"a\": 2}]')"]}
    )
    assert await executor(tmp_path).run(ctx) == [1, {"a": 2}]
    assert "working" in ctx.lines and '[1, {"a": 2}]' in ctx.lines


@pytest.mark.parametrize(
    ("line", "output"),
    [("42", [42]), ('"x"', ["x"]), ("not json", ["not json"]), ("", []), ("[]", [])],
)
def test_output_rules(line: str, output: list[Any]) -> None:
    assert output_from_stdout(line) == output


async def test_args_are_appended_as_argv_words(tmp_path: Path) -> None:
    ctx = Context({"funcname": "echo", "args": ["a b", 3, True, None, [1, 2]]})
    assert await executor(tmp_path).run(ctx) == ["a b 3 true null [1,2]"]


async def test_failure_carries_exit_status_and_stderr_tail(tmp_path: Path) -> None:
    script = "import sys\nfor i in range(30): print('err', i, file=sys.stderr)\nsys.exit(7)"
    ctx = Context({"funcname": "py", "args": [script]})
    with pytest.raises(ProcessFailed) as failed:
        await executor(tmp_path, stderr_tail_lines=5).run(ctx)
    errors = failed.value.errors
    assert errors[0] == "exit status 7"
    assert errors[1].splitlines() == ["stderr tail:", *(f"err {i}" for i in range(25, 30))]
    assert "[stderr] err 0" in ctx.lines  # all of stderr is in the logs


async def test_killed_by_signal_says_which(tmp_path: Path) -> None:
    ctx = Context({"funcname": "sh", "args": ["kill -9 $$"]})
    with pytest.raises(ProcessFailed, match="killed by SIGKILL"):
        await executor(tmp_path).run(ctx)


async def test_unknown_program_and_unregistered_function_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(ProcessFailed, match="cannot start '/nonexistent/program'"):
        await executor(tmp_path).run(Context({"funcname": "missing"}))
    with pytest.raises(ProcessFailed, match="funcname: 'rm' is not registered"):
        await executor(tmp_path).run(Context({"funcname": "rm", "args": ["-rf", "/"]}))


async def test_shell_metacharacters_in_args_are_inert(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    attempts = [f"; touch {marker}", f"$(touch {marker})", f"`touch {marker}`", f"| touch {marker}"]
    for attempt in attempts:
        ctx = Context({"funcname": "echo", "args": [attempt]})
        assert await executor(tmp_path).run(ctx) == [attempt]
    assert not marker.exists()


async def test_environment_is_spec_env_plus_process_id_and_nothing_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLONYMESH_SECRET", "hush")
    script = "import json, os; print(json.dumps(dict(os.environ)))"
    ctx = Context(
        {"funcname": "py", "args": [script], "env": {"GREETING": "hi there"}}, process_id="abc"
    )
    [env] = await executor(tmp_path).run(ctx)
    assert env["GREETING"] == "hi there"
    assert env["COLONYMESH_PROCESS_ID"] == "abc"
    assert "COLONYMESH_SECRET" not in env
    assert env["PATH"] == os.environ["PATH"]


async def test_env_that_would_change_the_program_is_refused(tmp_path: Path) -> None:
    for name in ("PATH", "LD_PRELOAD", "PYTHONPATH"):
        ctx = Context({"funcname": "pwd", "env": {name: "/tmp/evil"}})
        with pytest.raises(ProcessFailed, match=f"env.{name}"):
            await executor(tmp_path).run(ctx)


async def test_fresh_working_directory_is_made_and_removed(tmp_path: Path) -> None:
    ctx = Context({"funcname": "pwd"})
    [cwd] = await executor(tmp_path).run(ctx)
    assert Path(cwd).parent == tmp_path and Path(cwd).name.startswith("colonymesh-p0123-")
    assert not Path(cwd).exists()


async def test_configured_working_directory_is_used_and_kept(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    ctx = Context({"funcname": "sh", "args": ["echo data > out.txt; pwd"]})
    assert await executor(workdir=str(work)).run(ctx) == [str(work)]
    assert (work / "out.txt").read_text() == "data\n"


async def test_cancellation_kills_the_whole_process_group(tmp_path: Path) -> None:
    """A shell that spawns a sleeper: cancelling the run kills both, grandchild included."""
    pids = tmp_path / "pids"
    script = f"sleep 300 & echo $$ $! > {pids}; wait"
    ctx = Context({"funcname": "sh", "args": [script]})
    async with trio.open_nursery() as nursery:
        nursery.start_soon(executor(tmp_path).run, ctx)
        shell, sleeper = map(int, (await wait_for_file(pids)).split())
        assert alive(shell) and alive(sleeper)
        started = time.monotonic()
        nursery.cancel_scope.cancel()
    assert time.monotonic() - started < 3.0
    assert not alive(shell) and not alive(sleeper)


async def test_term_is_ignored_so_kill_follows_after_the_grace(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = f"trap '' TERM; sleep 300 & echo $$ $! > {pids}; wait; wait"
    ctx = Context({"funcname": "sh", "args": [script]})
    with trio.move_on_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(executor(tmp_path, grace_s=0.5).run, ctx)
            shell, sleeper = map(int, (await wait_for_file(pids)).split())
            started = time.monotonic()
            nursery.cancel_scope.cancel()
    elapsed = time.monotonic() - started
    assert 0.4 < elapsed < 5.0  # waited out the grace, then SIGKILL
    assert not alive(shell) and not alive(sleeper)


async def test_timeout_stops_the_process_and_its_children(tmp_path: Path) -> None:
    """The runtime enforces maxexectime by cancelling run() at a deadline: same cleanup."""
    pids = tmp_path / "pids"
    script = f"sleep 300 & echo $$ $! > {pids}; sleep 300"
    ctx = Context({"funcname": "sh", "args": [script]})
    started = time.monotonic()
    with trio.move_on_after(1.0) as timer:
        await executor(tmp_path).run(ctx)
    assert timer.cancelled_caught
    assert time.monotonic() - started < 4.0
    shell, sleeper = map(int, (await wait_for_file(pids)).split())
    assert not alive(shell) and not alive(sleeper)
    assert not any(p.name.startswith("colonymesh-") for p in tmp_path.iterdir())


async def test_leftovers_in_the_group_are_killed_when_the_leader_exits(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = f"sleep 300 > /dev/null 2>&1 & echo $! > {pids}; echo done"
    ctx = Context({"funcname": "sh", "args": [script]})
    with trio.fail_after(10):
        assert await executor(tmp_path).run(ctx) == ["done"]
    sleeper = int(await wait_for_file(pids))
    with trio.fail_after(5):
        while alive(sleeper):
            await trio.sleep(0.02)


async def test_logs_are_batched_and_bounded(tmp_path: Path) -> None:
    script = "for i in range(5000): print('line', i, 'x' * 100)"
    ctx = Context({"funcname": "py", "args": [script]})
    await executor(tmp_path, log_bytes_max=64 * 1024, log_line_chars_max=50).run(ctx)
    assert len(ctx.logs) < 50  # far fewer calls than lines
    assert all(len(message.encode()) <= 16 * 1024 for message in ctx.logs)
    assert sum(len(m.encode()) + 1 for m in ctx.logs[:-1]) <= 64 * 1024 + len(ctx.logs)
    assert "line 0 " in ctx.lines[0] and "chars cut" in ctx.lines[0]
    assert ctx.logs[-1].endswith("log limit of 65536 bytes reached]")


async def test_a_failing_log_sink_does_not_fail_the_process() -> None:
    calls = 0

    async def broken(message: str) -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("colony unavailable")

    batcher = LogBatcher(broken)
    batcher.add("hello")
    await batcher.close()
    assert calls == 1 and batcher.sent_messages == 0


async def test_parents_outputs_arrive_on_stdin_as_json(tmp_path: Path) -> None:
    ctx = Context(
        {"funcname": "py", "args": ["import json, sys; print(sum(json.load(sys.stdin)))"]}
    )
    ctx.input = [1, 2, 39]
    assert await executor(tmp_path).run(ctx) == [42]


async def test_a_large_input_the_process_never_reads_does_not_block(tmp_path: Path) -> None:
    ctx = Context({"funcname": "echo", "args": ["ignored"]})
    ctx.input = ["x" * 1000] * 1000  # ~1 MB, far over a pipe's buffer
    with trio.fail_after(10):
        assert await executor(tmp_path).run(ctx) == ["ignored"]


async def test_runs_in_the_fs_mount_and_leaves_it(tmp_path: Path) -> None:
    """With fs directives (fs_mount set) the process runs in the mount, which stays."""
    mount = tmp_path / "fs" / "work" / "p0123"  # not made yet: the kind creates it
    context = Context(
        {
            "funcname": "py",
            "args": [
                "import json, os; open('made.txt', 'w').write('x'); print(json.dumps("
                "[os.getcwd(), os.environ['COLONYMESH_FS_ROOT'], "
                "os.environ['COLONYMESH_FS_MOUNT']]))"
            ],
        }
    )
    context.fs_root, context.fs_mount = str(tmp_path / "fs"), str(mount)
    output = await executor(tmp_path).run(context)
    assert output == [str(mount), str(tmp_path / "fs"), str(mount)]
    assert (mount / "made.txt").read_text() == "x"


async def test_without_fs_the_process_gets_no_fs_variables(tmp_path: Path) -> None:
    context = Context(
        {
            "funcname": "py",
            "args": ["import os; print(os.environ.get('COLONYMESH_FS_MOUNT', 'none'))"],
        }
    )
    assert await executor(tmp_path).run(context) == ["none"]
