"""colonymesh transport (TCP + Noise + Yamux) against a raw trio TCP socket, same run.

    python bench/transport.py [--quick]

The server side runs in a subprocess (a second OS process, as a real peer
would be) and serves, for both stacks, an echo and a sink. Measured:
* rtt      -- 32-byte request, 32-byte echo, one connection / one stream, p50 and p99;
* bulk     -- one stream/socket sends N MB to a sink that answers with the byte
              count after EOF (so the receiver's work is inside the timing);
* connect  -- TCP connect + multistream + Noise XX + yamux, median of several;
* idle RSS and start-to-listening of a node process (python -c: import, key, listen).
With the py-libp2p interop venv present, py-libp2p's figures are measured too
(``tests/transport/interop/py_bench.py``). Last stdout line: one JSON object
with ``baseline`` and ``ratio`` (rtt: ours/raw p50, lower is better; bulk:
ours/raw MB/s, higher is better).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import trio

from colonymesh.node.identity import KeyPair
from colonymesh.node.transport.host import Host
from colonymesh.node.transport.stream import MuxedStream

ECHO = "/bench/echo/1.0.0"
SINK = "/bench/sink/1.0.0"
MESSAGE = b"m" * 32
CHUNK = 256 * 1024
ROOT = Path(__file__).resolve().parent.parent
PY_BENCH = ROOT / "tests" / "transport" / "interop" / "py_bench.py"
INTEROP_PYTHON = (
    Path(os.environ.get("COLONYMESH_INTEROP_VENV", "/work/interop-venv")) / "bin" / "python"
)


# --- the server process ---------------------------------------------------------


async def _raw_echo(stream: trio.SocketStream) -> None:
    try:
        while data := await stream.receive_some(65536):
            await stream.send_all(data)
    except trio.BrokenResourceError:
        pass


async def _raw_sink(stream: trio.SocketStream) -> None:
    total = 0
    while data := await stream.receive_some(CHUNK):
        total += len(data)
    await stream.send_all(total.to_bytes(8, "big"))
    await stream.aclose()


async def _echo(stream: MuxedStream) -> None:
    while data := await stream.receive_some():
        await stream.send_all(data)


async def _sink(stream: MuxedStream) -> None:
    total = 0
    while data := await stream.receive_some(CHUNK):
        total += len(data)
    await stream.send_all(total.to_bytes(8, "big"))
    await stream.send_eof()


async def serve() -> None:
    async with Host.open(KeyPair.from_seed(b"\x01" * 32)) as host, trio.open_nursery() as nursery:
        host.set_stream_handler(ECHO, _echo)
        host.set_stream_handler(SINK, _sink)
        ours = await host.listen("127.0.0.1", 0)
        raw_echo = (await nursery.start(trio.serve_tcp, _raw_echo, 0))[0]
        raw_sink = (await nursery.start(trio.serve_tcp, _raw_sink, 0))[0]
        ports = {
            "ours": int(ours[0].rsplit("/", 1)[1]),
            "raw_echo": raw_echo.socket.getsockname()[1],
            "raw_sink": raw_sink.socket.getsockname()[1],
        }
        print(json.dumps(ports), flush=True)
        await trio.sleep_forever()


# --- the client -------------------------------------------------------------------


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def _rtts(send: Any, receive_exactly: Any, count: int) -> list[float]:
    for _ in range(200):  # warm-up
        await send(MESSAGE)
        await receive_exactly(32)
    rtts = []
    clock = time.perf_counter
    for _ in range(count):
        started = clock()
        await send(MESSAGE)
        await receive_exactly(32)
        rtts.append(clock() - started)
    return rtts


async def _raw_receive_exactly(stream: trio.SocketStream, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = await stream.receive_some(count - len(data))
        if not chunk:
            raise RuntimeError("raw echo closed")
        data += chunk
    return data


async def _bulk(send_all: Any, send_eof: Any, receive_exactly: Any, total: int) -> float:
    chunk = os.urandom(CHUNK)
    started = time.perf_counter()
    sent = 0
    while sent < total:
        await send_all(chunk)
        sent += len(chunk)
    await send_eof()
    counted = int.from_bytes(await receive_exactly(8), "big")
    elapsed = time.perf_counter() - started
    if counted != sent:
        raise RuntimeError(f"sink counted {counted} of {sent} bytes")
    return sent / elapsed / 1e6


async def measure_raw(ports: dict[str, int], rtt_count: int, bulk_bytes: int) -> dict[str, float]:
    echo = await trio.open_tcp_stream("127.0.0.1", ports["raw_echo"])
    rtts = await _rtts(echo.send_all, lambda n: _raw_receive_exactly(echo, n), rtt_count)
    await echo.aclose()
    sink = await trio.open_tcp_stream("127.0.0.1", ports["raw_sink"])
    mb_s = await _bulk(
        sink.send_all, sink.send_eof, lambda n: _raw_receive_exactly(sink, n), bulk_bytes
    )
    await sink.aclose()
    return {
        "rtt_p50_us": _percentile(rtts, 0.5) * 1e6,
        "rtt_p99_us": _percentile(rtts, 0.99) * 1e6,
        "bulk_mb_s": mb_s,
    }


async def measure_ours(
    ports: dict[str, int], rtt_count: int, bulk_bytes: int, dials: int
) -> dict[str, float]:
    async with Host.open(KeyPair.from_seed(b"\x02" * 32)) as host:
        connects = []
        for _ in range(dials):
            started = time.perf_counter()
            connection = await host.dial("127.0.0.1", ports["ours"])
            connects.append(time.perf_counter() - started)
            await connection.aclose()
        connection = await host.dial("127.0.0.1", ports["ours"])
        echo = await connection.open_stream([ECHO])
        rtts = await _rtts(echo.send_all, echo.receive_exactly, rtt_count)
        await echo.aclose()
        sink = await connection.open_stream([SINK])
        mb_s = await _bulk(sink.send_all, sink.send_eof, sink.receive_exactly, bulk_bytes)
        await sink.aclose()
    return {
        "rtt_p50_us": _percentile(rtts, 0.5) * 1e6,
        "rtt_p99_us": _percentile(rtts, 0.99) * 1e6,
        "bulk_mb_s": mb_s,
        "connect_ms": statistics.median(connects) * 1e3,
    }


_NODE_SCRIPT = """
import trio
from colonymesh.node.identity import KeyPair
from colonymesh.node.transport.host import Host
async def main():
    async with Host.open(KeyPair.generate()) as host:
        await host.listen("127.0.0.1", 0)
        print("listening", flush=True)
        await trio.sleep_forever()
