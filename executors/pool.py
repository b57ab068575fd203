"""Python functions, isolated: each call runs in a worker process of a small pool.

What it owns: the executor-side half of :mod:`colonymesh.executors.pyworker`.
``IsolatedFunctions`` is an executor kind serving the same registry as
:class:`~colonymesh.executors.python.PythonFunctions`, named by
``MODULE:ATTR`` so that a fresh interpreter can import it (the worker gets
the executor's ``sys.path`` as ``PYTHONPATH``).

How a run goes: take an idle worker, or start one (at most ``workers``
alive; runs beyond that wait); send it the call; relay what it sends
(``log`` lines, ``set_attribute``, ``add_child`` with their answers) to the
process context until ``done`` or ``error``. Raw output on the worker's fd
1/2 (C extensions, child processes, a crash report) is streamed into the
logs too; the last lines of both are the failure's tail when the worker dies.

Isolation guarantees: a worker runs one call at a time, in its own process
group. When a run is stopped (``maxexectime``, a cancelled process,
shutdown) its worker's group gets SIGTERM, then SIGKILL after ``grace_s``,
and the worker is replaced on demand: a function that hangs, leaks memory
or crashes the interpreter costs one worker, never the executor. A worker
that finished a call cleanly is reused (imports stay warm).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
from collections import deque
from typing import Any

import trio

from colonymesh.executors.base import ProcessContext, ProcessFailed
from colonymesh.executors.process import LineReader, LogBatcher

__all__ = ["IsolatedFunctions"]

log = logging.getLogger("colonymesh.executors.pool")

MESSAGE_BYTES_MAX = 16 << 20
READ_BYTES = 64 * 1024
START_TIMEOUT_S = 60.0


class WorkerDied(Exception):
    """The worker's protocol stream ended: it exited or was killed."""


