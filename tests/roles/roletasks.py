"""The functions the real-process executors serve in tests/roles.

``work`` records every run (start and end wall times, the process id and a
per-run nonce) in an append-only file per executor under
``$ROLES_RECORD_DIR``, named by ``$ROLES_EXECUTOR_ID``, and returns
``[i, nonce]``: the checker can tell which run produced a process's output.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from colonymesh.executors.python import PythonFunctions

functions = PythonFunctions()


def _record(event: dict[str, Any]) -> None:
    folder = Path(os.environ["ROLES_RECORD_DIR"])
    executor = os.environ["ROLES_EXECUTOR_ID"]
    line = json.dumps({**event, "executor": executor, "t": time.time()}) + "\n"
    with open(folder / f"{executor}.jsonl", "a") as handle:  # one write() per line
        handle.write(line)


@functions.function
def work(i: int, sleep_ms: int, ctx: Any) -> list[Any]:
    """Sleep, and return the argument with this run's nonce."""
    nonce = os.urandom(8).hex()
    _record({"event": "start", "process": ctx.process_id, "nonce": nonce, "i": i})
    time.sleep(sleep_ms / 1000)
    _record({"event": "end", "process": ctx.process_id, "nonce": nonce, "i": i})
    return [i, nonce]


@functions.function
def upper(ctx: Any) -> list[str]:
    """Read the synced input files, write upper-cased copies to the synced output folder."""
    base = Path(ctx.fs_mount) / ctx.process_id
    written = []
    for source in sorted((base / "in").iterdir()):
        (base / "out" / (source.name + ".up")).write_bytes(source.read_bytes().upper())
        written.append(source.name)
    return written
