"""The worker process of the isolated Python kind: ``python -m colonymesh.executors.pyworker MODULE:ATTR``.

It imports the registry, says ``ready``, then runs one function call at a
time as its parent (:mod:`colonymesh.executors.pool`) asks. The protocol is
one JSON object per line: the parent writes to the worker's stdin; the
worker answers on a private copy of its original stdout, and points fd 1 at
fd 2 so nothing the function (or a library, or a child process) prints can
corrupt it. Python-level ``print`` and ``sys.stderr`` writes become ``log``
messages, in order with the result.

    parent -> worker   {"op": "run", "process_id", "funcname", "spec", "input",
                        "fs_root", "fs_mount"}
                       {"op": "reply", "value" | "error"}     (answer to a call)
    worker -> parent   {"op": "ready", "functions": {...}}
                       {"op": "log", "message"}
                       {"op": "call", "method": "set_attribute" | "add_child", ...}
                       {"op": "done", "output": [...]} | {"op": "error", "error": "..."}

A function that hangs, crashes the interpreter or calls ``os._exit`` takes
only this process with it; the parent kills it when the run is stopped.
"""

from __future__ import annotations

import importlib
import inspect
import io
import json
import os
import sys
from typing import Any, TextIO

from colonymesh.executors.python import PythonFunctions
from colonymesh.node.spec import FunctionSpec, parse_function_spec
from colonymesh.node.spec.jsonvalue import thaw


class _Channel:
    def __init__(self, incoming: TextIO, outgoing: TextIO) -> None:
        self.incoming = incoming
        self.outgoing = outgoing

    def send(self, message: dict[str, Any]) -> None:
        self.outgoing.write(json.dumps(message) + "\n")
        self.outgoing.flush()

    def receive(self) -> dict[str, Any] | None:
        line = self.incoming.readline()
        if not line:
            return None
        value = json.loads(line)
        if not isinstance(value, dict):
            raise ValueError("a protocol message must be a JSON object")
        return value

    def call(self, method: str, **fields: Any) -> Any:
        self.send({"op": "call", "method": method, **fields})
        reply = self.receive()
        if reply is None or reply.get("op") != "reply":
            raise RuntimeError("the executor did not answer")
        if "error" in reply:
            raise RuntimeError(str(reply["error"]))
        return reply.get("value")


class _LogWriter(io.TextIOBase):
    """``sys.stdout``/``sys.stderr`` of the function: complete lines become log messages."""

    def __init__(self, channel: _Channel) -> None:
        self._channel = channel
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            self._channel.send({"op": "log", "message": line})
        return len(text)

    def flush(self) -> None:
        if self._partial:
            self._channel.send({"op": "log", "message": self._partial})
            self._partial = ""


class _Context:
    """``ctx`` for an isolated function: the same calls as in-process, over the channel."""

    def __init__(
        self,
        channel: _Channel,
        process_id: str,
        spec: FunctionSpec,
        inputs: Any,
        fs: tuple[str, str] = ("", ""),
    ) -> None:
        self._channel = channel
        self.process_id = process_id
        self.spec = spec
        self.input = inputs
        self.fs_root, self.fs_mount = fs  # set when the spec's fs directives ran

    def log(self, message: str) -> None:
        self._channel.send({"op": "log", "message": str(message)})

    def set_attribute(self, key: str, value: str) -> None:
        self._channel.call("set_attribute", key=key, value=value)

    def add_child(self, spec: dict[str, Any], *, insert: bool = True) -> str:
        return str(self._channel.call("add_child", spec=spec, insert=insert))


class _AsyncContext(_Context):
    async def log(self, message: str) -> None:  # type: ignore[override]
        super().log(message)

    async def set_attribute(self, key: str, value: str) -> None:  # type: ignore[override]
        super().set_attribute(key, value)

    async def add_child(self, spec: dict[str, Any], *, insert: bool = True) -> str:  # type: ignore[override]
        return super().add_child(spec, insert=insert)


def _registry(reference: str) -> PythonFunctions:
    module_name, _, attribute = reference.partition(":")
    registry = getattr(importlib.import_module(module_name), attribute, None)
    if not isinstance(registry, PythonFunctions):
        raise TypeError(f"{reference} is not a PythonFunctions registry")
    return registry


def _run(channel: _Channel, registry: PythonFunctions, message: dict[str, Any]) -> None:
    funcname = str(message["funcname"])
    target = registry.lookup(funcname)
    if target is None:
        channel.send({"op": "error", "error": f"no function {funcname!r} is registered"})
        return
    spec = parse_function_spec(message["spec"])
    args = [thaw(a) for a in spec.args]
    kwargs: dict[str, Any] = dict(thaw(spec.kwargs))  # type: ignore[call-overload]
    asynchronous = inspect.iscoroutinefunction(target)
    if "ctx" in inspect.signature(target).parameters:
        context_type = _AsyncContext if asynchronous else _Context
        fs = (str(message.get("fs_root", "")), str(message.get("fs_mount", "")))
        kwargs["ctx"] = context_type(
            channel, str(message["process_id"]), spec, message["input"], fs
        )
    try:
        if asynchronous:
            import trio

            result = trio.run(lambda: target(*args, **kwargs))
        else:
            result = target(*args, **kwargs)
    except Exception as error:
        sys.stdout.flush()
        sys.stderr.flush()
        channel.send({"op": "error", "error": f"{type(error).__name__}: {error}"})
        return
    sys.stdout.flush()
    sys.stderr.flush()
    if result is None:
        output: list[Any] = []
    else:
        output = list(result) if isinstance(result, list | tuple) else [result]
    try:
        channel.send({"op": "done", "output": output})
    except (TypeError, ValueError) as error:
        channel.send({"op": "error", "error": f"output is not JSON: {error}"})


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m colonymesh.executors.pyworker MODULE:ATTR", file=sys.stderr)
        return 2
    outgoing = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # whatever writes to fd 1 from now on lands in the log stream
    channel = _Channel(sys.stdin, outgoing)
    registry = _registry(argv[1])
    writer = _LogWriter(channel)
    sys.stdout = writer
    sys.stderr = writer
    channel.send({"op": "ready", "functions": registry.functions()})
    while (message := channel.receive()) is not None:
        if message.get("op") == "run":
            _run(channel, registry, message)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
