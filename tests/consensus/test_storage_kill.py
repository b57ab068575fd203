"""A real process appending and syncing is killed with SIGKILL at random moments:
every index it acknowledged (printed after ``sync()`` returned) must survive, intact."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from colonymesh.consensus.storage import LogStore
from colonymesh.consensus.types import Entry, EntryKind, LogIndex, Term

CHILD = r"""
import sys
from colonymesh.consensus.storage import LogStore
from colonymesh.consensus.types import Entry, EntryKind, HardState, LogIndex, NodeId, Term

directory, term, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def data(i):
    return (b"%d:" % i) * (1 + i % 700)

store = LogStore.open(directory, segment_bytes_max=256 * 1024)
nxt = store.last_index() + 1
print("ready", nxt - 1, flush=True)
while True:
    entries = [Entry(term, i, EntryKind.NORMAL, data(i)) for i in range(nxt, nxt + batch)]
    store.append(entries)
    nxt += batch
    store.save_hard_state(HardState(term, NodeId("me"), nxt - 1))
    store.sync()
    print(nxt - 1, flush=True)
"""


def expected_data(i: int) -> bytes:
    return (b"%d:" % i) * (1 + i % 700)


def run_and_kill(directory: Path, term: int, batch: int, acks_min: int, rng: random.Random) -> int:
    """Start a writer, let it acknowledge at least ``acks_min`` batches, SIGKILL it."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(directory), str(term), str(batch)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        first = proc.stdout.readline().split()
        assert first[0] == "ready", first
        acked, seen = int(first[1]), 0
        deadline = time.monotonic() + 30
        while seen < acks_min and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "writer died early"
            acked, seen = int(line), seen + 1
        time.sleep(rng.random() * 0.01)  # land the kill anywhere in the write/sync loop
        os.kill(proc.pid, signal.SIGKILL)
        # Acknowledgements printed before the kill landed count too.
        for line in proc.stdout:
            acked = int(line)
    finally:
        proc.kill()
        proc.wait()
    return acked


def test_sigkill_loses_nothing_acknowledged(tmp_path: Path) -> None:
    rng = random.Random(5)
    directory = tmp_path / "log"
    acked = 0
    for term in range(1, 5):
        acked_now = run_and_kill(
            directory, term, batch=rng.choice([1, 8, 64]), acks_min=20, rng=rng
        )
        assert acked_now >= acked
        acked = acked_now
        with LogStore.open(directory) as s:
            last = s.last_index()
            assert last >= acked, f"acknowledged {acked}, recovered only {last}"
            got = s.entries(1, last + 1)
            assert [e.index for e in got] == list(range(1, last + 1))
            assert all(e.data == expected_data(e.index) for e in got)
            assert s.hard_state().commit >= acked
    assert acked > 80


def test_reopened_log_accepts_appends_after_kill(tmp_path: Path) -> None:
    directory = tmp_path / "log"
    acked = run_and_kill(directory, 1, batch=200, acks_min=3, rng=random.Random(1))
    with LogStore.open(directory) as s:
        last = s.last_index()
        assert last >= acked
        s.append([Entry(Term(2), LogIndex(last + 1), EntryKind.NORMAL, b"next")])
        s.sync()
    with LogStore.open(directory) as s:
        assert s.entries(last + 1, last + 2)[0].data == b"next"
