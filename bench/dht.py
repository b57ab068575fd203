"""Kademlia DHT: real lookup latency across OS processes, and simulated events per second.

    python bench/dht.py [--quick]

Real: N peer processes on loopback (``tests/discovery/dhtproc.py``: a Peer with the
DHT and gossip services), all bootstrapped from the first one. Once every routing
table holds the others, every process looks up every other peer id (``find_peer``:
an iterative FIND_NODE lookup that must return that peer) and reads one value put
by one of them (``get_value``: quorum of 3 signed, membership-checked records).
Baseline, same run, same processes and transport: one signed request/response
round trip (``colony.ping`` envelope) from every process to every other. The
ratio is lookup p50 / round-trip p50: how many round trips' worth of time one
lookup costs (a lookup is alpha-parallel rounds of FIND_NODE, then its answer).

Simulated: the pure `DhtNode` core, thousands of nodes in one process wired by a
synchronous zero-latency message pump (as the core's tests do): nodes join one
after another through node 0, then random lookups. Reported: DHT events (message
deliveries into `handle_message`) per wall second, and hops per lookup.

Last stdout line: one JSON object with the figures, ``baseline`` and ``ratio``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "discovery"))

from colonymesh.node.dht.effects import (  # noqa: E402
    DhtConfig,
    LookupFinished,
    Output,
    SendMessage,
)
from colonymesh.node.dht.ids import id_to_bytes, node_id_of  # noqa: E402
from colonymesh.node.dht.messages import Message, PeerInfo  # noqa: E402
from colonymesh.node.dht.node import DhtNode  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- real processes -------------------------------------------------------------------


def measure_real(n: int) -> dict[str, Any]:
    from proccluster import ProcCluster

    with tempfile.TemporaryDirectory() as root:
        started = time.monotonic()
        cluster = ProcCluster(Path(root), n)
        try:
            cluster.wait_until(
                lambda s: all(x["contacts"] >= min(n - 1, 20) for x in s), 90, "routing tables"
            )
            filled_s = time.monotonic() - started
            time.sleep(2.0)  # let the self-lookups of the join settle
            keys = [p.public_key.hex() for p in cluster.procs]
            peer_ids = [p.peer_id for p in cluster.procs]
            pings: list[float] = []
            cluster.all({"op": "ping", "peers": []})  # warm the command path
            for proc in cluster.procs:
                others = [p for p in peer_ids if p != proc.peer_id]
                pings += proc.call({"op": "ping", "peers": others}, 120)["latencies_s"]
            lookups: list[float] = []
            missing = 0
            for proc in cluster.procs:
                others = [k for k in keys if k != proc.public_key.hex()]
                answer = proc.call({"op": "find", "keys": others}, 300)
                lookups += answer["latencies_s"]
                missing += len(answer["missing"])
            cluster.procs[0].call({"op": "put", "key": b"bench/v".hex(), "value": b"1".hex()})
            gets = [
                proc.call({"op": "get", "key": b"bench/v".hex()})["latency_s"]
                for proc in cluster.procs
            ]
        finally:
            cluster.stop()
    return {
        "processes": n,
        "tables_filled_s": round(filled_s, 2),
        "lookups": len(lookups),
        "lookups_failed": missing,
        "lookup_ms_p50": round(percentile(lookups, 0.5) * 1000, 2),
        "lookup_ms_p99": round(percentile(lookups, 0.99) * 1000, 2),
        "get_value_ms_p50": round(percentile(gets, 0.5) * 1000, 2),
        "get_value_ms_p99": round(percentile(gets, 0.99) * 1000, 2),
        "round_trip_ms_p50": round(percentile(pings, 0.5) * 1000, 3),
        "round_trip_ms_p99": round(percentile(pings, 0.99) * 1000, 3),
    }


# --- simulated core -----------------------------------------------------------------


def _always(*_: object) -> bool:
    return True


class Pump:
    """Zero-latency FIFO delivery between in-process cores; counts handled messages."""

    def __init__(self, n: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.config = DhtConfig(refresh_on_bootstrap=False)
        self.queue: deque[tuple[PeerInfo, PeerInfo, Message]] = deque()
        self.nodes: dict[bytes, DhtNode] = {}
        self.events = 0
        self.finished: list[LookupFinished] = []
        for _ in range(n):
            key = self.rng.randbytes(32)
            self.nodes[key] = DhtNode(
                PeerInfo(key),
                verify=_always,
                is_member=_always,
                rng=random.Random(self.rng.getrandbits(64)),
                config=self.config,
            )

    def emit(self, src: DhtNode, outputs: list[Output]) -> None:
        for out in outputs:
            if isinstance(out, SendMessage):
                self.queue.append((src.self_info, out.to, out.message))
            elif isinstance(out, LookupFinished):
                self.finished.append(out)

    def run(self) -> None:
        while self.queue:
            src, dst, msg = self.queue.popleft()
            node = self.nodes[dst.public_key]
            self.events += 1
            self.emit(node, node.handle_message(src, msg, 0.0))


def measure_simulated(n: int, lookups: int) -> dict[str, Any]:
    pump = Pump(n, seed=7)
    nodes = list(pump.nodes.values())
    first = nodes[0].self_info
    started = time.perf_counter()
    for node in nodes[1:]:
        pump.emit(node, node.bootstrap([first], 0.0)[1])
        pump.run()
    join_s = time.perf_counter() - started
    join_events = pump.events
    pump.finished.clear()
    rng = random.Random(11)
    started = time.perf_counter()
    before = pump.events
    found = 0
    for _ in range(lookups):
        origin, target = rng.sample(nodes, 2)
        target_key = target.self_info.public_key
        pump.emit(origin, origin.find_node(id_to_bytes(node_id_of(target_key)), 0.0)[1])
        pump.run()
        result = pump.finished[-1]
        found += any(p.public_key == target_key for p in result.closest)
    lookup_s = time.perf_counter() - started
    hops = [f.hops for f in pump.finished]
    events = join_events + pump.events - before
    return {
        "nodes": n,
        "lookups": lookups,
        "lookup_success": round(found / lookups, 4),
        "hops_median": statistics.median(hops),
        "events": events,
        "events_per_s": round(events / (join_s + lookup_s)),
        "lookup_events_per_s": round((pump.events - before) / lookup_s),
        "lookups_per_s": round(lookups / lookup_s),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer processes and nodes")
    parser.add_argument("--processes", type=int, default=None)
    args = parser.parse_args()
    n = args.processes or (10 if args.quick else 20)
    sim_nodes, sim_lookups = (500, 200) if args.quick else (2000, 1000)

    simulated = measure_simulated(sim_nodes, sim_lookups)
    print(
        f"simulated {simulated['nodes']} nodes: {simulated['events_per_s']} events/s, "
        f"{simulated['lookups_per_s']} lookups/s, median {simulated['hops_median']} hops, "
        f"success {simulated['lookup_success']:.2%}"
    )
    real = measure_real(n)
    print(
        f"real {n} processes: lookup p50 {real['lookup_ms_p50']} ms, p99 "
        f"{real['lookup_ms_p99']} ms ({real['lookups_failed']} of {real['lookups']} failed); "
        f"get_value p50 {real['get_value_ms_p50']} ms; signed round trip p50 "
        f"{real['round_trip_ms_p50']} ms; tables filled in {real['tables_filled_s']} s"
    )
    ratio = real["lookup_ms_p50"] / real["round_trip_ms_p50"]
    print(
        json.dumps(
            {
                "real": real,
                "simulated": simulated,
                "baseline": "one signed request/response round trip (colony.ping) between "
                "the same processes over the same transport, same run",
                "ratio": round(ratio, 3),
                "ratio_meaning": "lookup p50 / round-trip p50 (round trips per lookup)",
            }
        )
    )


if __name__ == "__main__":
    main()
