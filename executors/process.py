"""Local processes: a registered command line runs as a child process, its result read back.

What it owns: turning a function spec into one OS process on this machine,
streaming what it prints into the process's logs, and turning its exit
into an output or a failure. It runs nothing a spec chooses by itself.

Which program runs: ``ProcessConfig.commands`` maps a ``funcname`` to an
argv prefix, the spec's ``args`` are appended one argv word each
(``colonymesh.node.spec.command.resolve_command``; ColonyOS's ``kwargs.cmd``
only when ``allow_spec_commands`` is set). The argv goes to ``execve``
directly, never through a shell, so ``"; rm -rf /"`` in an argument is one
inert word. A container image (``kwargs["docker-image"]``) is refused: this
kind runs host processes only.

Environment: only the variables named in ``inherit_env`` pass from the
executor's own environment (so no executor secret leaks), then the
config's fixed ``env`` (the owner's: it may set anything), then the spec's
``env`` (names validated by the spec model; names that would change which
program runs or how -- ``PATH``, ``LD_*``, ``PYTHON*``... as for Slurm --
are refused with a field-named error), then ``COLONYMESH_PROCESS_ID``.

Input: the parents' outputs (``context.input``) are written to the
process's stdin as one JSON array, then stdin is closed; a process that
does not read it loses nothing (a broken pipe is ignored).

Working directory: ``workdir`` when configured (used as is); else, when the
spec's ``fs`` directives ran (``context.fs_mount`` is set), the synced mount
folder (created if no directive made it; left in place: the runtime's sync
uploads from it and cleans it up as the spec says); else a fresh temporary
directory per process (under ``workdir_root``), removed after the process
unless ``keep_workdir``. With ``fs`` directives the process also gets
``COLONYMESH_FS_ROOT`` and ``COLONYMESH_FS_MOUNT``.

Logs: stdout and stderr lines (stderr ones prefixed ``[stderr] ``) are
batched into ``context.log`` calls (one call per ``log_interval_s`` or per
``log_message_bytes_max`` of text); a line is cut at ``log_line_chars_max``
and, past ``log_bytes_max`` per process, lines are counted and dropped with
one closing note. A failing log call is logged here and never fails the
process.

Result: exit status 0 -> the output is read from stdout's last non-empty
line: a JSON array is the output list, any other JSON value ``v`` gives
``[v]``, text that is not JSON gives ``[text]``, no output gives ``[]``.
A non-zero status fails the process with ``exit status N`` and the last
``stderr_tail_lines`` lines of stderr; death by a signal says which.

Process group: the child starts in a new session (``start_new_session``), so
it leads a process group holding everything it spawns. When its run is
cancelled (the runtime's ``maxexectime``, a cancelled process, shutdown)
the whole group gets SIGTERM, then SIGKILL after ``grace_s``; when the
leader exits by itself, whatever it left behind in its group is killed too,
so no work outlives its process. The cleanup is shielded from cancellation.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import trio

from colonymesh.executors.base import ProcessContext, ProcessFailed
from colonymesh.executors.slurm.sbatch import DEFAULT_ENV_DENIED
from colonymesh.node.spec import SpecError, resolve_command

__all__ = [
    "LineReader",
    "LogBatcher",
    "ProcessConfig",
    "ProcessExecutor",
    "input_json",
    "output_from_stdout",
]

log = logging.getLogger("colonymesh.executors.process")

READ_BYTES = 64 * 1024
OUTPUT_LINE_BYTES_MAX = 1 << 20
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]")


def env_denied(name: str, patterns: tuple[str, ...]) -> bool:
    """Whether ``name`` matches one of ``patterns`` (``"X*"`` is a prefix)."""
    return any(name.startswith(p[:-1]) if p.endswith("*") else name == p for p in patterns)


@dataclass(frozen=True, slots=True)
class ProcessConfig:
    """What the executor's owner decides; a spec can change none of it."""

    # funcname -> argv prefix; the spec's args are appended (node/spec/command.py)
    commands: Mapping[str, tuple[str, ...]]
    descriptions: Mapping[str, str] = field(default_factory=dict)
    allow_spec_commands: bool = False
    workdir: str = ""  # fixed working directory; "" = a fresh temporary one per process
    workdir_root: str = ""  # where fresh ones are made; "" = the system's temp dir
    keep_workdir: bool = False
    inherit_env: tuple[str, ...] = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")
    env: Mapping[str, str] = field(default_factory=dict)  # set for every process (owner's)
    env_denied: tuple[str, ...] = DEFAULT_ENV_DENIED
    grace_s: float = 5.0
    log_interval_s: float = 0.5
    log_line_chars_max: int = 4096
    log_message_bytes_max: int = 16 * 1024
    log_bytes_max: int = 1 << 20
    stderr_tail_lines: int = 20

    def check(self) -> None:
        if self.grace_s < 0 or self.log_interval_s <= 0:
            raise ValueError("grace_s must be >= 0 and log_interval_s > 0")
        if not 0 < self.log_message_bytes_max <= 60 * 1024:
            raise ValueError("log_message_bytes_max must be in (0, 60 KiB] (the ledger's cap)")
        for name, argv in self.commands.items():
            if not argv or not argv[0]:
                raise ValueError(f"commands[{name!r}]: needs a program")


