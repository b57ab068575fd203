"""A long local process for the lease test: ``leasework.py I FIRST_S LATER_S``.

Appends ``start``, ``alive`` (every 50 ms), and ``end`` or ``stopped`` (on
SIGTERM) lines to ``$ROLES_RECORD_DIR/$ROLES_EXECUTOR_ID.jsonl``, each with
the wall time, the process id and a per-run nonce. The first run of a
process sleeps FIRST_S, later runs LATER_S. Prints ``[I, nonce]``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

RECORDS = Path(os.environ["ROLES_RECORD_DIR"])
EXECUTOR = os.environ["ROLES_EXECUTOR_ID"]
PROCESS = os.environ["COLONYMESH_PROCESS_ID"]
NONCE = os.urandom(8).hex()


def record(event: str) -> None:
    line = {"event": event, "process": PROCESS, "nonce": NONCE, "executor": EXECUTOR}
    with open(RECORDS / f"{EXECUTOR}.jsonl", "a") as handle:
        handle.write(json.dumps({**line, "t": time.time()}) + "\n")


def ran_before() -> bool:
    for path in RECORDS.glob("*.jsonl"):
        for text in path.read_text().splitlines():
            if text.endswith("}") and json.loads(text)["process"] == PROCESS:
                return True
    return False


def on_term(signum: int, frame: Any) -> None:
    record("stopped")
    sys.exit(1)


def main() -> None:
    index, first_s, later_s = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
    duration = later_s if ran_before() else first_s
    signal.signal(signal.SIGTERM, on_term)
    record("start")
    ends = time.monotonic() + duration
    while time.monotonic() < ends:
        time.sleep(0.05)
        record("alive")
    record("end")
    print(json.dumps([index, NONCE]))


if __name__ == "__main__":
    main()
