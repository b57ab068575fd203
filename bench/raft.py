"""Benchmark of Raft commits: colonymesh's driver vs PySyncObj, 3 voters on loopback.

colonymesh: three :class:`~colonymesh.node.raft.driver.RaftDriver` s in one trio
process, each on its own real :class:`~colonymesh.node.peer.peer.Peer` (TCP on
127.0.0.1, Noise, yamux, the ``/colonymesh/raft/1.0.0`` streams of
:class:`~colonymesh.node.raft.network.PeerRaftNetwork`) and its own
:class:`~colonymesh.consensus.storage.LogStore` on the real disk with fsync ON.
Closed-loop clients at the leader: each proposes a command, waits until it is
applied, proposes the next. Commit latency is propose -> applied at the leader.

PySyncObj (the baseline, same run, in a child process): three ``SyncObj`` nodes
on loopback in one process, the same closed loop through a ``@replicated``
method with callbacks. PySyncObj keeps its log in memory (not durable); with
``journalFile`` it writes an mmap'ed journal that it never msyncs or fsyncs on
commit, so it is not durable against a machine crash either. Both are measured.

Run: ``python bench/raft.py [--quick] [--seconds S] [--concurrency 1,64] [--dir PATH]``.
The last stdout line is one JSON object: our figures per concurrency, the
baseline's (PySyncObj in memory), and ``ratio`` = our commits/s over
PySyncObj's at the highest concurrency.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import trio

from colonymesh.consensus import RaftConfig, Role
from colonymesh.consensus.storage import LogStore
from colonymesh.consensus.types import Entry, NodeId
from colonymesh.node.certs import Capabilities, Membership, create_colony, issue_certificate
from colonymesh.node.certs import Role as CertRole
from colonymesh.node.identity import KeyPair
from colonymesh.node.peer.peer import Peer, PeerConfig
from colonymesh.node.raft.driver import DriverConfig, RaftDriver
from colonymesh.node.raft.network import PeerRaftNetwork

RAFT = RaftConfig(election_timeout_s=0.5, heartbeat_interval_s=0.05)


def pct(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(latencies: list[float], elapsed: float) -> dict[str, float]:
    return {
        "commits": len(latencies),
        "commits_per_s": len(latencies) / elapsed,
        "p50_ms": pct(latencies, 0.5) * 1e3,
        "p99_ms": pct(latencies, 0.99) * 1e3,
    }


def median_rows(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per concurrency level, the median of every figure over the runs."""
    if not runs:
        return {}
    return {
        level: {key: statistics.median(run[level][key] for run in runs) for key in runs[0][level]}
        for level in runs[0]
    }


# --- colonymesh -------------------------------------------------------------------


class Counter:
    """The smallest state machine: counts applied commands."""

    def __init__(self) -> None:
        self.count = 0

    def apply(self, entry: Entry) -> int:
        self.count += 1
        return self.count

    def snapshot(self) -> bytes:
        return str(self.count).encode()

    def restore(self, data: bytes) -> None:
        self.count = int(data or b"0")


async def _closed_loop(driver: RaftDriver, clients: int, seconds: float, payload: bytes) -> Any:
    latencies: list[float] = []
    clock = time.perf_counter
    stop = clock() + seconds

    async def client() -> None:
        while clock() < stop:
            t0 = clock()
            await driver.propose(payload)
            latencies.append(clock() - t0)

    started = clock()
    async with trio.open_nursery() as nursery:
        for _ in range(clients):
            nursery.start_soon(client)
    return latencies, clock() - started


MODES = {
    # name: (leader sends while persisting, fsync commit-only Readys)
    "parallel": (True, False),
    "serial": (False, True),  # the driver before leader-parallel persist
}


