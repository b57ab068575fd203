"""Meta-filesystem throughput through the full stack, against a raw trio socket.

    python bench/fs.py [--quick] [--profile]

In one trio run on loopback, over the same pseudo-random file (256 MiB, or
64 MiB with --quick):

* hashing   -- `cid_of_path` (256 KiB chunks, sha2-256, UnixFS DAG), and plain
               hashlib.sha256 over the same bytes for scale;
* put       -- `ChunkService.put_path` on peer A: import into A's chunk store
               (every block verified, written atomically and fsynced) and pin;
* get       -- `ChunkService.get` on peer B: find providers (HAVE), fetch every
               block from A over ``/colonymesh/fs/1.0.0`` (Noise + yamux streams,
               colony gating), verify, store (fsynced), then export to a file;
* get x2    -- the same on peer C, pulling from A and B in parallel;
* fetch     -- the network part of a get alone (blocks into the store, no export);
* raw       -- the baseline: the same bytes read from the file and sent over one
               plain trio TCP socket on loopback, received and discarded.

Every peer lives in this one process (one GIL for both ends, as for the raw
socket). The last stdout line is one JSON object; ``ratio`` = get MB/s / raw
MB/s (goal >= 0.5).
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import os
import platform
import pstats
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from colonymesh.fs import cid_of_path
from colonymesh.node.fsnet.lab import open_fs_lab

PIECE = 1 << 20


def _make_file(path: Path, size: int) -> None:
    rng = random.Random(7)
    with path.open("wb") as handle:
        for _ in range(size // PIECE):
            handle.write(rng.randbytes(PIECE))


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb", buffering=0) as handle:
        while piece := handle.read(PIECE):
            digest.update(piece)
    return digest.hexdigest()


async def _raw_socket(path: Path) -> float:
    """Seconds to move the file's bytes over one plain trio socket on loopback."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    received = 0
    done = trio.Event()

    async def sink(stream: trio.SocketStream) -> None:
        nonlocal received
        while chunk := await stream.receive_some(256 * 1024):
            received += len(chunk)
        done.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, sink, listeners)
        started = time.perf_counter()
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            handle = await trio.open_file(path, "rb", buffering=0)
            async with handle:
                while piece := await handle.read(PIECE):
                    await stream.send_all(piece)
        await done.wait()
        seconds = time.perf_counter() - started
        nursery.cancel_scope.cancel()
    if received != path.stat().st_size:
        raise RuntimeError(f"raw socket moved {received} bytes")
    return seconds


async def _measure(work: Path, size: int, profile: cProfile.Profile | None) -> dict[str, Any]:
    source = work / "input.bin"
    _make_file(source, size)
    expected = _sha256_file(source)
    figures: dict[str, Any] = {"bytes": size}
    mb = size / 1e6

    started = time.perf_counter()
    with source.open("rb", buffering=0) as handle:
        digest = hashlib.sha256()
        while piece := handle.read(PIECE):
            digest.update(piece)
    figures["sha256_mb_s"] = round(mb / (time.perf_counter() - started), 1)
    started = time.perf_counter()
    root_text = cid_of_path(source)
    figures["chunk_hash_mb_s"] = round(mb / (time.perf_counter() - started), 1)

    figures["raw_socket_mb_s"] = round(mb / await _raw_socket(source), 1)

    async with open_fs_lab(work / "state", 3, secret="bench") as (a, b, c):
        started = time.perf_counter()
        root = await a.put_path(source)
        figures["put_mb_s"] = round(mb / (time.perf_counter() - started), 1)
        if root.encode() != root_text:
            raise RuntimeError("put gave another CID than cid_of_path")

        if profile is not None:
            profile.enable()
        started = time.perf_counter()
        got = await b.get(root, work / "on-b.bin")
        figures["get_mb_s"] = round(mb / (time.perf_counter() - started), 1)
        if profile is not None:
            profile.disable()
        figures["get_fetch_s"] = round(got.fetched.seconds, 3)
        figures["fetch_mb_s"] = round(mb / got.fetched.seconds, 1)

        started = time.perf_counter()
        got2 = await c.get(root, work / "on-c.bin")
        figures["get_two_providers_mb_s"] = round(mb / (time.perf_counter() - started), 1)
        figures["get_two_providers_blocks"] = got2.fetched.by_peer and sorted(
            got2.fetched.by_peer.values()
        )
    for name in ("on-b.bin", "on-c.bin"):
        if _sha256_file(work / name) != expected:
            raise RuntimeError(f"{name} differs from the input")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64 MiB instead of 256 MiB")
    parser.add_argument("--profile", action="store_true", help="cProfile the first get")
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: a temp dir)")
    args = parser.parse_args()
    size = (64 if args.quick else 256) * PIECE
    profile = cProfile.Profile() if args.profile else None
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        figures = trio.run(_measure, Path(tmp), size, profile)
    if profile is not None:
        pstats.Stats(profile, stream=sys.stderr).sort_stats("tottime").print_stats(40)
    ratio = figures["get_mb_s"] / figures["raw_socket_mb_s"]
    for key, value in figures.items():
        print(f"{key:>28}: {value}")
    print(f"ratio: get {ratio:.3f}x raw socket (goal >= 0.5)")
    print(
        json.dumps(
            {
                "bench": "fs",
                "quick": args.quick,
                "machine": f"{platform.machine()} {os.cpu_count()} cpu, Python {platform.python_version()}",
                **figures,
                "baseline": "raw trio TCP socket on loopback, same bytes, same run",
                "ratio": round(ratio, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
