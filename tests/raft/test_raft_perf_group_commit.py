"""Group commit in the Raft driver: concurrent proposals share fsyncs and appends.

Three drivers in one trio run, real disks with fsync, an in-memory network
through the real codec. 64 proposals made together must not cost 64 fsyncs on
the leader, nor 64 AppendEntries per follower: whatever arrives while one
persist is in flight travels in the next Ready, as one batch.
"""

from __future__ import annotations

import random
from pathlib import Path

import trio

from colonymesh.consensus import AppendEntries, Message, RaftConfig, Role
from colonymesh.consensus.storage import LogStore
from colonymesh.consensus.types import Entry, NodeId
from colonymesh.node.raft import codec
from colonymesh.node.raft.driver import RaftDriver

IDS = [NodeId("a"), NodeId("b"), NodeId("c")]
RAFT = RaftConfig(election_timeout_s=0.3, heartbeat_interval_s=0.03)
CONCURRENT = 64


class Counter:
    def __init__(self) -> None:
        self.count = 0

    def apply(self, entry: Entry) -> int:
        self.count += 1
        return self.count

    def snapshot(self) -> bytes:
        return b"%d" % self.count

    def restore(self, data: bytes) -> None:
        self.count = int(data or b"0")


class Network:
    def __init__(self) -> None:
        self.drivers: dict[NodeId, RaftDriver] = {}
        self.appends: list[AppendEntries] = []

    def send(self, message: Message) -> None:
        if isinstance(message, AppendEntries) and message.entries:
            self.appends.append(message)
        self.drivers[message.dst].deliver(codec.decode(codec.encode(message)))


async def test_concurrent_proposals_share_fsyncs_and_append_messages(tmp_path: Path) -> None:
    network = Network()
    stores = {node: LogStore.open(tmp_path / node) for node in IDS}
    drivers = {
        node: RaftDriver(
            node,
            stores[node],
            Counter(),
            network,
            founding_voters=IDS,
            raft_config=RAFT,
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
                while True:
                    leaders = [n for n, d in drivers.items() if d.status().role is Role.LEADER]
                    if leaders:
                        break
                    await trio.sleep(0.02)
            lead = drivers[leaders[0]]
            await lead.propose(b"warm-up")
            syncs = lead.stats.syncs
            network.appends.clear()
            results: list[int] = []

            async def propose(k: int) -> None:
                results.append(await lead.propose(b"%d" % k))

            with trio.fail_after(20):
                async with trio.open_nursery() as clients:
                    for k in range(CONCURRENT):
                        clients.start_soon(propose, k)
            leader_syncs = lead.stats.syncs - syncs
            appends = [m for m in network.appends if m.src == leaders[0]]
            nursery.cancel_scope.cancel()
    finally:
        for store in stores.values():
            store.close()
    assert len(results) == CONCURRENT and len(set(results)) == CONCURRENT
    # Every proposal committed; they shared a handful of fsyncs and appends.
    assert leader_syncs <= CONCURRENT // 8, f"{leader_syncs} leader fsyncs for {CONCURRENT}"
    per_follower = len(appends) / 2
    assert per_follower <= CONCURRENT // 8, f"{per_follower} appends per follower"
    assert sum(len(m.entries) for m in appends) >= 2 * CONCURRENT