class LogBatcher:
    """Lines in, few bounded ``log`` calls out; shared by the process and Slurm kinds.

    ``add`` never blocks; ``run`` flushes every ``interval_s`` until cancelled;
    ``close`` flushes what is left and notes how much was dropped.
    """

    def __init__(
        self,
        sink: Callable[[str], Awaitable[None]],
        *,
        interval_s: float = 0.5,
        line_chars_max: int = 4096,
        message_bytes_max: int = 16 * 1024,
        total_bytes_max: int = 1 << 20,
    ) -> None:
        self._sink = sink
        self._interval_s = interval_s
        self._line_chars_max = line_chars_max
        self._message_bytes_max = message_bytes_max
        self._total_bytes_max = total_bytes_max
        self._pending: list[str] = []
        self._pending_bytes = 0
        self.total_bytes = 0
        self.dropped_lines = 0
        self.sent_messages = 0

    def add(self, line: str) -> None:
        if len(line) > self._line_chars_max:
            line = (
                line[: self._line_chars_max] + f" ...[{len(line) - self._line_chars_max} chars cut]"
            )
        size = len(line.encode("utf-8", "replace")) + 1
        if self.total_bytes + size > self._total_bytes_max:
            self.dropped_lines += 1
            return
        self.total_bytes += size
        self._pending.append(line)
        self._pending_bytes += size

    async def run(self) -> None:
        while True:
            await trio.sleep(self._interval_s)
            await self.flush()

    async def flush(self) -> None:
        while self._pending:
            batch: list[str] = []
            size = 0
            while self._pending:
                line_bytes = len(self._pending[0].encode("utf-8", "replace")) + 1
                if batch and size + line_bytes > self._message_bytes_max:
                    break
                batch.append(self._pending.pop(0))
                size += line_bytes
            self._pending_bytes -= size
            await self._send("\n".join(batch))

    async def close(self) -> None:
        await self.flush()
        if self.dropped_lines:
            await self._send(
                f"[{self.dropped_lines} more lines dropped: log limit of "
                f"{self._total_bytes_max} bytes reached]"
            )

    async def _send(self, message: str) -> None:
        encoded = message.encode("utf-8", "replace")
        if len(encoded) > self._message_bytes_max:  # one huge line after a cut in bytes
            message = encoded[: self._message_bytes_max].decode("utf-8", "ignore")
        try:
            await self._sink(message)
            self.sent_messages += 1
        except Exception as error:  # a log that cannot be written never fails the process
            log.warning("could not write a process log: %s: %s", type(error).__name__, error)


def output_from_stdout(last_line: str) -> list[Any]:
    """The output list from stdout's last non-empty line (rules in the module docs)."""
    text = last_line.strip()
    if not text:
        return []
    try:
        value = json.loads(text)
    except ValueError:
        return [text]
    return value if isinstance(value, list) else [value]