async def run_ours(
    base: Path, levels: list[int], seconds: float, payload: bytes, mode: str
) -> dict[str, Any]:
    parallel, sync_commit = MODES[mode]
    driver_config = DriverConfig(send_while_persisting=parallel, sync_commit_only=sync_commit)
    now = int(time.time())
    owner = KeyPair.generate()
    colony = create_colony(owner, "bench", now - 60)
    members = []
    for i in range(3):
        keys = KeyPair.generate()
        cert = issue_certificate(
            owner,
            colony,
            keys.public_key,
            name=f"server-{i + 1}",
            roles=[CertRole.SERVER],
            not_before=now - 60,
            not_after=now + 86400,
            serial=i + 1,
            capabilities=Capabilities(cpu_millicores=1000, mem_bytes=2**30),
        )
        members.append((keys, cert))
    ids = [NodeId(c.peer_id) for _, c in members]
    out: dict[str, Any] = {}
    async with AsyncExitStack() as stack:
        peers: list[Peer] = []
        for keys, cert in members:
            membership = Membership(colony)
            for _, known in members:
                membership.admit(known, time.time())
            peers.append(
                await stack.enter_async_context(Peer.open(PeerConfig(keys, membership, cert)))
            )
        for peer in peers:
            for other in peers:
                if other is not peer:
                    for address in other.listen_addrs:
                        peer.add_address(other.peer_id, address)
        async with trio.open_nursery() as nursery:
            drivers: list[RaftDriver] = []
            stores: list[LogStore] = []
            for peer, node in zip(peers, ids, strict=True):
                store = LogStore.open(base / node[:16])
                stores.append(store)
                holder: list[RaftDriver] = []
                network = PeerRaftNetwork(peer, nursery, lambda m, h=holder: h[0].deliver(m))
                driver = RaftDriver(
                    node,
                    store,
                    Counter(),
                    network,
                    founding_voters=ids,
                    raft_config=RAFT,
                    config=driver_config,
                )
                holder.append(driver)
                drivers.append(driver)
                await nursery.start(driver.run)
            leader = await _wait_leader(drivers)
            await _closed_loop(leader, 4, 0.3, payload)  # warm-up: connections, JIT-free caches
            for clients in levels:
                syncs0 = [s.statistics().syncs for s in stores]
                readies0 = leader.stats.readies
                persist0, lsyncs0 = leader.stats.persist_seconds, leader.stats.syncs
                latencies, elapsed = await _closed_loop(leader, clients, seconds, payload)
                row = summary(latencies, elapsed)
                row["leader_syncs"] = (
                    stores[drivers.index(leader)].statistics().syncs - syncs0[drivers.index(leader)]
                )
                row["leader_readies"] = leader.stats.readies - readies0
                row["leader_persist_ms"] = (
                    (leader.stats.persist_seconds - persist0)
                    / max(1, leader.stats.syncs - lsyncs0)
                    * 1e3
                )
                row["all_syncs"] = sum(s.statistics().syncs for s in stores) - sum(syncs0)
                out[str(clients)] = row
            nursery.cancel_scope.cancel()
        for store in stores:
            store.close()
    return out


async def _wait_leader(drivers: list[RaftDriver]) -> RaftDriver:
    with trio.fail_after(20):
        while True:
            for driver in drivers:
                if driver.status().role is Role.LEADER:
                    try:
                        await driver.propose(b"hello")
                    except Exception:  # lost leadership at the start: try again
                        break
                    return driver
            await trio.sleep(0.02)


# --- PySyncObj (child process) -----------------------------------------------------


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def pysyncobj_child(
    levels: list[int], seconds: float, payload_bytes: int, journal: str, batch: bool
) -> None:
    from pysyncobj import SyncObj, SyncObjConf, replicated

    class Counter(SyncObj):  # type: ignore[misc]
        def __init__(self, me: str, others: list[str], conf: Any) -> None:
            super().__init__(me, others, conf=conf)
            self.count = 0

        @replicated  # type: ignore[misc]
        def put(self, data: bytes) -> int:
            self.count += 1
            return self.count

    ports = _free_ports(3)
    addrs = [f"127.0.0.1:{p}" for p in ports]
    nodes = []
    for i, me in enumerate(addrs):
        kwargs: dict[str, Any] = {"appendEntriesUseBatch": batch}
        if journal:
            kwargs["journalFile"] = os.path.join(journal, f"journal-{i}")
        conf = SyncObjConf(**kwargs)
        nodes.append(Counter(me, [a for a in addrs if a != me], conf))
    deadline = time.time() + 30
    leader = None
    while time.time() < deadline and leader is None:
        for node in nodes:
            if node._isLeader() and node.isReady():
                leader = node
        time.sleep(0.02)
    if leader is None:
        raise SystemExit("pysyncobj: no leader within 30 s")
    payload = os.urandom(payload_bytes)
    out: dict[str, Any] = {}
    _pysyncobj_round(leader, 4, 0.3, payload)  # warm-up
    for clients in levels:
        latencies, elapsed = _pysyncobj_round(leader, clients, seconds, payload)
        out[str(clients)] = summary(latencies, elapsed)
    for node in nodes:
        node.destroy()
    print(json.dumps(out), flush=True)
    os._exit(0)  # its threads are daemons that may linger


def _pysyncobj_round(
    leader: Any, clients: int, seconds: float, payload: bytes
) -> tuple[list[float], float]:
    """``clients`` closed loops: each command's callback issues the next one."""
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.perf_counter() + seconds
    outstanding = [clients]
    done = threading.Event()

    def issue() -> None:
        t0 = time.perf_counter()

        def callback(result: Any, error: Any) -> None:
            now = time.perf_counter()
            with lock:
                if error == 0:  # FAIL_REASON.SUCCESS
                    latencies.append(now - t0)
                again = now < stop
                if not again:
                    outstanding[0] -= 1
                    if outstanding[0] == 0:
                        done.set()
            if again:
                issue()

        leader.put(payload, callback=callback)

    started = time.perf_counter()
    for _ in range(clients):
        issue()
    done.wait(seconds + 10)
    return latencies, time.perf_counter() - started


