"""Finding the leader with no server configured: signed announcements, on real processes.

Three ``node run`` servers and one executor on loopback. A client whose only
bootstrap peer is the executor (not a server) finds the leader by asking it
(the executor keeps the newest server-group announcement from gossip),
submits and waits; then the leader is SIGKILLed and the same client follows
the announcement of the next term to the new leader.
"""

from __future__ import annotations

import json
from pathlib import Path

import trio
from chaos import spec
from rolekit import make_cluster, wait_for

import colonymesh
from colonymesh.node.colony.client import ColonyClient
from colonymesh.node.peer.daemon import load_colony
from colonymesh.node.peer.peer import Peer, PeerConfig


async def test_a_client_knowing_only_an_executor_follows_the_leader(tmp_path: Path) -> None:
    cluster = make_cluster(tmp_path, servers=3, executors=1)
    try:
        cluster.start(cluster.servers)
        first_leader = cluster.wait_leader()
        cluster.start(cluster.executors)
        wait_for("executor registered", lambda: cluster.registered_executors() == 1, 30)
        executor = cluster.executors[0]
        wait_for(
            "the executor heard the announcement",
            lambda: executor.status()["discovery"]["leader"] == first_leader.peer_id,
            10,
        )
        membership, _, _ = load_colony(cluster.colony_dir)
        config = PeerConfig(
            cluster.submitter_keys,
            membership,
            cluster.submitter_certificate,
            bootstrap=(executor.address,),
        )
        with trio.fail_after(90):
            async with Peer.open(config) as peer:
                client = ColonyClient(peer, [], timeout_s=20)
                await client.admit_self()
                assert client.directory.leader == first_leader.peer_id
                first = await client.wait(await client.submit(spec(1, 5)), timeout_s=20)
                assert first["state"] == "success"

                first_leader.kill()
                killed_at = trio.current_time()
                second = await client.wait(await client.submit(spec(2, 5)), timeout_s=30)
                followed_s = trio.current_time() - killed_at
                assert second["state"] == "success"
                new_leader = cluster.wait_leader()
                assert new_leader is not first_leader
                # It learned the group (voters and their addresses) only from the
                # announcement; their not-leader answers led it to the new leader.
                assert client._candidates()[0] == new_leader.peer_id
                assert client.stats.discoveries >= 1
        print(json.dumps({"submit_and_result_after_leader_kill_s": round(followed_s, 3)}))
        # The executor's directory (fed by gossip) moved to the next term's leader.
        wait_for(
            "the next term's announcement",
            lambda: executor.status()["discovery"]["leader"] == new_leader.peer_id,
            10,
        )
        assert executor.status()["discovery"]["refused"] == 0
        # The SDK joins the same way: its only bootstrap peer is the executor.
        with trio.fail_after(60):
            async with colonymesh.connect(
                key=cluster.submitter_keys,
                certificate=cluster.submitter_certificate,
                colony=membership,
                bootstrap=[executor.address],
            ) as session:
                process = await session.submit(spec(3, 5))
                await process.wait(timeout_s=30)
                assert process.state == "success"
    finally:
        cluster.close()
