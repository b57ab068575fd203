"""Benchmark of the durable Raft log store (colonymesh.consensus.storage).

Measures, on the machine's real disk with fsync on:

* ``fsync_per_entry`` (the baseline): append one entry, sync, repeat;
* ``group_commit``: append a batch of entries, sync once, acknowledge all;
* ``append_only``: appends with no sync at all (the encoding/write ceiling);
* hard state: two-slot save + fdatasync vs. write-temp/fsync/rename/fsync-dir.

Run: ``python bench/storage.py [--quick] [--dir PATH] [--entry-bytes N] [--batch N]``.
The last stdout line is one JSON object: the figures, the baseline's name and
``ratio`` = group-commit entries/s over fsync-per-entry entries/s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from colonymesh.consensus.storage import LogStore
from colonymesh.consensus.storage.fsutil import write_atomic
from colonymesh.consensus.storage.hardstate import HardStateFile
from colonymesh.consensus.types import Entry, EntryKind, HardState, LogIndex, NodeId, Term


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def entries(lo: int, n: int, size: int) -> list[Entry]:
    payload = os.urandom(size)
    return [Entry(Term(1), LogIndex(i), EntryKind.NORMAL, payload) for i in range(lo, lo + n)]


def run_batches(directory: Path, total: int, batch: int, size: int) -> dict[str, float]:
    """Append ``total`` entries in batches of ``batch``, one sync per batch."""
    shutil.rmtree(directory, ignore_errors=True)
    latencies: list[float] = []
    with LogStore.open(directory) as store:
        batches = [entries(lo, batch, size) for lo in range(1, total + 1, batch)]
        start = time.perf_counter()
        for b in batches:
            t0 = time.perf_counter()
            store.append(b)
            store.sync()
            latencies.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - start
    return {
        "entries_per_s": total / elapsed,
        "sync_p50_ms": pct(latencies, 0.5) * 1e3,
        "sync_p99_ms": pct(latencies, 0.99) * 1e3,
        "mib_per_s": total * (size + 32) / elapsed / 2**20,
    }


def run_append_only(directory: Path, total: int, batch: int, size: int) -> dict[str, float]:
    shutil.rmtree(directory, ignore_errors=True)
    with LogStore.open(directory) as store:
        batches = [entries(lo, batch, size) for lo in range(1, total + 1, batch)]
        start = time.perf_counter()
        for b in batches:
            store.append(b)
        elapsed = time.perf_counter() - start
        t0 = time.perf_counter()
        store.sync()
        final_sync = time.perf_counter() - t0
    return {
        "entries_per_s": total / elapsed,
        "mib_per_s": total * (size + 32) / elapsed / 2**20,
        "final_sync_ms": final_sync * 1e3,
    }


def run_hard_state(directory: Path, rounds: int) -> dict[str, float]:
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    f = HardStateFile.open(directory / "hardstate", fsync=True)
    slot: list[float] = []
    for t in range(1, rounds + 1):
        t0 = time.perf_counter()
        f.save(HardState(Term(t), NodeId("n1"), LogIndex(t)))
        f.sync(fsync=True)
        slot.append(time.perf_counter() - t0)
    f.close()
    rename: list[float] = []
    for t in range(1, rounds + 1):
        t0 = time.perf_counter()
        write_atomic(directory / "hs-rename", b"%d n1 %d" % (t, t), fsync=True)
        rename.append(time.perf_counter() - t0)
    return {
        "two_slot_p50_ms": statistics.median(slot) * 1e3,
        "rename_p50_ms": statistics.median(rename) * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds, fewer samples")
    parser.add_argument("--dir", type=Path, help="directory on the disk to measure")
    parser.add_argument("--entry-bytes", type=int, default=256)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    per_entry_n = 200 if args.quick else 2000
    group_n = args.batch * (20 if args.quick else 200)
    base = Path(tempfile.mkdtemp(prefix="bench-storage-", dir=args.dir))
    try:
        single = run_batches(base / "single", per_entry_n, 1, args.entry_bytes)
        group = run_batches(base / "group", group_n, args.batch, args.entry_bytes)
        ceiling = run_append_only(base / "append", group_n, args.batch, args.entry_bytes)
        hard = run_hard_state(base / "hs", 50 if args.quick else 300)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"machine: {platform.machine()} {platform.system()} {platform.release()}, "
          f"python {platform.python_version()}, dir {base.parent}")  # fmt: skip
    print(f"entry {args.entry_bytes} B; fsync on")
    print(f"fsync per entry : {single['entries_per_s']:10.0f} entries/s  "
          f"p50 {single['sync_p50_ms']:.3f} ms  p99 {single['sync_p99_ms']:.3f} ms")  # fmt: skip
    print(f"group commit x{args.batch:<4}: {group['entries_per_s']:10.0f} entries/s  "
          f"batch p50 {group['sync_p50_ms']:.3f} ms  p99 {group['sync_p99_ms']:.3f} ms  "
          f"{group['mib_per_s']:.1f} MiB/s")  # fmt: skip
    print(f"append, no sync : {ceiling['entries_per_s']:10.0f} entries/s  "
          f"{ceiling['mib_per_s']:.1f} MiB/s")  # fmt: skip
    print(f"hard state      : two-slot p50 {hard['two_slot_p50_ms']:.3f} ms, "
          f"temp+rename p50 {hard['rename_p50_ms']:.3f} ms")  # fmt: skip
    ratio = group["entries_per_s"] / single["entries_per_s"]
    print(json.dumps({
        "bench": "storage",
        "quick": args.quick,
        "entry_bytes": args.entry_bytes,
        "batch": args.batch,
        "fsync_per_entry": single,
        "group_commit": group,
        "append_only": ceiling,
        "hard_state": hard,
        "baseline": "fsync_per_entry",
        "ratio": ratio,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
