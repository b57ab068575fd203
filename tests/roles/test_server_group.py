"""The server group replaces a dead voter by itself, on real processes.

Four ``node run`` peers hold the ``server`` role; ``[colony] servers`` names
three (the founding voters), the fourth starts as a spare. A follower voter
is SIGKILLed: after ``voter_dead_s`` (10 election timeouts = 5 s here) the
leader adds the spare as a learner, promotes it and removes the dead voter,
one change at a time. The colony then keeps committing after a second voter
is killed (2 of 3 voters alive).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import trio
from chaos import spec
from rolekit import Cluster, Node, _toml_list, make_cluster, wait_for

from colonymesh.node.sdk import connect


def _voters(cluster: Cluster) -> list[str]:
    leader = cluster.leader()
    status = leader.try_status() if leader else None
    return sorted(status["ledger"]["voters"]) if status else []


def _found_with_three(cluster: Cluster) -> Node:
    """Name only the first three servers as founders; the fourth is a spare."""
    founders = [s.peer_id for s in cluster.servers[:3]]
    every = [s.peer_id for s in cluster.servers]
    for server in cluster.servers:
        config = server.folder / "node.toml"
        text = config.read_text().replace(f"servers = {_toml_list(every)}", "")
        text = text.replace("[colony]\n", f"[colony]\nservers = {_toml_list(founders)}\n")
        config.write_text(text)
    return cluster.servers[3]


async def _run_one(cluster: Cluster, i: int) -> dict[str, Any]:
    assert cluster.submitter_certificate is not None
    alive = [s.address for s in cluster.servers if s.alive()]
    async with connect(
        key=cluster.submitter_keys,
        certificate=cluster.submitter_certificate,
        colony=cluster.colony_dir,
        bootstrap=alive,
    ) as colony:
        process = await colony.submit(spec(i, 5))
        await process.wait(timeout_s=30)
        return process.view


async def test_a_dead_voter_is_replaced_by_a_spare(tmp_path: Path) -> None:
    cluster = make_cluster(tmp_path, servers=4, executors=1)
    spare = _found_with_three(cluster)
    try:
        cluster.start(cluster.servers)
        leader = cluster.wait_leader()
        cluster.start(cluster.executors)
        wait_for("executor registered", lambda: cluster.registered_executors() == 1, 30)
        founders = sorted(s.peer_id for s in cluster.servers[:3])
        assert _voters(cluster) == founders
        assert spare.status()["ledger"]["role"] != "leader"
        with trio.fail_after(120):
            assert (await _run_one(cluster, 1))["state"] == "success"
            victim = next(s for s in cluster.servers[:3] if s is not leader)
            victim.kill()
            killed_at = time.monotonic()
            expected = sorted({*founders, spare.peer_id} - {victim.peer_id})
            wait_for("the spare replaced the dead voter", lambda: _voters(cluster) == expected, 40)
            replaced_s = time.monotonic() - killed_at
            assert (await _run_one(cluster, 2))["state"] == "success"
            leader = cluster.wait_leader()
            second = next(s for s in cluster.servers if s.peer_id in expected and s is not leader)
            second.kill()
            assert (await _run_one(cluster, 3))["state"] == "success"
        assert spare.status()["ledger"]["role"] in ("leader", "follower")  # a voter now
        print(json.dumps({"dead_voter_replaced_after_s": round(replaced_s, 3)}))
    finally:
        cluster.close()