def input_json(inputs: list[Any]) -> bytes:
    """The parents' outputs as the JSON array a process reads on stdin."""
    try:
        return json.dumps(inputs, ensure_ascii=False).encode("utf-8") + b"\n"
    except (TypeError, ValueError) as error:
        raise ProcessFailed(f"the process input is not JSON: {error}") from error


class LineReader:
    """Splits a byte stream into text lines, keeping the last non-empty one whole (capped)."""

    def __init__(self, emit: Callable[[str], None], keep_last: bool) -> None:
        self._emit = emit
        self._keep_last = keep_last
        self._partial = bytearray()
        self.last_line = ""
        self.last_line_too_long = False

    def feed(self, data: bytes | bytearray) -> None:
        self._partial += data
        *lines, rest = self._partial.split(b"\n")
        self._partial = bytearray(rest)
        for line in lines:
            self._line(bytes(line))
        if len(self._partial) > OUTPUT_LINE_BYTES_MAX:  # a line without end: cut it here
            self._line(bytes(self._partial), too_long=True)
            self._partial.clear()

    def finish(self) -> None:
        if self._partial:
            self._line(bytes(self._partial))
            self._partial.clear()

    def _line(self, raw: bytes, *, too_long: bool = False) -> None:
        text = raw.decode("utf-8", "replace").rstrip("\r")
        self._emit(text)
        if self._keep_last and text.strip():
            self.last_line = text
            self.last_line_too_long = too_long


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass  # the group is already empty
    except PermissionError as error:  # pgid reused by someone else's process: leave it
        log.warning("cannot signal process group %d: %s", pgid, error)


