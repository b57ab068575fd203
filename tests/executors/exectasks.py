"""Functions for the executor tests, importable by MODULE:ATTR (``exectasks:functions``)."""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

import trio

from colonymesh.executors.python import PythonFunctions

functions = PythonFunctions()


@functions.function
def numbers(n: int) -> list[int]:
    """1..n"""
    return list(range(1, n + 1))


@functions.function
def pid() -> int:
    """the worker's process id"""
    return os.getpid()


@functions.function
def hang(marker: str) -> None:
    """write our pid to ``marker``, then never return"""
    with open(marker, "w") as handle:
        handle.write(str(os.getpid()))
    while True:
        time.sleep(1)


@functions.function
def crash() -> None:
    """die by SIGSEGV"""
    print("about to crash", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGSEGV)


@functions.function
def fs_folders(ctx: Any) -> list[str]:
    """where the spec's fs directives synced: ctx.fs_root and ctx.fs_mount"""
    return [ctx.fs_root, ctx.fs_mount]


@functions.function
def boom(text: str) -> None:
    """raise ValueError(text)"""
    raise ValueError(text)


@functions.function
def chatty(ctx: Any) -> list[Any]:
    """print, log and set an attribute; returns the input reversed"""
    print("printed line")
    ctx.log("logged line")
    ctx.set_attribute("where", "worker")
    os.write(1, b"raw fd line\n")
    return list(reversed(ctx.input))


@functions.function
async def double(x: int, ctx: Any) -> int:
    """2x, asynchronously"""
    await ctx.log(f"doubling {x}")
    await trio.sleep(0)
    return 2 * x
