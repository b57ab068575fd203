"""Three Raft drivers in one trio run: real disks (fsync), an in-memory network, real time."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import trio

from colonymesh.consensus import Message, NotLeader, RaftConfig, Role
from colonymesh.consensus.storage import LogStore
from colonymesh.consensus.types import Entry, NodeId
from colonymesh.node.raft import codec
from colonymesh.node.raft.driver import RaftDriver

IDS = [NodeId("a"), NodeId("b"), NodeId("c")]
FAST = RaftConfig(election_timeout_s=0.15, heartbeat_interval_s=0.03)


class ListMachine:
    def __init__(self) -> None:
        self.applied: list[bytes] = []

    def apply(self, entry: Entry) -> Any:
        self.applied.append(entry.data)
        return len(self.applied)

    def snapshot(self) -> bytes:
        return b"\n".join(self.applied)

    def restore(self, data: bytes) -> None:
        self.applied = data.split(b"\n") if data else []


class MemoryNetwork:
    """Routes messages through the real codec; ``down`` nodes neither send nor receive."""

    def __init__(self) -> None:
        self.drivers: dict[NodeId, RaftDriver] = {}
        self.down: set[NodeId] = set()
        self.sent = 0

    def send(self, message: Message) -> None:
        if message.src in self.down or message.dst in self.down:
            return
        target = self.drivers.get(message.dst)
        if target is not None:
            self.sent += 1
            target.deliver(codec.decode(codec.encode(message)))


class Cluster:
    def __init__(self, root: Path, nursery: trio.Nursery) -> None:
        self.root = root
        self.nursery = nursery
        self.network = MemoryNetwork()
        self.machines: dict[NodeId, ListMachine] = {}
        self.scopes: dict[NodeId, trio.CancelScope] = {}
        self.stopped: dict[NodeId, trio.Event] = {}
        self.stores: dict[NodeId, LogStore] = {}

    async def start(self, node: NodeId) -> RaftDriver:
        store = LogStore.open(self.root / node)
        machine = ListMachine()
        driver = RaftDriver(
            node,
            store,
            machine,
            self.network,
            founding_voters=IDS,
            raft_config=FAST,
            rng=random.Random(IDS.index(node)),
        )
        self.machines[node], self.stores[node] = machine, store
        self.network.drivers[node] = driver
        scope = trio.CancelScope()
        stopped = trio.Event()
        self.scopes[node], self.stopped[node] = scope, stopped

        async def run() -> None:
            try:
                with scope:
                    await driver.run()
            finally:
                stopped.set()

        self.nursery.start_soon(run)
        return driver

    async def crash(self, node: NodeId) -> None:
        """Stop the node as a kill would (no goodbye), then release its disk."""
        self.network.drivers.pop(node)
        self.scopes[node].cancel()
        await self.stopped[node].wait()
        self.stores.pop(node).close()

    async def leader(self, timeout_s: float = 3.0) -> RaftDriver:
        with trio.fail_after(timeout_s):
            while True:
                for driver in self.network.drivers.values():
                    if (
                        driver.status().role is Role.LEADER
                        and driver.node_id not in self.network.down
                    ):
                        return driver
                await trio.sleep(0.01)


async def test_a_group_elects_commits_and_survives_its_leader(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        cluster = Cluster(tmp_path, nursery)
        for node in IDS:
            await cluster.start(node)
        leader = await cluster.leader()

        results: list[int] = []

        async def propose(i: int) -> None:
            results.append(await leader.propose(f"cmd-{i}".encode()))

        async with trio.open_nursery() as proposals:
            for i in range(50):
                proposals.start_soon(propose, i)
        assert sorted(results) == list(range(1, 51))
        assert leader.stats.syncs < 50, "proposals arriving together share an fsync"

        follower = next(d for d in cluster.network.drivers.values() if d is not leader)
        with pytest.raises(NotLeader) as refused:
            await follower.propose(b"nope")
        assert refused.value.leader_hint == leader.node_id

        # Crash the leader: the others elect a new one within a few election timeouts.
        old = leader.node_id
        await cluster.crash(old)
        started = trio.current_time()
        new_leader = await cluster.leader()
        assert new_leader.node_id != old
        assert trio.current_time() - started < 1.0
        assert await new_leader.propose(b"after-failover") == 51

        # Restart the crashed node from its disk: it catches up to the same sequence.
        restarted = await cluster.start(old)
        with trio.fail_after(3):
            while cluster.machines[old].applied != cluster.machines[new_leader.node_id].applied:
                await trio.sleep(0.01)
        assert restarted.status().commit >= new_leader.status().commit - 0
        survivors = {n: m.applied for n, m in cluster.machines.items()}
        assert len({tuple(v) for v in survivors.values()}) == 1
        assert survivors[old][-1] == b"after-failover"
        nursery.cancel_scope.cancel()
    for store in cluster.stores.values():
        store.close()


async def test_acknowledged_proposals_survive_a_full_restart(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        cluster = Cluster(tmp_path, nursery)
        for node in IDS:
            await cluster.start(node)
        leader = await cluster.leader()
        for i in range(20):
            await leader.propose(f"x{i}".encode())
        for node in IDS:
            await cluster.crash(node)
        for node in IDS:
            await cluster.start(node)
        leader = await cluster.leader()
        await leader.propose(b"marker")
        with trio.fail_after(3):
            while any(m.applied[-1:] != [b"marker"] for m in cluster.machines.values()):
                await trio.sleep(0.01)
        for machine in cluster.machines.values():
            assert machine.applied == [f"x{i}".encode() for i in range(20)] + [b"marker"]
        nursery.cancel_scope.cancel()
    for store in cluster.stores.values():
        store.close()
