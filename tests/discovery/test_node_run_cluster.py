"""Real ``colonymesh node run`` processes on loopback, started from one bootstrap address.

Issue 6's acceptance as an operator would check it: every node's routing table
fills (``node peers``), every node finds every other by a DHT lookup (``node
find``), and a notice gossiped at one node (``node announce``) reaches all of
them (``node notices``), counted back at the announcer. Five nodes in the
default suite, twenty under ``slow``. Each node has its own folder (key,
certificate, colony record), as separate machines would.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from colonymesh.node.certs import create_colony
from colonymesh.node.identity import KeyPair
from support.cli import run
from support.noderun import NodeProcess, start_node, wait_for

K = 20  # the DHT's bucket size: a table holds at most this many of the others here


@pytest.fixture
def start_cluster(tmp_path: Path) -> Iterator[Callable[[int], list[NodeProcess]]]:
    started: list[NodeProcess] = []

    def start(count: int) -> list[NodeProcess]:
        owner = KeyPair.generate()
        colony = create_colony(owner, "discovery", int(time.time()) - 3600)
        first = start_node(tmp_path / "n0", colony, owner, 1)
        started.append(first)
        wait_for("the first node", lambda: bool(first.call("status")["listen_addrs"]), 30)
        address = f"{first.call('status')['listen_addrs'][0]}/p2p/{first.peer_id}"
        for index in range(1, count):
            folder = tmp_path / f"n{index}"
            started.append(start_node(folder, colony, owner, index + 1, bootstrap=address))
        for node in started:
            wait_for(f"{node.folder.name} up", lambda node=node: bool(node.call("status")), 60)
        return list(started)

    yield start
    for node in started:
        node.stop()


def _check_discovery_and_gossip(nodes: list[NodeProcess]) -> None:
    want = min(len(nodes) - 1, K)
    for node in nodes:
        wait_for(
            f"{node.folder.name}'s routing table ({want} contacts)",
            lambda node=node: len(node.call("dht.table")["contacts"]) >= want,
            90,
        )
    # The operator's view, through the CLI once.
    shown = run("node", "peers", "--state-dir", nodes[-1].folder / "state")
    assert shown.code == 0, shown.stderr
    assert f"routing table ({want} contacts)" in shown.stdout, shown.stdout
    document = run("node", "peers", "--json", "--state-dir", nodes[-1].folder / "state").json()
    assert len(document["routing_table"]) == want and document["peers"]
    failures = []
    for node in nodes:
        for other in nodes:
            if other is not node:
                found = node.call("dht.find", {"peer_id": other.peer_id})
                if not (found["found"] and found["addrs"]):
                    failures.append(f"{node.folder.name} -> {other.folder.name}")
    if failures:  # say what the nodes saw: a retry and their logs' warnings
        by_name = {n.folder.name: n for n in nodes}
        detail = []
        for failure in failures:
            source, target = (by_name[x] for x in failure.split(" -> "))
            again = source.call("dht.find", {"peer_id": target.peer_id})
            warnings = [
                line
                for line in source.log().splitlines()
                if "WARNING" in line or "retiring" in line or target.peer_id in line
            ]
            detail.append(f"{failure}: retry found={again['found']}; log: {warnings[-8:]}")
        raise AssertionError("lookups failed:\n" + "\n".join(detail))
    # Gossip: give subscriptions a heartbeat to be announced, then announce once.
    time.sleep(2.0)
    msg_id = nodes[0].call("gossip.announce", {"text": "maintenance at noon"})["msg_id"]
    for node in nodes[1:]:
        wait_for(
            f"the notice at {node.folder.name}",
            lambda node=node: any(
                n["msg_id"] == msg_id and n["text"] == "maintenance at noon"
                for n in node.call("gossip.notices")["notices"]
            ),
            30,
        )
        notices = [n for n in node.call("gossip.notices")["notices"] if n["msg_id"] == msg_id]
        assert len(notices) == 1 and notices[0]["from"] == nodes[0].peer_id
    wait_for(
        "delivery receipts at the announcer",
        lambda: (
            nodes[0].call("gossip.notices", {"msg_id": msg_id})["delivered_to"][msg_id]
            == len(nodes) - 1
        ),
        30,
    )
    for node in nodes:
        assert node.process.poll() is None, node.log()


def test_five_node_processes_discover_each_other_and_gossip(
    start_cluster: Callable[[int], list[NodeProcess]],
) -> None:
    _check_discovery_and_gossip(start_cluster(5))


@pytest.mark.slow
def test_twenty_node_processes_from_one_bootstrap_address(
    start_cluster: Callable[[int], list[NodeProcess]],
) -> None:
    _check_discovery_and_gossip(start_cluster(20))
