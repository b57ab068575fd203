"""Meta-filesystem throughput through the full stack, against a raw trio socket.

    python bench/fs.py [--quick] [--profile] [--fsync-per-block]

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

``--fsync-per-block`` stores every block with its own three fsyncs (the store
before batched puts), for a before/after in the same conditions.

Every peer lives in this one process (one GIL for both ends, as for the raw
socket). The last stdout line is one JSON object; ``ratio`` = get MB/s / raw
MB/s (goal >= 0.5).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import hashlib
import json
import os
import platform
import pstats
import random
import subprocess
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import trio

from colonymesh.fs import cid_of_path
from colonymesh.fs.cid import Cid
from colonymesh.fs.store import ChunkStore
from colonymesh.node.fsnet import ChunkService
from colonymesh.node.fsnet.lab import lab_colony
from colonymesh.node.peer.peer import Peer

PIECE = 1 << 20
_PER_BLOCK_ENV = "COLONYMESH_BENCH_FSYNC_PER_BLOCK"
_PROFILE_ENV = "COLONYMESH_BENCH_PROFILE_CHILDREN"
_SWITCH_ENV = "COLONYMESH_BENCH_SWITCH_INTERVAL"


def _per_block_fsync_if_asked() -> None:
    """Make `put_batch` store block by block (fsync each), as the store did before batching."""
    if os.environ.get(_PER_BLOCK_ENV) != "1":
        return

    def put_each(self: ChunkStore, items: Any) -> int:
        return sum(self.put_bytes(cid, data) for cid, data in items)

    ChunkStore.put_batch = put_each  # type: ignore[method-assign]


def _cpu_s() -> float:
    """CPU seconds of this process so far, every thread, user and system."""
    times = os.times()
    return times.user + times.system


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


# --- a provider peer in its own process (python bench/fs.py --serve ...) ------------------


async def _serve(secret: str, members: int, now: int, index: int, store_dir: Path) -> None:
    """A lab peer answering JSON-line commands on stdin: put, get, raw, quit."""
    lab = lab_colony(secret, members, now)
    async with Peer.open(lab.peer_config(index)) as peer:
        service = ChunkService(peer, ChunkStore(store_dir, 2**34))
        print(json.dumps({"peer_id": peer.peer_id, "addr": peer.listen_addrs[0]}), flush=True)
        while line := await trio.to_thread.run_sync(sys.stdin.readline):
            doc = json.loads(line)
            started = time.perf_counter()
            answer: dict[str, Any] = {}
            match doc["cmd"]:
                case "connect":
                    await peer.connect(doc["addr"], timeout=10)
                case "put":
                    answer["cid"] = (await service.put_path(doc["path"])).encode()
                case "get":
                    await service.get(Cid.parse(doc["cid"]), doc["dest"])
                case "raw":
                    await _raw_send(doc["port"], Path(doc["path"]))
                case "cpu":
                    answer["cpu_s"] = _cpu_s()
                case "quit":
                    return
            answer["seconds"] = time.perf_counter() - started
            print(json.dumps(answer), flush=True)


async def _raw_send(port: int, path: Path) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        handle = await trio.open_file(path, "rb", buffering=0)
        async with handle:
            while piece := await handle.read(PIECE):
                await stream.send_all(piece)


class _Child:
    def __init__(self, work: Path, secret: str, now: int, index: int) -> None:
        args = ["--serve", secret, "4", str(now), str(index), str(work / f"store-{index}")]
        self.process = subprocess.Popen(
            [sys.executable, __file__, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        hello = self._read()
        self.peer_id, self.addr = hello["peer_id"], hello["addr"]

    def _read(self) -> dict[str, Any]:
        stdout = self.process.stdout
        line = stdout.readline() if stdout is not None else b""
        if not line:
            raise RuntimeError(f"bench child exited: {self.process.wait()}")
        doc: dict[str, Any] = json.loads(line)
        return doc

    async def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        stdin = self.process.stdin
        if stdin is None:
            raise RuntimeError("no stdin")
        stdin.write(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
        stdin.flush()
        return await trio.to_thread.run_sync(self._read)

    def stop(self) -> None:
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.write(b'{"cmd": "quit"}\n')
                self.process.stdin.close()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


async def _raw_socket(child: _Child, path: Path) -> float:
    """Seconds for a plain trio TCP socket to carry the file's bytes from the child to us."""
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
        await child.call("raw", port=port, path=str(path))
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
    _sha256_file(source)
    figures["sha256_mb_s"] = round(mb / (time.perf_counter() - started), 1)
    started = time.perf_counter()
    root_text = cid_of_path(source)
    figures["chunk_hash_mb_s"] = round(mb / (time.perf_counter() - started), 1)

    now = int(time.time())
    lab = lab_colony("bench", 4, now)
    a = _Child(work, "bench", now, 0)
    b = _Child(work, "bench", now, 1)
    try:
        figures["raw_socket_mb_s"] = round(mb / await _raw_socket(a, source), 1)
        async with AsyncExitStack() as stack:
            readers = []
            for index in (2, 3):
                peer = await stack.enter_async_context(Peer.open(lab.peer_config(index)))
                store = ChunkStore(work / f"store-{index}", 2**34)
                readers.append(ChunkService(peer, store))
                await peer.connect(a.addr, timeout=10)
                await peer.connect(b.addr, timeout=10)
            await b.call("connect", addr=a.addr)
            c, d = readers

            put = await a.call("put", path=str(source))
            figures["put_mb_s"] = round(mb / put["seconds"], 1)
            if put["cid"] != root_text:
                raise RuntimeError("put gave another CID than cid_of_path")
            root = Cid.parse(root_text)

            if profile is not None:
                profile.enable()
            provider_cpu = (await a.call("cpu"))["cpu_s"]
            reader_cpu = _cpu_s()
            started = time.perf_counter()
            got = await c.get(root, work / "on-c.bin")
            get_s = time.perf_counter() - started
            figures["get_mb_s"] = round(mb / get_s, 1)
            figures["export_s"] = round(get_s - got.fetched.seconds, 3)
            figures["get_s"] = round(get_s, 3)
            figures["get_cpu_reader_s"] = round(_cpu_s() - reader_cpu, 3)
            figures["get_cpu_provider_s"] = round((await a.call("cpu"))["cpu_s"] - provider_cpu, 3)
            if profile is not None:
                profile.disable()
            figures["fetch_mb_s"] = round(mb / got.fetched.seconds, 1)

            await b.call("get", cid=root_text, dest=str(work / "on-b.bin"))
            started = time.perf_counter()
            got2 = await d.get(root, work / "on-d.bin")
            figures["get_two_providers_mb_s"] = round(mb / (time.perf_counter() - started), 1)
            figures["get_two_providers_blocks"] = sorted(got2.fetched.by_peer.values())
    finally:
        a.stop()
        b.stop()
    for name in ("on-b.bin", "on-c.bin", "on-d.bin"):
        if _sha256_file(work / name) != expected:
            raise RuntimeError(f"{name} differs from the input")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64 MiB instead of 256 MiB")
    parser.add_argument("--profile", action="store_true", help="cProfile the first get")
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: a temp dir)")
    parser.add_argument(
        "--fsync-per-block", action="store_true", help="no batched puts (the before figure)"
    )
    parser.add_argument("--serve", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument(
        "--switch-interval",
        type=float,
        default=None,
        help="sys.setswitchinterval for every process of the bench (Python's default: 0.005)",
    )
    args = parser.parse_args()
    if args.switch_interval is not None:
        os.environ[_SWITCH_ENV] = str(args.switch_interval)  # the children inherit it
    if os.environ.get(_SWITCH_ENV):
        sys.setswitchinterval(float(os.environ[_SWITCH_ENV]))
    if args.fsync_per_block:
        os.environ[_PER_BLOCK_ENV] = "1"  # the provider processes inherit it
    _per_block_fsync_if_asked()
    if args.serve:
        secret, members, now, index, store = args.serve
        child_profile = os.environ.get(_PROFILE_ENV)
        if not child_profile:
            trio.run(_serve, secret, int(members), int(now), int(index), Path(store))
            return
        with cProfile.Profile() as served:
            trio.run(_serve, secret, int(members), int(now), int(index), Path(store))
        served.dump_stats(f"{child_profile}.{index}")
        return
    size = (64 if args.quick else 256) * PIECE
    profile = cProfile.Profile() if args.profile else None
    if args.profile:  # the provider processes profile themselves
        os.environ[_PROFILE_ENV] = os.path.join(tempfile.gettempdir(), f"fsbench-{os.getpid()}")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        figures = trio.run(_measure, Path(tmp), size, profile)
    if profile is not None:
        pstats.Stats(profile, stream=sys.stderr).sort_stats("tottime").print_stats(40)
        profile.dump_stats(os.environ[_PROFILE_ENV] + ".reader")
        served = Path(os.environ[_PROFILE_ENV] + ".0")
        if served.exists():
            print("--- provider (child 0, whole life) ---", file=sys.stderr)
            pstats.Stats(str(served), stream=sys.stderr).sort_stats("tottime").print_stats(30)
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
                "fsync_per_block": args.fsync_per_block,
                "switch_interval_s": sys.getswitchinterval(),
            }
        )
    )


if __name__ == "__main__":
    main()
