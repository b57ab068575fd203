"""Chunk hashing + UnixFS DAG building throughput, against plain hashlib.sha256.

    python bench/fs_hash.py [--quick]

Measures, over the same pseudo-random bytes in the same run:
* baseline  -- hashlib.sha256 over the buffer, fed 1 MiB at a time;
* importer  -- FileImporter (256 KiB chunks, raw leaves, balanced DAG): copies
               each chunk, hashes it, builds and hashes the dag-pb nodes;
* cid_of_path -- the same bytes read from a temporary file (disk cache warm);
* fastcdc   -- the optional content-defined chunker alone (pure Python), on a
               smaller slice.
Each figure is the best of several repetitions. The last stdout line is one
JSON object; "ratio" = importer MB/s / baseline MB/s (1.0 = hashing is free).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import tempfile
import time
from collections.abc import Callable

from colonymesh.fs import cid_of_path
from colonymesh.fs.cdc import FastCdcChunker, chunk_all
from colonymesh.fs.importer import FileImporter

PIECE = 1 << 20


def _best_mb_s(fn: Callable[[], object], nbytes: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return nbytes / best / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16 MiB, 3 repetitions")
    args = parser.parse_args()
    size = (16 if args.quick else 128) << 20
    repeats = 3 if args.quick else 5
    data = random.Random(1).randbytes(size)
    view = memoryview(data)

    def baseline() -> bytes:
        h = hashlib.sha256()
        for i in range(0, size, PIECE):
            h.update(view[i : i + PIECE])
        return h.digest()

    def importer() -> str:
        imp = FileImporter()
        for i in range(0, size, PIECE):
            imp.feed(view[i : i + PIECE])
        root, _ = imp.finish()
        return root.cid.encode()

    baseline_mb_s = _best_mb_s(baseline, size, repeats)
    importer_mb_s = _best_mb_s(importer, size, repeats)
    print(f"hashlib.sha256     {baseline_mb_s:8.1f} MB/s")
    print(f"importer (DAG)     {importer_mb_s:8.1f} MB/s  root {importer()}")

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "data")
        with open(path, "wb") as handle:
            handle.write(data)
        path_mb_s = _best_mb_s(lambda: cid_of_path(path), size, repeats)
    print(f"cid_of_path (file) {path_mb_s:8.1f} MB/s")

    cdc_bytes = min(size, 8 << 20) if not args.quick else 2 << 20
    cdc_data = data[:cdc_bytes]
    cdc_mb_s = _best_mb_s(lambda: chunk_all(FastCdcChunker(), cdc_data), cdc_bytes, 1)
    print(f"fastcdc chunking   {cdc_mb_s:8.1f} MB/s (pure Python, {cdc_bytes >> 20} MiB)")

    print(
        json.dumps(
            {
                "bench": "fs_hash",
                "bytes": size,
                "quick": args.quick,
                "importer_mb_s": round(importer_mb_s, 1),
                "cid_of_path_mb_s": round(path_mb_s, 1),
                "fastcdc_mb_s": round(cdc_mb_s, 1),
                "baseline": "hashlib.sha256",
                "baseline_mb_s": round(baseline_mb_s, 1),
                "ratio": round(importer_mb_s / baseline_mb_s, 3),
                "python": platform.python_version(),
                "machine": platform.machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
