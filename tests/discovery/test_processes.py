"""Real OS processes on loopback, all started from one bootstrap address: routing tables
fill, every peer finds every other by lookup, a value put at one is read at all, and a
gossiped message reaches every process (and is counted back at the publisher)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from proccluster import ProcCluster


@pytest.fixture
def cluster_of(tmp_path: Path) -> Iterator[object]:
    made: list[ProcCluster] = []

    def make(n: int) -> ProcCluster:
        made.append(ProcCluster(tmp_path, n))
        return made[-1]

    yield make
    for cluster in made:
        cluster.stop()


def check_discovery(cluster: ProcCluster, k: int = 20) -> None:
    n = len(cluster.procs)
    want = min(n - 1, k)
    cluster.wait_until(lambda s: all(x["contacts"] >= want for x in s), 40, "routing tables")
    keys = [p.public_key.hex() for p in cluster.procs]
    answers = cluster.all({"op": "find", "keys": keys}, timeout_s=120)
    for proc, answer in zip(cluster.procs, answers, strict=True):
        # a node's own key is in its table's view too: the lookup returns itself
        missing = [m for m in answer["missing"] if m != proc.public_key.hex()]
        assert missing == [], f"{proc.folder.name} could not find {len(missing)} peers"
    put = cluster.procs[n // 2].call({"op": "put", "key": b"cfg/a".hex(), "value": b"v1".hex()})
    assert put["stored"] >= min(n - 1, 3)
    reads = cluster.all({"op": "get", "key": b"cfg/a".hex()})
    assert [r["value"] for r in reads] == [b"v1".hex()] * n
    assert {r["publisher"] for r in reads} == {cluster.procs[n // 2].peer_id}
    cluster.all({"op": "subscribe", "topic": "specs"})
    cluster.wait_until(lambda s: all(x["neighbours"] >= 2 for x in s), 20, "gossip neighbours")
    time.sleep(1.5)  # subscriptions announced, one heartbeat grafted the meshes
    msg_id = cluster.procs[-1].call({"op": "publish", "topic": "specs", "data": b"s1".hex()})[
        "msg_id"
    ]
    deadline = time.monotonic() + 20
    while True:
        got = cluster.all({"op": "received", "topic": "specs"})
        if all(g["data"] == [b"s1".hex()] for g in got[:-1]):
            break
        assert time.monotonic() < deadline, f"gossip reached only {got}"
        time.sleep(0.2)
    deadline = time.monotonic() + 20
    while cluster.procs[-1].call({"op": "count", "msg_id": msg_id})["delivered"] != n - 1:
        assert time.monotonic() < deadline, "delivery count never reached every peer"
        time.sleep(0.2)


def test_five_processes_discover_each_other_and_gossip(cluster_of: object) -> None:
    check_discovery(cluster_of(5))  # type: ignore[operator]


@pytest.mark.slow
def test_twenty_processes_discover_each_other_and_gossip(cluster_of: object) -> None:
    check_discovery(cluster_of(20))  # type: ignore[operator]
