"""Submissions on real processes: the direct path to the leader, and gossip when it is cut off.

Three ``node run`` servers and one executor on loopback. A client that
reaches the leader submits directly (nothing gossiped). A client that cannot
reach the leader (its dials and requests to it fail) publishes the same
signed frame through the executor's relay on the specs topic; the leader
appends it once, the client learns its id from a follower, and the process
runs.
"""

from __future__ import annotations

from pathlib import Path

import trio
from chaos import spec
from rolekit import Cluster, make_cluster, wait_for

from colonymesh.node.colony.client import ColonyClient
from colonymesh.node.errors import ColonymeshError
from colonymesh.node.peer.daemon import load_colony
from colonymesh.node.peer.peer import Peer, PeerConfig


class CutOffClient(ColonyClient):
    """A client that cannot reach one peer (the leader)."""

    unreachable = ""

    async def _reach(self, server: str, deadline: float) -> None:
        if server == self.unreachable:
            raise ColonymeshError("cut off from the leader (test)")
        await super()._reach(server, deadline)


def _config(cluster: Cluster, bootstrap: str) -> PeerConfig:
    membership, _, _ = load_colony(cluster.colony_dir)
    return PeerConfig(
        cluster.submitter_keys, membership, cluster.submitter_certificate, bootstrap=(bootstrap,)
    )


async def test_direct_submission_and_gossip_when_the_leader_is_unreachable(
    tmp_path: Path,
) -> None:
    cluster = make_cluster(tmp_path, servers=3, executors=1)
    try:
        cluster.start(cluster.servers)
        leader = cluster.wait_leader()
        cluster.start(cluster.executors)
        wait_for("executor registered", lambda: cluster.registered_executors() == 1, 30)
        executor = cluster.executors[0]
        follower = next(s for s in cluster.servers if s is not leader)
        with trio.fail_after(90):
            async with Peer.open(_config(cluster, follower.address)) as peer:
                direct = ColonyClient(peer, [follower.peer_id])
                await direct.admit_self()
                done = await direct.wait(await direct.submit(spec(1, 5)), timeout_s=20)
                assert done["state"] == "success" and direct.stats.gossiped == 0
            async with Peer.open(_config(cluster, executor.address)) as peer:
                while not peer.connected_peers():
                    await trio.sleep(0.02)  # the bootstrap dial
                cut = CutOffClient(peer, [], direct_timeout_s=2.0)
                cut.unreachable = leader.peer_id
                pid = await cut.submit(spec(2, 5))
                done = await cut.wait(pid, timeout_s=20)
                assert done["state"] == "success" and done["output"][0] == 2
                assert cut.stats.gossiped == 1
                assert peer.connections.connection_to(leader.peer_id) is None
        specs = leader.status()["specs"]
        assert specs["applied"] == 1 and specs["proposed"] == 1, specs
        for server in cluster.servers:  # every server dropped it from pending once applied
            wait_for("pending drained", lambda s=server: s.status()["specs"]["pending"] == 0, 5)
    finally:
        cluster.close()
