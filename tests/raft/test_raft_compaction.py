"""Log compaction with the real ledger (Raft §7): three drivers on real disks replicate
ledger commands with a small ``snapshot_every_entries``; a server cut off while the log is
compacted past it catches up by InstallSnapshot, and a server restarted from its snapshot
plus log tail rebuilds the same ledger, byte for byte."""

from __future__ import annotations

import json
import random
from pathlib import Path

import trio

from colonymesh.consensus import Message, RaftConfig
from colonymesh.consensus.storage import LogStore
from colonymesh.consensus.types import NodeId
from colonymesh.node.colony.server import LedgerMachine
from colonymesh.node.envelope import EnvelopeSealer
from colonymesh.node.ledger.commands import SubmitFunction
from colonymesh.node.ledger.events import CommandApplied
from colonymesh.node.ledger.ledger import Ledger
from colonymesh.node.raft import codec
from colonymesh.node.raft.driver import DriverConfig, RaftDriver
from support.colony import NOW, ColonyFixture, make_colony
from support.ledger import GENESIS_MS, spec

IDS = [NodeId("a"), NodeId("b"), NodeId("c")]
FAST = RaftConfig(election_timeout_s=0.15, heartbeat_interval_s=0.03)
EVERY = 16


class CountingMachine(LedgerMachine):
    def __init__(self, ledger: Ledger) -> None:
        super().__init__(ledger)
        self.restores = 0
        self.snapshots = 0

    def snapshot(self) -> bytes:
        self.snapshots += 1
        return super().snapshot()

    def restore(self, data: bytes) -> None:
        self.restores += 1
        super().restore(data)


class MemoryNetwork:
    """Routes messages through the real codec; ``down`` nodes neither send nor receive.

    (As in test_raft_driver.py: test modules are not importable from each other.)
    """

    def __init__(self) -> None:
        self.drivers: dict[NodeId, RaftDriver] = {}
        self.down: set[NodeId] = set()

    def send(self, message: Message) -> None:
        if message.src in self.down or message.dst in self.down:
            return
        target = self.drivers.get(message.dst)
        if target is not None:
            target.deliver(codec.decode(codec.encode(message)))


class LedgerCluster:
    def __init__(self, root: Path, nursery: trio.Nursery, lab: ColonyFixture) -> None:
        self.root, self.nursery, self.lab = root, nursery, lab
        self.network = MemoryNetwork()
        self.machines: dict[NodeId, CountingMachine] = {}
        self.scopes: dict[NodeId, trio.CancelScope] = {}
        self.stopped: dict[NodeId, trio.Event] = {}
        self.stores: dict[NodeId, LogStore] = {}

    def genesis(self) -> Ledger:
        certificates = sorted((m.certificate for m in self.lab.members), key=lambda c: c.member_key)
        return Ledger(self.lab.colony, genesis_ms=GENESIS_MS, certificates=certificates)

    async def start(self, node: NodeId) -> RaftDriver:
        store = LogStore.open(self.root / node)
        machine = CountingMachine(self.genesis())
        driver = RaftDriver(
            node,
            store,
            machine,
            self.network,
            founding_voters=IDS,
            raft_config=FAST,
            config=DriverConfig(snapshot_every_entries=EVERY),
            rng=random.Random(IDS.index(node)),
        )
        self.machines[node], self.stores[node] = machine, store
        self.network.drivers[node] = driver
        scope, stopped = trio.CancelScope(), trio.Event()
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
        self.network.drivers.pop(node)
        self.scopes[node].cancel()
        await self.stopped[node].wait()
        self.stores.pop(node).close()

    async def leader(self) -> RaftDriver:
        with trio.fail_after(3):
            while True:
                for driver in self.network.drivers.values():
                    status = driver.status()
                    if status.role.name == "LEADER" and driver.node_id not in self.network.down:
                        return driver
                await trio.sleep(0.01)

    async def converged(self, nodes: list[NodeId], timeout_s: float = 5.0) -> bytes:
        """Wait until ``nodes`` hold byte-identical ledger snapshots; return it."""
        with trio.fail_after(timeout_s):
            while True:
                ledgers = [self.machines[n].ledger for n in nodes]
                if len({ledger.applied_index for ledger in ledgers}) == 1:
                    snapshots = {ledger.snapshot() for ledger in ledgers}
                    if len(snapshots) == 1:
                        return snapshots.pop()
                await trio.sleep(0.02)