class _Lines:
    """Lines from a trio stream, each at most ``MESSAGE_BYTES_MAX``."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    async def next(self) -> bytes:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line
            if len(self._buffer) > MESSAGE_BYTES_MAX:
                raise ProcessFailed(f"a worker message is over {MESSAGE_BYTES_MAX} bytes")
            data = await self._stream.receive_some(READ_BYTES)
            if not data:
                raise WorkerDied
            self._buffer += data


class _Worker:
    def __init__(self, process: trio.Process) -> None:
        self.process = process
        if process.stdin is None or process.stdout is None or process.stderr is None:
            raise RuntimeError("open_process returned no pipes")
        self.stdin = process.stdin
        self.lines = _Lines(process.stdout)
        self.stderr = process.stderr
        self.tail: deque[str] = deque(maxlen=20)
        self.reusable = False  # its last call ended with its answer (done or error)

    async def send(self, message: dict[str, Any]) -> None:
        try:
            await self.stdin.send_all(json.dumps(message).encode("utf-8") + b"\n")
        except (trio.BrokenResourceError, trio.ClosedResourceError) as error:
            raise WorkerDied from error

    async def receive(self) -> dict[str, Any]:
        line = await self.lines.next()
        try:
            message = json.loads(line)
        except ValueError as error:
            raise ProcessFailed(f"the worker sent a line that is not JSON: {error}") from error
        if not isinstance(message, dict):
            raise ProcessFailed("the worker sent a message that is not an object")
        return message

    def death(self) -> str:
        code = self.process.returncode
        if code is None:
            return "the worker process closed its channel"
        if code < 0:
            try:
                return f"the worker process was killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"the worker process was killed by signal {-code}"
        return f"the worker process exited with status {code}"


class IsolatedFunctions:
    """The executor kind that runs a registry's functions in worker processes."""

    def __init__(
        self,
        reference: str,
        functions: dict[str, str],
        *,
        workers: int = 1,
        grace_s: float = 2.0,
        log_interval_s: float = 0.5,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.reference = reference
        self._functions = dict(functions)
        self.grace_s = grace_s
        self.log_interval_s = log_interval_s
        self._slots = trio.Semaphore(workers)
        self._idle: list[_Worker] = []
        self.started = 0  # workers started so far (a replaced worker counts again)
        self.killed = 0

    def functions(self) -> dict[str, str]:
        return dict(self._functions)

    async def _start(self) -> _Worker:
        paths = [p for p in sys.path if p and os.path.isdir(p)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "colonymesh.executors.pyworker", self.reference],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        self.started += 1
        return _Worker(process)

    async def _kill(self, worker: _Worker) -> None:
        """SIGTERM to the worker's group, SIGKILL after the grace; runs shielded."""
        self.killed += 1
        with trio.CancelScope(shield=True):
            for signum, wait_s in ((signal.SIGTERM, self.grace_s), (signal.SIGKILL, 10.0)):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(worker.process.pid, signum)
                with trio.move_on_after(wait_s):
                    await worker.process.wait()
                    break
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(worker.process.pid, signal.SIGKILL)  # what it left in its group

    async def run(self, context: ProcessContext) -> list[Any]:
        if context.spec.funcname not in self._functions:
            raise ProcessFailed(
                f"no function {context.spec.funcname!r} is registered at this executor"
            )
        async with self._slots:
            worker = None
            while self._idle and worker is None:
                candidate = self._idle.pop()
                if candidate.process.returncode is None:  # polls: an idle worker may have died
                    worker = candidate
            try:
                if worker is None:
                    worker = await self._start()
                    with trio.fail_after(START_TIMEOUT_S):
                        await self._ready(worker)
                worker.reusable = False
                return await self._call(worker, context)
            except trio.TooSlowError as error:
                raise ProcessFailed("the worker process did not start in time") from error
            finally:
                if worker is not None:
                    if worker.reusable and worker.process.returncode is None:
                        self._idle.append(worker)
                    else:
                        await self._kill(worker)

    async def _ready(self, worker: _Worker) -> None:
        try:
            message = await worker.receive()
        except WorkerDied:
            await worker.process.wait()
            tail = await self._drain(worker)
            raise ProcessFailed(
                f"the worker could not load {self.reference}: {worker.death()}", tail
            ) from None
        if message.get("op") != "ready":
            raise ProcessFailed("the worker did not start properly")

    @staticmethod
    async def _drain(worker: _Worker) -> str:
        """What the worker wrote to fd 2, for the error of a worker that never got ready."""
        data = b""
        with trio.move_on_after(1.0):
            while chunk := await worker.stderr.receive_some(READ_BYTES):
                data = (data + chunk)[-8192:]
        return "stderr tail:\n" + data.decode("utf-8", "replace").strip()

    async def _call(self, worker: _Worker, context: ProcessContext) -> list[Any]:
        logs = LogBatcher(context.log, interval_s=self.log_interval_s)

        def raw_line(line: str) -> None:
            worker.tail.append(line)
            logs.add(line)

        raw = LineReader(raw_line, keep_last=False)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(logs.run)
                nursery.start_soon(self._pump, worker.stderr, raw)
                try:
                    outcome = await self._converse(worker, context, logs)
                except WorkerDied:
                    with trio.move_on_after(self.grace_s):
                        await worker.process.wait()
                    await trio.sleep(0.05)  # the crash report's last bytes
                    raw.finish()
                    errors = [worker.death()]
                    if worker.tail:
                        errors.append("log tail:\n" + "\n".join(worker.tail))
                    outcome = ProcessFailed(*errors)
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await logs.close()
        if isinstance(outcome, ProcessFailed):
            raise outcome
        return outcome

    @staticmethod
    async def _pump(stream: trio.abc.ReceiveStream, reader: LineReader) -> None:
        while data := await stream.receive_some(READ_BYTES):
            reader.feed(data)

    async def _converse(
        self, worker: _Worker, context: ProcessContext, logs: LogBatcher
    ) -> list[Any] | ProcessFailed:
        await worker.send(
            {
                "op": "run",
                "process_id": context.process_id,
                "funcname": context.spec.funcname,
                "spec": context.spec.to_json_obj(),
                "input": context.input,
                "fs_root": context.fs_root,
                "fs_mount": context.fs_mount,
            }
        )
        while True:
            message = await worker.receive()
            match message.get("op"):
                case "log":
                    line = str(message.get("message", ""))
                    worker.tail.append(line[:4096])
                    logs.add(line)
                case "call":
                    await worker.send(await self._answer(context, message))
                case "done":
                    output = message.get("output")
                    if not isinstance(output, list):
                        return ProcessFailed("the worker sent an output that is not a list")
                    worker.reusable = True
                    return output
                case "error":
                    worker.reusable = True
                    return ProcessFailed(str(message.get("error", "failed")))
                case other:
                    return ProcessFailed(f"the worker sent an unknown message {other!r}")

    @staticmethod
    async def _answer(context: ProcessContext, message: dict[str, Any]) -> dict[str, Any]:
        try:
            match message.get("method"):
                case "set_attribute":
                    await context.set_attribute(str(message["key"]), str(message["value"]))
                    return {"op": "reply", "value": None}
                case "add_child":
                    spec = message["spec"]
                    if not isinstance(spec, dict):
                        return {"op": "reply", "error": "add_child: spec must be an object"}
                    child = await context.add_child(spec, insert=bool(message.get("insert", True)))
                    return {"op": "reply", "value": child}
                case other:
                    return {"op": "reply", "error": f"unknown call {other!r}"}
        except (KeyError, ProcessFailed) as error:
            return {"op": "reply", "error": str(error)}
        except Exception as error:  # the colony refused: the function sees it as an error
            return {"op": "reply", "error": f"{type(error).__name__}: {error}"}