trio.run(main)
"""


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def measure_node_process(runs: int) -> dict[str, float]:
    """Start-to-listening and idle RSS of a listening node process (medians)."""
    starts, rsses = [], []
    for _ in range(runs):
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-c", _NODE_SCRIPT], stdout=subprocess.PIPE)
        try:
            if process.stdout is None or process.stdout.readline() != b"listening\n":
                raise RuntimeError("node process did not start")
            starts.append(time.perf_counter() - started)
            time.sleep(0.5)
            rsses.append(_rss_mb(process.pid))
        finally:
            process.terminate()
            process.wait()
    return {
        "start_to_listening_s": statistics.median(starts),
        "idle_rss_mb": statistics.median(rsses),
    }


def measure_py_libp2p(quick: bool) -> dict[str, float] | None:
    if not INTEROP_PYTHON.exists() or not PY_BENCH.exists():
        return None
    args = [str(INTEROP_PYTHON), str(PY_BENCH)] + (["--quick"] if quick else [])
    result = subprocess.run(args, capture_output=True, timeout=600, check=False)
    lines = result.stdout.decode().strip().splitlines()
    if result.returncode != 0 or not lines:
        print(f"py-libp2p bench failed: {result.stderr.decode()[-500:]}", file=sys.stderr)
        return None
    figures: dict[str, float] = json.loads(lines[-1])
    return figures


async def client(quick: bool) -> dict[str, Any]:
    rtt_count = 2000 if quick else 10000
    bulk_bytes = (20 if quick else 100) * 1000 * 1000
    process = await trio.lowlevel.open_process(
        [sys.executable, __file__, "--serve"], stdout=subprocess.PIPE
    )
    try:
        if process.stdout is None:
            raise RuntimeError("no pipe")
        line = b""
        while not line.endswith(b"\n"):
            line += await process.stdout.receive_some(1)
        ports = json.loads(line)
        raw = await measure_raw(ports, rtt_count, bulk_bytes)
        ours = await measure_ours(ports, rtt_count, bulk_bytes, dials=10 if quick else 30)
    finally:
        process.terminate()
        await process.wait()
    return {"raw": raw, "ours": ours}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 round trips, 20 MB bulk")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-py-libp2p", action="store_true", help="skip py-libp2p's figures")
    args = parser.parse_args()
    if args.serve:
        trio.run(serve)
        return
    figures = trio.run(client, args.quick)
    raw, ours = figures["raw"], figures["ours"]
    node = measure_node_process(3 if args.quick else 5)
    py = None if args.no_py_libp2p else measure_py_libp2p(args.quick)
    print(
        f"machine: {platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}"
    )
    print(f"{'':24}{'raw trio TCP':>16}{'colonymesh':>16}{'py-libp2p':>16}")
    for label, key, unit in (
        ("rtt p50", "rtt_p50_us", "us"),
        ("rtt p99", "rtt_p99_us", "us"),
        ("bulk, one stream", "bulk_mb_s", "MB/s"),
        ("connect", "connect_ms", "ms"),
    ):
        cells = [raw.get(key), ours.get(key), py.get(key) if py else None]
        text = [f"{c:>11.1f} {unit:<4}" if c is not None else f"{'-':>16}" for c in cells]
        print(f"{label:24}{''.join(text)}")
    print(
        f"node process: start to listening {node['start_to_listening_s']:.3f} s, idle RSS {node['idle_rss_mb']:.1f} MB"
    )
    rtt_ratio = ours["rtt_p50_us"] / raw["rtt_p50_us"]
    bulk_ratio = ours["bulk_mb_s"] / raw["bulk_mb_s"]
    print(f"ratio: rtt {rtt_ratio:.2f}x raw (goal <= 2), bulk {bulk_ratio:.2f}x raw (goal >= 0.5)")
    summary = {
        "bench": "transport",
        "quick": args.quick,
        "baseline": "raw trio TCP",
        "raw": raw,
        "ours": ours,
        "node_process": node,
        "py_libp2p": py,
        "ratio": {"rtt_p50": round(rtt_ratio, 3), "bulk": round(bulk_ratio, 3)},
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
