"""A large snapshot does not stall the Raft driver's loop (the ledger's took 0.74 s at
100k processes, longer than an election timeout).

Three drivers in one trio run on real disks (fsync) and an in-memory network
through the real codec, real time. The leader's state machine takes ~1.5 s of
pure-Python CPU to serialise, over three election timeouts: the leader must keep
heart-beating (nobody campaigns), proposals made meanwhile must commit, and the
snapshot must be exactly the state at its index (nothing applied while it was
being taken).
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import trio

from colonymesh.consensus import Heartbeat, Message, RaftConfig, Role
from colonymesh.consensus.storage import LogStore
from colonymesh.consensus.types import Entry, LogIndex, NodeId
from colonymesh.node.raft import codec
from colonymesh.node.raft.driver import DriverConfig, RaftDriver

IDS = [NodeId("a"), NodeId("b"), NodeId("c")]
RAFT = RaftConfig(election_timeout_s=0.4, heartbeat_interval_s=0.04)
SNAPSHOT_CPU_S = 1.5


class SlowMachine:
    """Records applied indexes; when ``slow``, ``snapshot`` burns CPU *before* it
    reads its state, so an entry applied meanwhile would show up in the data."""

    def __init__(self) -> None:
        self.indexes: list[int] = []
        self.slow = False
        self.snapshot_windows: list[tuple[float, float]] = []

    def apply(self, entry: Entry) -> int:
        self.indexes.append(entry.index)
        return entry.index

    def snapshot(self) -> bytes:
        started = time.monotonic()
        if self.slow:
            x = 0
            while time.monotonic() - started < SNAPSHOT_CPU_S:
                for k in range(1000):  # pure Python: holds the GIL between switches
                    x += k * k
        data = json.dumps(self.indexes).encode()
        self.snapshot_windows.append((started, time.monotonic()))
        return data

    def restore(self, data: bytes) -> None:
        self.indexes = json.loads(data) if data else []


class Network:
    def __init__(self) -> None:
        self.drivers: dict[NodeId, RaftDriver] = {}
        self.log: list[tuple[float, Message]] = []

    def send(self, message: Message) -> None:
        self.log.append((time.monotonic(), message))
        self.drivers[message.dst].deliver(codec.decode(codec.encode(message)))


async def test_heartbeats_continue_while_the_leader_serialises_a_large_snapshot(
    tmp_path: Path,
) -> None:
    network = Network()
    machines = {node: SlowMachine() for node in IDS}
    stores = {node: LogStore.open(tmp_path / node) for node in IDS}
    drivers = {
        node: RaftDriver(
            node,
            stores[node],
            machines[node],
            network,
            founding_voters=IDS,
            raft_config=RAFT,
            config=DriverConfig(snapshot_every_entries=30),
            rng=random.Random(i),
        )
        for i, node in enumerate(IDS)
    }
    network.drivers.update(drivers)
    try:
        async with trio.open_nursery() as nursery:
            for driver in drivers.values():
                await nursery.start(driver.run)
            with trio.fail_after(10):
                while (leader := _leader(drivers)) is None:
                    await trio.sleep(0.02)
            lead = drivers[leader]
            term = lead.status().term
            machines[leader].slow = True
            for k in range(40):  # passes snapshot_every_entries: the leader snapshots
                await lead.propose(b"%d" % k)
            with trio.fail_after(10):
                while lead.stats.snapshots == 0 and lead._snapshot_task is None:
                    await trio.sleep(0.01)
            # Proposals during the snapshot commit (they are applied right after it).
            with trio.fail_after(SNAPSHOT_CPU_S + 5):
                for k in range(40, 45):
                    await lead.propose(b"%d" % k)
            with trio.fail_after(10):
                while lead.stats.snapshots == 0:
                    await trio.sleep(0.01)
            await trio.sleep(0.1)
            statuses = {node: d.status() for node, d in drivers.items()}
            nursery.cancel_scope.cancel()
    finally:
        for store in stores.values():
            store.close()

    # Nobody campaigned: the same leader, the same term, everywhere.
    assert statuses[leader].role is Role.LEADER
    assert {s.term for s in statuses.values()} == {term}
    # Heartbeats kept flowing during the snapshot: no gap near an election timeout.
    start, end = machines[leader].snapshot_windows[0]
    assert end - start >= SNAPSHOT_CPU_S
    beats = sorted(
        t
        for t, m in network.log
        if isinstance(m, Heartbeat) and m.src == leader and start <= t <= end
    )
    assert len(beats) >= 10, f"only {len(beats)} heartbeats in {end - start:.2f} s"
    gaps = [b - a for a, b in zip([start, *beats], [*beats, end], strict=True)]
    assert max(gaps) < RAFT.election_timeout_s / 2, f"heartbeat gap {max(gaps):.3f} s"
    # The snapshot is the state at its index exactly, and the state went on after it.
    snap = LogStore.open(tmp_path / leader).load_snapshot()
    assert snap is not None
    taken = json.loads(snap.data)
    final = machines[leader].indexes
    assert taken == [i for i in final if i <= snap.meta.index]
    assert len(final) >= 45 and final == sorted(final)
    assert snap.meta.index == LogIndex(max(taken))


def _leader(drivers: dict[NodeId, RaftDriver]) -> NodeId | None:
    for node, driver in drivers.items():
        if driver.status().role is Role.LEADER:
            return node
    return None
