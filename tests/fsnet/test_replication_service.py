"""ReplicationService in one process: three lab peers on the DHT replicate a put to k=3;
bad replicate requests are refused without harm."""

from __future__ import annotations

import random
from pathlib import Path

import trio

from colonymesh.fs.cid import CODEC_RAW, Cid
from colonymesh.fs.replication import ReplicationConfig
from colonymesh.node.dht.driver import DhtService, DhtServiceConfig
from colonymesh.node.dht.effects import DhtConfig
from colonymesh.node.fsnet import ChunkService
from colonymesh.node.fsnet.frames import frame_prefix
from colonymesh.node.fsnet.lab import open_fs_lab
from colonymesh.node.fsnet.replicate import (
    REPLICA_PIN_PREFIX,
    REPLICATE_PROTOCOL,
    ReplicationService,
    ReplicationServiceConfig,
)

FAST = ReplicationServiceConfig(
    ReplicationConfig(k=3, check_interval_s=1.0, check_jitter_s=0.2, repair_timeout_s=10.0),
    probe_timeout_s=2.0,
    seed=1,
)
DHT = DhtServiceConfig(dht=DhtConfig(request_timeout_s=1.0), self_lookup_first_s=0.5, seed=1)


async def _start(nursery: trio.Nursery, service: ChunkService) -> ReplicationService:
    dht = await nursery.start(DhtService(service.peer, DHT).run)
    replication: ReplicationService = await nursery.start(
        ReplicationService(service, service.use_dht(dht), FAST).run
    )
    return replication


def _replica_pins(service: ChunkService) -> list[str]:
    return [label for label in service.store.pins() if label.startswith(REPLICA_PIN_PREFIX)]


async def test_a_put_is_replicated_to_k_peers(tmp_path: Path) -> None:
    source = tmp_path / "input.bin"
    data = random.Random(3).randbytes(700_000)  # three chunks and a root
    source.write_bytes(data)
    async with open_fs_lab(tmp_path / "state", 3) as services, trio.open_nursery() as nursery:
        replications = [await _start(nursery, s) for s in services]
        a, b, c = services
        root = await a.put_path(source)
        with trio.fail_after(30):
            while not (_replica_pins(b) and _replica_pins(c)):
                await trio.sleep(0.2)
        for holder in (b, c):
            assert holder.store.pins()[REPLICA_PIN_PREFIX + root.encode()] == (root,)
            assert len(holder.store) == 4
        assert replications[0].statistics()["asks"] == 2
        assert sum(r.statistics()["fetches"] for r in replications) == 2
        with trio.fail_after(10):
            found = await a.dht_providers.find(root) if a.dht_providers else []
        assert sorted(found) == sorted([b.peer.peer_id, c.peer.peer_id])
        nursery.cancel_scope.cancel()


async def test_bad_replicate_requests_are_refused(tmp_path: Path) -> None:
    async with open_fs_lab(tmp_path / "state", 2) as (a, b), trio.open_nursery() as nursery:
        replication = await _start(nursery, b)
        for payload in (b"\x01\x02garbage", b""):
            stream = await a.peer.open_stream(b.peer.peer_id, [REPLICATE_PROTOCOL], 5)
            async with stream:
                await stream.send_all(frame_prefix(len(payload)) + payload)
                await stream.send_eof()
                with trio.fail_after(5):
                    while await stream.receive_some(1024):
                        pass
        with trio.fail_after(5):
            while replication.requests_malformed < 2:
                await trio.sleep(0.05)
        # A valid request for content nobody has: fetched, fails, is not pinned.
        missing = Cid.of(CODEC_RAW, b"nobody has this")
        stream = await a.peer.open_stream(b.peer.peer_id, [REPLICATE_PROTOCOL], 5)
        async with stream:
            raw = missing.to_bytes()
            await stream.send_all(frame_prefix(len(raw)) + raw)
            await stream.send_eof()
        with trio.fail_after(30):
            while replication.core.stats.fetches_failed < 1:
                await trio.sleep(0.1)
        assert _replica_pins(b) == []
        nursery.cancel_scope.cancel()
