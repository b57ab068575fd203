"""Python functions, called directly: register them by name, the colony calls them.

Unlike ColonyOS's Python executor, no source code travels in a spec and
nothing is ``exec``'d: only functions registered in this process run.

    functions = PythonFunctions()

    @functions.function
    def square(x: int) -> int:
        return x * x

A spec's ``args`` and ``kwargs`` become the call's arguments. A function with
a parameter named ``ctx`` also receives the :class:`ProcessContext` (its
parents' outputs in ``ctx.input``, ``ctx.log``, ``ctx.add_child``); for a
plain (non-async) function, which runs in a worker thread, ``ctx`` offers the
same methods as blocking calls. The output is the returned list, or
``[value]`` for any other value (``[]`` for ``None``); an exception fails the
process with its type and message.

Stopping: an async function is cancelled at its next checkpoint. A plain
function runs in a worker thread, and Python cannot stop a thread: when its
run is stopped (``maxexectime``, a cancelled process, shutdown) the process
is released but the call keeps running, unobserved, until it returns (a
warning is logged). Where that matters, run the registry with
``isolation = "subprocess"`` (:mod:`colonymesh.executors.pool`): each call
runs in a worker process that is killed when its run is stopped.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import trio

from colonymesh.executors.base import ProcessContext, ProcessFailed
from colonymesh.node.spec import FunctionSpec
from colonymesh.node.spec.jsonvalue import thaw

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("colonymesh.executors.python")


class _BlockingContext:
    """``ctx`` for functions running in a worker thread: the same calls, blocking."""

    def __init__(self, context: ProcessContext) -> None:
        self._context = context
        self.process_id = context.process_id
        self.spec: FunctionSpec = context.spec
        self.input = context.input
        self.fs_root = context.fs_root  # set when the spec's fs directives ran
        self.fs_mount = context.fs_mount

    def log(self, message: str) -> None:
        trio.from_thread.run(self._context.log, message)

    def set_attribute(self, key: str, value: str) -> None:
        trio.from_thread.run(self._context.set_attribute, key, value)

    def add_child(self, spec: dict[str, Any], *, insert: bool = True) -> str:
        return trio.from_thread.run(functools.partial(self._context.add_child, spec, insert=insert))


class PythonFunctions:
    """A registry of Python functions, and the executor kind that calls them."""

    def __init__(self) -> None:
        self._functions: dict[str, Callable[..., Any]] = {}
        self._descriptions: dict[str, str] = {}

    def function(self, fn: F | None = None, *, name: str | None = None) -> Any:
        """Decorator registering ``fn`` under its name (or ``name``)."""

        def register(target: F) -> F:
            funcname = name or target.__name__
            if funcname in self._functions:
                raise ValueError(f"a function named {funcname!r} is already registered")
            self._functions[funcname] = target
            self._descriptions[funcname] = (inspect.getdoc(target) or "").split("\n")[0]
            return target

        return register(fn) if fn is not None else register

    def functions(self) -> dict[str, str]:
        return dict(self._descriptions)

    def lookup(self, funcname: str) -> Callable[..., Any] | None:
        """The function registered as ``funcname`` (used by isolated workers)."""
        return self._functions.get(funcname)

    async def run(self, context: ProcessContext) -> list[Any]:
        spec = context.spec
        target = self._functions.get(spec.funcname)
        if target is None:
            raise ProcessFailed(f"no function {spec.funcname!r} is registered at this executor")
        args = [thaw(a) for a in spec.args]
        kwargs: dict[str, Any] = dict(thaw(spec.kwargs))  # type: ignore[call-overload]
        wants_ctx = "ctx" in inspect.signature(target).parameters
        try:
            if inspect.iscoroutinefunction(target):
                if wants_ctx:
                    kwargs["ctx"] = context
                result = await target(*args, **kwargs)
            else:
                if wants_ctx:
                    kwargs["ctx"] = _BlockingContext(context)
                call = functools.partial(target, *args, **kwargs)
                try:
                    result = await trio.to_thread.run_sync(call, abandon_on_cancel=True)
                except trio.Cancelled:
                    # Python cannot stop a thread: the call runs on, unobserved.
                    log.warning(
                        "process %s: %s was stopped but keeps running in its thread "
                        '(isolation = "subprocess" kills it instead)',
                        context.process_id,
                        spec.funcname,
                    )
                    raise
        except ProcessFailed:
            raise
        except Exception as error:
            raise ProcessFailed(f"{type(error).__name__}: {error}") from error
        if result is None:
            return []
        return list(result) if isinstance(result, list | tuple) else [result]