def run_pysyncobj(
    levels: list[int], seconds: float, payload: int, journal: Path | None, *, batch: bool
) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--pysyncobj-child",
        "--concurrency",
        ",".join(map(str, levels)),
        "--seconds",
        str(seconds),
        "--payload",
        str(payload),
    ]
    if not batch:
        cmd.append("--no-batch")
    if journal is not None:
        journal.mkdir(parents=True, exist_ok=True)
        cmd += ["--journal", str(journal)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"pysyncobj child failed: {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# --- main ---------------------------------------------------------------------------


def _line(name: str, row: dict[str, Any]) -> str:
    extra = ""
    if "leader_syncs" in row:
        per = row["commits"] / max(1, row["leader_syncs"])
        extra = (
            f"  leader fsyncs {row['leader_syncs']:.0f} ({per:.1f} commits/fsync,"
            f" {row['leader_persist_ms']:.2f} ms each)"
        )
    return (
        f"{name:<34} {row['commits_per_s']:9.0f} commits/s  p50 {row['p50_ms']:7.2f} ms"
        f"  p99 {row['p99_ms']:7.2f} ms{extra}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about 1 s per measurement")
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--concurrency", default="1,64")
    parser.add_argument("--payload", type=int, default=128, help="command bytes")
    parser.add_argument("--dir", type=Path, help="directory on the disk to measure")
    parser.add_argument("--no-pysyncobj", action="store_true", help="skip the baseline")
    parser.add_argument("--rounds", type=int, default=3, help="medians over this many runs")
    parser.add_argument(
        "--serial",
        action="store_true",
        help="also measure our driver with a serial leader persist (the earlier design)",
    )
    parser.add_argument("--pysyncobj-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--journal", default="", help=argparse.SUPPRESS)
    parser.add_argument("--no-batch", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    seconds = args.seconds or (1.0 if args.quick else 4.0)
    if args.pysyncobj_child:
        pysyncobj_child(levels, seconds, args.payload, args.journal, not args.no_batch)
        return
    payload = os.urandom(args.payload)
    base = Path(tempfile.mkdtemp(prefix="bench-raft-", dir=args.dir))
    variants: dict[str, dict[str, Any]] = {}
    try:
        runs: dict[str, list[dict[str, Any]]] = {"parallel": [], "serial": []}
        for k in range(args.rounds):  # interleaved: a busy disk hits both alike
            for mode in ("parallel", "serial") if args.serial else ("parallel",):
                where = base / f"{mode}-{k}"
                runs[mode].append(trio.run(run_ours, where, levels, seconds, payload, mode))
                shutil.rmtree(where, ignore_errors=True)
        ours = median_rows(runs["parallel"])
        serial = median_rows(runs["serial"]) if args.serial else {}
        if not args.no_pysyncobj:
            for name, journal, batch in (
                ("memory, batched appends (default)", None, True),
                ("memory, append per command", None, False),
                ("mmap journal, append per command", base / "pysyncobj", False),
            ):
                variants[name] = run_pysyncobj(levels, seconds, args.payload, journal, batch=batch)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"machine: {platform.machine()} {platform.system()} {platform.release()}, "
          f"python {platform.python_version()}, cpus {os.cpu_count()}, "
          f"load {os.getloadavg()[0]:.1f}, dir {base.parent}")  # fmt: skip
    print(f"3 voters on loopback, {args.payload} B commands, closed loop, {seconds:.1f} s per row;"
          f" ours: medians of {args.rounds} runs")  # fmt: skip
    print("colonymesh: real peers (Noise+yamux), LogStore with fsync ON: durable")
    print("PySyncObj 0.3.17: log in memory: NOT durable; its journalFile is an mmap it never")
    print("  msyncs or fsyncs on commit: NOT durable against a machine crash either")
    for c in levels:
        print(_line(f"colonymesh (fsync) x{c}", ours[str(c)]))
        if serial:
            print(_line(f"  colonymesh, serial persist x{c}", serial[str(c)]))
        for name, rows in variants.items():
            print(_line(f"  PySyncObj ({name}) x{c}", rows[str(c)]))
    top = str(max(levels))
    best = max(variants, key=lambda n: variants[n][top]["commits_per_s"]) if variants else None
    ratio = ours[top]["commits_per_s"] / variants[best][top]["commits_per_s"] if best else None
    print(f"ratio at x{top}: {ratio if ratio is None else round(ratio, 2)} "
          f"(ours / fastest PySyncObj variant: {best})")  # fmt: skip
    print(json.dumps({
        "bench": "raft",
        "quick": args.quick,
        "payload_bytes": args.payload,
        "seconds": seconds,
        "rounds": args.rounds,
        "colonymesh": ours,
        "colonymesh_serial_persist": serial,
        "baseline": f"pysyncobj ({best}; not durable)",
        "pysyncobj": variants,
        "ratio": ratio,
        "ratio_at_concurrency": int(top),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