class Submitter:
    def __init__(self, lab: ColonyFixture) -> None:
        member = lab.members[2]  # alice, the submitter
        self.sealer = EnvelopeSealer(member.signer, lab.colony.colony_id, NOW)
        self.count = 0

    def frame(self) -> bytes:
        self.count += 1
        body = SubmitFunction(
            json.dumps(spec("echo", args=[self.count])), self.count.to_bytes(16, "big")
        )
        return self.sealer.seal(body, NOW)


async def submit(leader: RaftDriver, submitter: Submitter, count: int) -> None:
    for _ in range(count):
        events = await leader.propose(submitter.frame())
        assert isinstance(events[0], CommandApplied), events[0]


async def test_a_server_behind_a_compaction_catches_up_by_snapshot(tmp_path: Path) -> None:
    lab = make_colony()
    submitter = Submitter(lab)
    async with trio.open_nursery() as nursery:
        cluster = LedgerCluster(tmp_path, nursery, lab)
        for node in IDS:
            await cluster.start(node)
        leader = await cluster.leader()
        await submit(leader, submitter, 5)
        behind = next(n for n in IDS if n != leader.node_id)
        others = [n for n in IDS if n != behind]
        await cluster.converged(IDS)

        cluster.network.down.add(behind)
        await submit(leader, submitter, 4 * EVERY)
        assert leader.node.log.snapshot_index >= 3 * EVERY, "the leader compacted its log"
        assert cluster.machines[behind].ledger.applied_index < leader.node.log.snapshot_index
        assert cluster.machines[behind].restores == 0

        cluster.network.down.discard(behind)
        await submit(leader, submitter, 3)
        data = await cluster.converged(IDS)
        assert cluster.machines[behind].restores >= 1, "caught up by InstallSnapshot"
        assert len(cluster.machines[behind].ledger.processes) == submitter.count
        assert data == cluster.machines[leader.node_id].ledger.snapshot()

        # A restart rebuilds the ledger from the stored snapshot plus the log tail.
        await cluster.crash(behind)
        await submit(leader, submitter, 5)
        restarted = await cluster.start(behind)
        assert cluster.machines[behind].restores == 1, "restored from its own disk"
        assert restarted.node.log.snapshot_index > 0
        data = await cluster.converged(IDS)
        assert len(cluster.machines[behind].ledger.processes) == submitter.count
        assert cluster.machines[others[0]].ledger.snapshot() == data
        nursery.cancel_scope.cancel()
    for store in cluster.stores.values():
        store.close()


async def test_a_full_restart_rebuilds_every_ledger_from_snapshot_and_tail(
    tmp_path: Path,
) -> None:
    lab = make_colony()
    submitter = Submitter(lab)
    async with trio.open_nursery() as nursery:
        cluster = LedgerCluster(tmp_path, nursery, lab)
        for node in IDS:
            await cluster.start(node)
        leader = await cluster.leader()
        await submit(leader, submitter, 2 * EVERY + 5)  # a snapshot, then a tail
        before = await cluster.converged(IDS)
        before_index = cluster.machines[IDS[0]].ledger.applied_index
        for node in IDS:
            await cluster.crash(node)
        for node in IDS:
            await cluster.start(node)
        for node in IDS:
            assert cluster.machines[node].restores == 1
        snapshot_at = cluster.machines[IDS[0]].ledger.applied_index
        assert 0 < snapshot_at < before_index, "restored from the snapshot, tail not yet applied"
        # Each replays its log tail past the snapshot once it learns the commit index.
        with trio.fail_after(5):
            while any(cluster.machines[n].ledger.applied_index < before_index for n in IDS):
                await trio.sleep(0.02)
        assert await cluster.converged(IDS) == before
        leader = await cluster.leader()
        await submit(leader, submitter, 1)
        after = await cluster.converged(IDS)
        ledger = cluster.machines[leader.node_id].ledger
        assert len(ledger.processes) == submitter.count == 2 * EVERY + 6
        assert after != before and ledger.snapshot() == after
        nursery.cancel_scope.cancel()
    for store in cluster.stores.values():
        store.close()
