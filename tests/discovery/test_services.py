"""DhtService and GossipService on real in-process peers over loopback TCP (one trio run)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import trio

from colonymesh.node.certs import Membership, Role
from colonymesh.node.dht.driver import DhtService, DhtServiceConfig
from colonymesh.node.dht.effects import DhtConfig
from colonymesh.node.gossip.driver import GossipService
from colonymesh.node.gossip.effects import Delivered
from colonymesh.node.peer.gating import GatingConfig
from colonymesh.node.peer.peer import Peer, PeerConfig
from support.colony import NOW, ColonyFixture, make_colony

_T0 = time.monotonic()


def clock() -> float:
    return NOW + (time.monotonic() - _T0)


@dataclass
class Node:
    peer: Peer
    dht: DhtService
    gossip: GossipService


@asynccontextmanager
async def cluster(n: int, lab: ColonyFixture | None = None) -> AsyncIterator[list[Node]]:
    lab = lab or make_colony()
    while len(lab.members) < n:
        lab.admit(f"m{len(lab.members)}", (Role.EXECUTOR,))
    nodes: list[Node] = []
    async with AsyncExitStack() as stack:
        nursery = await stack.enter_async_context(trio.open_nursery())
        first: str | None = None
        for i in range(n):
            member = lab.members[i]
            config = PeerConfig(
                keys=member.keys,
                membership=Membership(lab.colony),
                certificate=member.certificate,
                bootstrap=() if first is None else (first,),
                gating=GatingConfig(presentation_timeout_s=2.0, sweep_interval_s=0.2),
                clock=clock,
                seed=i,
            )
            peer = await stack.enter_async_context(Peer.open(config))
            if first is None:
                first = f"{peer.listen_addrs[0]}/p2p/{peer.peer_id}"
            dht = await nursery.start(
                DhtService(peer, DhtServiceConfig(dht=DhtConfig(request_timeout_s=2.0), seed=i)).run
            )
            gossip = await nursery.start(GossipService(peer).run)
            nodes.append(Node(peer, dht, gossip))
        yield nodes
        nursery.cancel_scope.cancel()


async def wait_for(condition: object, timeout_s: float, what: str) -> None:
    with trio.move_on_after(timeout_s):
        while not condition():  # type: ignore[operator]
            await trio.sleep(0.05)
        return
    raise AssertionError(f"timed out waiting for {what}")


async def test_dht_lookups_values_and_providers_across_five_peers() -> None:
    async with cluster(5) as nodes:
        await wait_for(lambda: all(len(n.dht.core.table) >= 4 for n in nodes), 15, "tables")
        for node in nodes:
            for other in nodes:
                if other is node:
                    continue
                found = await node.dht.find_peer(other.peer.config.keys.public_key)
                assert found is not None and found.addrs
        stored = await nodes[1].dht.put_value(b"greeting", b"hello")
        assert stored.stored >= 3
        for node in nodes:
            record = await node.dht.get_value(b"greeting")
            assert record is not None and record.value == b"hello"
            assert record.publisher == nodes[1].peer.config.keys.public_key
        await nodes[2].dht.provide(b"chunk-1")
        providers = await nodes[4].dht.get_providers(b"chunk-1")
        assert [p.public_key for p in providers] == [nodes[2].peer.config.keys.public_key]
        assert await nodes[3].dht.get_value(b"missing") is None


async def test_gossip_reaches_every_peer_and_counts_deliveries() -> None:
    async with cluster(5) as nodes:
        got: dict[int, list[Delivered]] = {i: [] for i in range(len(nodes))}
        for i, node in enumerate(nodes):
            node.gossip.subscribe("specs", got[i].append)
        # everyone talks to everyone via the DHT's lookups
        await wait_for(lambda: all(len(n.gossip.neighbours()) >= 2 for n in nodes), 15, "mesh")
        await trio.sleep(1.5)  # subscriptions announced, a heartbeat grafted the mesh
        msg_id = await nodes[0].gossip.publish("specs", b"spec-1")
        await wait_for(lambda: all(len(got[i]) == 1 for i in range(1, 5)), 10, "delivery")
        assert all(got[i][0].msg_id == msg_id and got[i][0].data == b"spec-1" for i in range(1, 5))
        await wait_for(lambda: nodes[0].gossip.delivery_count(msg_id) == 4, 10, "receipts")


async def test_bad_frames_and_foreign_records_are_refused_and_the_peer_survives() -> None:
    from colonymesh.node.certs import encode_record
    from colonymesh.node.dht import codec
    from colonymesh.node.dht.driver import PROTOCOL_ID
    from colonymesh.node.dht.messages import PutValue, ValueRecord, value_signing_bytes
    from colonymesh.node.peer.framing import encode_frame
    from support.colony import make_colony as other_colony

    async with cluster(2) as nodes:
        a, b = nodes
        await b.dht.wait_joined()
        await wait_for(lambda: b.peer.peer_id in a.peer.connected_peers(), 10, "connection")
        # a record signed by a member of another colony, carrying that colony's certificate
        foreign = other_colony("elsewhere").members[0]
        seq = 1
        signature = foreign.keys.sign(value_signing_bytes(b"k", b"forged", seq))
        record = ValueRecord(b"k", b"forged", foreign.keys.public_key, seq, signature)
        frame = codec.encode(PutValue(7, record), (encode_record(foreign.certificate),))
        stream = await a.peer.open_stream(b.peer.peer_id, [PROTOCOL_ID])
        await stream.send_all(encode_frame(frame, codec.FRAME_BYTES_MAX))
        await wait_for(lambda: b.dht.stats.certificates_refused == 1, 5, "refusal")
        await trio.sleep(0.2)
        assert b.dht.core.values.get(b"k", trio.current_time()) is None
        # junk closes that stream only
        await stream.send_all(encode_frame(b"\x00junk", codec.FRAME_BYTES_MAX))
        await wait_for(lambda: b.dht.links.stats.refused_frames == 1, 5, "closed stream")
        assert b.dht.stats.malformed == 1
        await a.dht.put_value(b"k", b"real")
        record_b = await b.dht.get_value(b"k")
        assert record_b is not None and record_b.value == b"real"


async def test_a_client_peer_looks_things_up_but_never_enters_a_routing_table() -> None:
    lab = make_colony()
    async with cluster(3, lab) as nodes:
        await wait_for(lambda: all(len(n.dht.core.table) >= 2 for n in nodes), 15, "tables")
        await nodes[0].dht.put_value(b"seen-by-clients", b"v")
        member = lab.admit("cli", (Role.EXECUTOR,))
        bootstrap = f"{nodes[0].peer.listen_addrs[0]}/p2p/{nodes[0].peer.peer_id}"
        config = PeerConfig(
            keys=member.keys,
            membership=Membership(lab.colony),
            certificate=member.certificate,
            bootstrap=(bootstrap,),
            listen=(),
            clock=clock,
            seed=99,
        )
        async with Peer.open(config) as client, trio.open_nursery() as nursery:
            service = DhtService(client, DhtServiceConfig(client=True, seed=99))
            dht = await nursery.start(service.run)
            await dht.wait_joined()
            record = await dht.get_value(b"seen-by-clients")
            assert record is not None and record.value == b"v"
            assert await dht.find_peer(nodes[2].peer.config.keys.public_key) is not None
            assert len(dht.core.table) >= 1  # the client routes through the servers
            for node in nodes:  # ...and none of them routes through the client
                assert client.config.keys.public_key not in node.dht.core.table
            nursery.cancel_scope.cancel()
