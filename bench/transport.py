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
    return elapsed


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Raw:
    def __init__(self, ports: dict[str, int]) -> None:
        self.ports = ports
        self.echo: trio.SocketStream | None = None

    async def rtts(self, count: int) -> list[float]:
        if self.echo is None:
            self.echo = await trio.open_tcp_stream("127.0.0.1", self.ports["raw_echo"])
        echo = self.echo
        return await _rtts(echo.send_all, lambda n: _raw_receive_exactly(echo, n), count)

    async def bulk(self, total: int) -> float:
        sink = await trio.open_tcp_stream("127.0.0.1", self.ports["raw_sink"])
        try:
            return await _bulk(
                sink.send_all, sink.send_eof, lambda n: _raw_receive_exactly(sink, n), total
            )
        finally:
            await sink.aclose()


class _Ours:
    def __init__(self, host: Host, port: int) -> None:
        self.host = host
        self.port = port
        self.echo: MuxedStream | None = None

    async def connect_times(self, dials: int) -> list[float]:
        connects = []
        for _ in range(dials):
            started = time.perf_counter()
            connection = await self.host.dial("127.0.0.1", self.port)
            connects.append(time.perf_counter() - started)
            await connection.aclose()
        self.connection = await self.host.dial("127.0.0.1", self.port)
        return connects

    async def rtts(self, count: int) -> list[float]:
        if self.echo is None:
            self.echo = await self.connection.open_stream([ECHO])
        return await _rtts(self.echo.send_all, self.echo.receive_exactly, count)

    async def bulk(self, total: int) -> float:
        sink = await self.connection.open_stream([SINK])
        try:
            return await _bulk(sink.send_all, sink.send_eof, sink.receive_exactly, total)
        finally:
            await sink.aclose()


async def measure(
    ports: dict[str, int], server_pid: int, rtt_count: int, bulk_bytes: int, dials: int, rounds: int
) -> dict[str, dict[str, float]]:
    """Raw and ours interleaved, ``rounds`` times, so load changes hit both alike; medians."""
    async with Host.open(KeyPair.from_seed(b"\x02" * 32)) as host:
        raw, ours = _Raw(ports), _Ours(host, ports["ours"])
        connects = await ours.connect_times(dials)
        rtts: dict[str, list[float]] = {"raw": [], "ours": []}
        bulks: dict[str, list[float]] = {"raw": [], "ours": []}
        cpu: dict[str, float] = {"raw": 0.0, "ours": 0.0}
        for _ in range(rounds):
            for name, side in (("raw", raw), ("ours", ours)):
                rtts[name] += await side.rtts(rtt_count // rounds)
        for _ in range(rounds):
            for name, side in (("raw", raw), ("ours", ours)):
                cpu_before = time.process_time() + _cpu_s(server_pid)
                bulks[name].append(await side.bulk(bulk_bytes))
                cpu[name] += time.process_time() + _cpu_s(server_pid) - cpu_before
    out: dict[str, dict[str, float]] = {}
    for name in ("raw", "ours"):
        out[name] = {
            "rtt_p50_us": _percentile(rtts[name], 0.5) * 1e6,
            "rtt_p99_us": _percentile(rtts[name], 0.99) * 1e6,
            "bulk_mb_s": bulk_bytes / statistics.median(bulks[name]) / 1e6,
            "bulk_cpu_s_per_gb": cpu[name] / (rounds * bulk_bytes / 1e9),  # both processes
        }
    out["ours"]["connect_ms"] = statistics.median(connects) * 1e3
    return out


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
        figures = await measure(
            ports, process.pid, rtt_count, bulk_bytes, dials=10 if quick else 30, rounds=5
        )
    finally:
        process.terminate()
        await process.wait()
    return figures


def measure_cipher_ceiling(megabytes: int = 200) -> dict[str, float]:
    """What libp2p's mandated cipher alone allows: ChaCha20-Poly1305 seal and open of
    full Noise frames on one core. An encrypted stream can go no faster than its
    slower end's cipher, however lean the rest of the path is."""
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    aead = ChaCha20Poly1305(os.urandom(32))
    frame = os.urandom(65519)
    out = bytearray(len(frame) + 16)
    count = megabytes * 1_000_000 // len(frame)
    nonce = bytes(12)
    started = time.perf_counter()
    for _ in range(count):
        aead.encrypt_into(nonce, frame, None, out)
    seal_s = time.perf_counter() - started
    sealed = bytes(out)
    started = time.perf_counter()
    for _ in range(count):
        aead.decrypt(nonce, sealed, None)
    open_s = time.perf_counter() - started
    total = count * len(frame)
    return {"seal_mb_s": total / seal_s / 1e6, "open_mb_s": total / open_s / 1e6}


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
        ("bulk CPU, both ends", "bulk_cpu_s_per_gb", "s/GB"),
        ("connect", "connect_ms", "ms"),
    ):
        cells = [raw.get(key), ours.get(key), py.get(key) if py else None]
        text = [f"{c:>11.1f} {unit:<4}" if c is not None else f"{'-':>16}" for c in cells]
        print(f"{label:24}{''.join(text)}")
    print(
        f"node process: start to listening {node['start_to_listening_s']:.3f} s, idle RSS {node['idle_rss_mb']:.1f} MB"
    )
    cipher = measure_cipher_ceiling(50 if args.quick else 200)
    ceiling = min(cipher["seal_mb_s"], cipher["open_mb_s"])
    print(
        f"cipher alone (ChaCha20-Poly1305, one core): seal {cipher['seal_mb_s']:.0f} MB/s, "
        f"open {cipher['open_mb_s']:.0f} MB/s = at most {ceiling / raw['bulk_mb_s']:.2f}x raw "
        "for any Noise transport before a single syscall or copy"
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
        "cipher_ceiling": cipher,
        "ratio": {
            "rtt_p50": round(rtt_ratio, 3),
            "bulk": round(bulk_ratio, 3),
            "bulk_cipher_ceiling": round(ceiling / raw["bulk_mb_s"], 3),
        },
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