def _group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process is left in group ``pgid``.

    Orphans are reparented to an init that may be slow to reap them, and a
    zombie still answers ``killpg(pgid, 0)``: on Linux, read /proc instead.
    """
    try:
        entries = os.listdir("/proc")
    except OSError:
        entries = []
    if not entries:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if len(fields) > 2 and fields[2] == str(pgid).encode() and fields[0] not in (b"Z", b"X"):
            return True
    return False


class ProcessExecutor:
    """The executor kind that runs registered command lines as local processes."""

    def __init__(self, config: ProcessConfig) -> None:
        config.check()
        self.config = config

    def functions(self) -> dict[str, str]:
        return {
            name: self.config.descriptions.get(name, " ".join(argv))
            for name, argv in self.config.commands.items()
        }

    def _environment(self, context: ProcessContext) -> dict[str, str]:
        env = {k: os.environ[k] for k in self.config.inherit_env if k in os.environ}
        env.update(self.config.env)
        for name, value in context.spec.env:
            if env_denied(name, self.config.env_denied):
                raise SpecError(
                    f"env.{name}",
                    "may not be set on this executor: it would change which program runs",
                )
            env[name] = value
        env["COLONYMESH_PROCESS_ID"] = context.process_id
        if context.fs_mount:
            env["COLONYMESH_FS_ROOT"] = context.fs_root
            env["COLONYMESH_FS_MOUNT"] = context.fs_mount
        return env

    async def run(self, context: ProcessContext) -> list[Any]:
        spec = context.spec
        try:
            command = resolve_command(
                spec, self.config.commands, allow_spec_commands=self.config.allow_spec_commands
            )
            if command.image:
                raise SpecError("kwargs.docker-image", "local processes run no container images")
            env = self._environment(context)
        except SpecError as error:
            raise ProcessFailed(str(error)) from error
        workdir, fresh = await self._workdir(context)
        try:
            return await self._run(context, list(command.argv), env, workdir)
        finally:
            if fresh and not self.config.keep_workdir:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(shutil.rmtree, workdir, True)

    async def _workdir(self, context: ProcessContext) -> tuple[str, bool]:
        """The working directory, and whether it is a fresh one to remove after the run."""
        if self.config.workdir:
            return self.config.workdir, False
        if context.fs_mount:  # the synced folder: the runtime's fs sync owns its cleanup
            try:
                await trio.to_thread.run_sync(
                    functools.partial(os.makedirs, context.fs_mount, exist_ok=True)
                )
            except OSError as error:
                raise ProcessFailed(f"cannot create the fs mount folder: {error}") from error
            return context.fs_mount, False
        stem = _UNSAFE_NAME_CHARS.sub("_", context.process_id)[:32]
        root = self.config.workdir_root or None
        return tempfile.mkdtemp(prefix=f"colonymesh-{stem}-", dir=root), True

    async def _run(
        self, context: ProcessContext, argv: list[str], env: dict[str, str], workdir: str
    ) -> list[Any]:
        config = self.config
        logs = LogBatcher(
            context.log,
            interval_s=config.log_interval_s,
            line_chars_max=config.log_line_chars_max,
            message_bytes_max=config.log_message_bytes_max,
            total_bytes_max=config.log_bytes_max,
        )
        tail: deque[str] = deque(maxlen=config.stderr_tail_lines)

        def on_stderr(line: str) -> None:
            tail.append(line[: config.log_line_chars_max])
            logs.add(f"[stderr] {line}")

        stdout = LineReader(logs.add, keep_last=True)
        stderr = LineReader(on_stderr, keep_last=False)
        try:
            proc = await trio.lowlevel.open_process(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=workdir,
                env=env,
                start_new_session=True,
            )
        except OSError as error:
            raise ProcessFailed(f"cannot start {argv[0]!r}: {error.strerror or error}") from error
        log.info("process %s: started pid %d: %s", context.process_id, proc.pid, argv[0])
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(logs.run)
                async with trio.open_nursery() as readers:
                    if proc.stdin is None or proc.stdout is None or proc.stderr is None:
                        raise RuntimeError("open_process returned no pipes")
                    readers.start_soon(self._feed, proc.stdin, input_json(context.input))
                    readers.start_soon(self._pump, proc.stdout, stdout)
                    readers.start_soon(self._pump, proc.stderr, stderr)
                    await proc.wait()
                    # The leader is done: whatever it left in its group goes too, so
                    # the pipes close and nothing outlives the process.
                    _signal_group(proc.pid, signal.SIGKILL)
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                if proc.returncode is None:
                    await self._terminate(proc, context.process_id)
                else:
                    _signal_group(proc.pid, signal.SIGKILL)
                with trio.move_on_after(max(self.config.grace_s, 1.0)):
                    await logs.close()
        if proc.returncode is None:
            raise RuntimeError("the process was not waited for")
        return self._result(proc.returncode, stdout, tail)

    @staticmethod
    async def _feed(stream: trio.abc.SendStream, data: bytes) -> None:
        try:
            async with stream:
                await stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the process exited or closed its stdin without reading it all

    @staticmethod
    async def _pump(stream: trio.abc.ReceiveStream, reader: LineReader) -> None:
        async with stream:
            while data := await stream.receive_some(READ_BYTES):
                reader.feed(data)
        reader.finish()

    async def _terminate(self, proc: trio.Process, process_id: str) -> None:
        """SIGTERM to the whole group, SIGKILL after the grace; runs shielded."""
        pgid = proc.pid
        log.info("process %s: stopping process group %d", process_id, pgid)
        _signal_group(pgid, signal.SIGTERM)
        with trio.move_on_after(self.config.grace_s):
            await proc.wait()
            while _group_alive(pgid):  # the leader is gone; its group may not be
                await trio.sleep(0.05)
        _signal_group(pgid, signal.SIGKILL)
        await proc.wait()

    def _result(self, returncode: int, stdout: LineReader, tail: deque[str]) -> list[Any]:
        if returncode == 0:
            if stdout.last_line_too_long:
                raise ProcessFailed(f"the output line is longer than {OUTPUT_LINE_BYTES_MAX} bytes")
            return output_from_stdout(stdout.last_line)
        if returncode < 0:
            try:
                name = signal.Signals(-returncode).name
            except ValueError:
                name = f"signal {-returncode}"
            errors = [f"killed by {name}"]
        else:
            errors = [f"exit status {returncode}"]
        if tail:
            errors.append("stderr tail:\n" + "\n".join(tail))
        raise ProcessFailed(*errors)
