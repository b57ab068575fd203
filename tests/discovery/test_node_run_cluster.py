"""Real ``colonymesh node run`` processes on loopback, started from one bootstrap address.

Issue 6's acceptance as an operator would check it: every node's routing table
fills (``node peers``), every node finds every other by a DHT lookup (``node
find``), and a notice gossiped at one node (``node announce``) reaches all of
them (``node notices``), counted back at the announcer. Five nodes in the
default suite, twenty under ``slow``. Each node has its own folder (key,
certificate, colony record), as separate machines would.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from colonymesh.node.certs import Colony, Role, create_colony, encode_record, issue_certificate
from colonymesh.node.colonyfiles import COLONY_FILE, MEMBERS_DIR
from colonymesh.node.config import control_address_of
from colonymesh.node.control import ControlError, call
from colonymesh.node.identity import KeyPair, write_key_file
from support.cli import COMMAND, run

K = 20  # the DHT's bucket size: a table holds at most this many of the others here


@dataclass
class NodeProcess:
    folder: Path
    process: subprocess.Popen[bytes]
    peer_id: str

    def call(self, command: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        return call(control_address_of(self.folder / "state"), command, arguments, timeout_s=30)

    def log(self) -> str:
        return (self.folder / "node.log").read_text(errors="replace")[-4000:]


def _wait_for(what: str, predicate: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except ControlError:
            pass  # not listening yet
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _start(
    root: Path, colony: Colony, owner: KeyPair, index: int, bootstrap: str | None
) -> NodeProcess:
    folder = root / f"n{index}"
    (folder / "colony" / MEMBERS_DIR).mkdir(parents=True)
    (folder / "colony" / COLONY_FILE).write_bytes(encode_record(colony))
    keys = KeyPair.generate()
    write_key_file(folder / "node.key", keys)
    now = int(time.time())
    certificate = issue_certificate(
        owner,
        colony,
        keys.public_key,
        name=f"n{index}",
        roles=(Role.EXECUTOR,),
        not_before=now - 60,
        not_after=now + 3600,
        serial=index + 1,
    )
    (folder / "node.cert").write_bytes(encode_record(certificate))
    boot = "" if bootstrap is None else f'"{bootstrap}"'
    (folder / "node.toml").write_text(
        "[node]\n"
        'key = "node.key"\n'
        'colony = "colony"\n'
        'certificate = "node.cert"\n'
        'listen = ["/ip4/127.0.0.1/tcp/0"]\n'
        f"bootstrap = [{boot}]\n"
    )
    with open(folder / "node.log", "wb") as log:
        process = subprocess.Popen(
            [*COMMAND, "node", "run", "--config", str(folder / "node.toml"), "--log-level", "info"],
            stdout=subprocess.DEVNULL,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
    return NodeProcess(folder, process, keys.peer_id)


@pytest.fixture
def start_cluster(tmp_path: Path) -> Iterator[Callable[[int], list[NodeProcess]]]:
    started: list[NodeProcess] = []

    def start(count: int) -> list[NodeProcess]:
        owner = KeyPair.generate()
        colony = create_colony(owner, "discovery", int(time.time()) - 3600)
        first = _start(tmp_path, colony, owner, 0, None)
        started.append(first)
        _wait_for("the first node", lambda: bool(first.call("status")["listen_addrs"]), 30)
        address = f"{first.call('status')['listen_addrs'][0]}/p2p/{first.peer_id}"
        for index in range(1, count):
            started.append(_start(tmp_path, colony, owner, index, address))
        for node in started:
            _wait_for(f"{node.folder.name} up", lambda node=node: bool(node.call("status")), 60)
        return list(started)

    yield start
    for node in started:
        if node.process.poll() is None:
            node.process.terminate()
    for node in started:
        try:
            node.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            node.process.kill()
            node.process.wait()


def _check_discovery_and_gossip(nodes: list[NodeProcess]) -> None:
    want = min(len(nodes) - 1, K)
    for node in nodes:
        _wait_for(
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
        _wait_for(
            f"the notice at {node.folder.name}",
            lambda node=node: any(
                n["msg_id"] == msg_id and n["text"] == "maintenance at noon"
                for n in node.call("gossip.notices")["notices"]
            ),
            30,
        )
        notices = [n for n in node.call("gossip.notices")["notices"] if n["msg_id"] == msg_id]
        assert len(notices) == 1 and notices[0]["from"] == nodes[0].peer_id
    _wait_for(
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
