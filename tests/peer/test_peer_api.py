"""The embeddable API: SyncPeer for non-async programs, bootstrap redial with back-off."""

from __future__ import annotations

import socket

import pytest
import trio
from peerkit import Echo, member_config

import colonymesh.node
from colonymesh.node.peer.connections import ConnectionsConfig
from colonymesh.node.peer.messaging import Incoming
from colonymesh.node.peer.peer import Peer, SyncPeer
from support.colony import ColonyFixture


def test_sync_peer_in_a_plain_program(lab: ColonyFixture) -> None:
    assert colonymesh.node.SyncPeer is SyncPeer  # the lazy package export

    def shout(incoming: Incoming) -> Echo:  # a plain function, run on a worker thread
        return Echo(incoming.body.text.upper())

    with SyncPeer(member_config(lab, 0)) as a, SyncPeer(member_config(lab, 1)) as b:
        b.on("test.echo", shout)
        assert a.connect(b.listen_addrs[0], timeout=5) == b.peer_id
        assert a.request(b.peer_id, Echo("quiet"), timeout=5) == Echo("QUIET")
        assert a.connected_peers() == [b.peer_id]
        assert b.statistics()["messaging"]["requests_received"] == 1
    assert a._thread is None and b._thread is None  # stopped, threads joined


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_bootstrap_redials_with_backoff_until_the_peer_appears(lab: ColonyFixture) -> None:
    port = _free_port()
    b_config = member_config(lab, 1, listen=(f"/ip4/127.0.0.1/tcp/{port}",))
    b_id = lab.members[1].keys.peer_id
    a_config = member_config(
        lab,
        0,
        bootstrap=(f"/ip4/127.0.0.1/tcp/{port}/p2p/{b_id}",),
        connections=ConnectionsConfig(backoff_initial_s=0.1, backoff_max_s=0.4),
    )
    async with Peer.open(a_config) as a:
        await trio.sleep(0.5)  # b is not up: a few failed dials, backing off
        assert a.connections.counters["dial_failures"] >= 2
        async with Peer.open(b_config):
            with trio.fail_after(5):
                while a.connected_peers() != [b_id]:
                    await trio.sleep(0.02)
        # b went away: a notices, and redials once b is back.
        with trio.fail_after(5):
            while a.connected_peers():
                await trio.sleep(0.02)
        async with Peer.open(b_config):
            with trio.fail_after(5):
                while a.connected_peers() != [b_id]:
                    await trio.sleep(0.02)


@pytest.mark.slow
async def test_connection_churn_leaves_nothing_behind(lab: ColonyFixture) -> None:
    async def echo(incoming: Incoming) -> Echo:
        return Echo(incoming.body.text)

    async with Peer.open(member_config(lab, 1)) as hub:
        hub.on("test.echo", echo)
        for round_number in range(60):
            async with Peer.open(member_config(lab, round_number % 2 * 2)) as visitor:
                await visitor.connect(hub.listen_addrs[0], timeout=5)
                answer = await visitor.request(hub.peer_id, Echo(str(round_number)), timeout=5)
                assert answer == Echo(str(round_number))
        with trio.fail_after(5):
            while hub.host.connections or hub.gatekeeper._admissions:
                await trio.sleep(0.05)
        stats = hub.statistics()
        assert stats["gating"]["admitted_total"] == 60
        assert stats["messaging"]["requests_received"] == 60
        assert not any(stats["gating"]["refused"].values())
