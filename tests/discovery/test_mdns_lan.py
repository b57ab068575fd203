"""LAN discovery between real ``node run`` processes, on a multicast network of their own.

A network namespace stands in for one LAN: its loopback gets the MULTICAST
flag and the 224.0.0.0/4 route, which the host's loopback lacks. Two members
with ``[discovery] mdns = true`` and no bootstrap address find each other by
mDNS and connect; a member of another colony on the same LAN is found too,
dialled, and refused by gating — discovery suggests, gating decides. Needs
root for ``ip netns`` (CI runs as root); skipped with the reason otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from colonymesh.node.certs import create_colony
from colonymesh.node.identity import KeyPair
from support.noderun import NodeProcess, start_node, wait_for

MDNS = '[discovery]\nmdns = true\nmdns_interface = "127.0.0.1"\n'


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def lan() -> Iterator[str]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to make a network namespace")
    name = f"cm-mdns-{uuid.uuid4().hex[:8]}"
    try:
        _ip("netns", "add", name)
    except subprocess.CalledProcessError as error:
        pytest.skip(f"cannot create a network namespace: {error.stderr.decode().strip()}")
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        _ip("-n", name, "link", "set", "lo", "multicast", "on")
        _ip("-n", name, "route", "add", "224.0.0.0/4", "dev", "lo")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=10)


def test_members_find_each_other_by_mdns_and_a_stranger_is_refused(
    lan: str, tmp_path: Path
) -> None:
    prefix = ("ip", "netns", "exec", lan)
    owner = KeyPair.generate()
    colony = create_colony(owner, "lan", int(time.time()) - 3600)
    other_owner = KeyPair.generate()
    other = create_colony(other_owner, "elsewhere", int(time.time()) - 3600)
    nodes: list[NodeProcess] = []
    try:
        a, b = (
            start_node(tmp_path / name, colony, owner, serial, extra_toml=MDNS, prefix=prefix)
            for serial, name in ((1, "a"), (2, "b"))
        )
        stranger = start_node(
            tmp_path / "stranger", other, other_owner, 1, extra_toml=MDNS, prefix=prefix
        )
        nodes += [a, b, stranger]
        wait_for(
            "a and b connected by mDNS",
            lambda: (
                a.call("status")["connected_peers"] == [b.peer_id]
                and b.call("status")["connected_peers"] == [a.peer_id]
            ),
            60,
        )
        # One found the other and dialled (the other may have queried before the first
        # one listened: it finds it at its next query, already connected).
        statuses = [node.call("status")["mdns"] for node in (a, b)]
        assert sum(s["found"] for s in statuses) >= 1 and sum(s["connected"] for s in statuses) >= 1
        assert all(s["malformed"] == 0 for s in statuses)
        # The stranger was found on the LAN and dialled, but never admitted either way.
        wait_for(
            "the stranger refused",
            lambda: (
                sum(n.call("status")["gating"]["refused"]["foreign_colony"] for n in (a, b))
                + stranger.call("status")["gating"]["refused"]["foreign_colony"]
                >= 1
            ),
            60,
        )
        assert stranger.call("status")["connected_peers"] == []
        assert stranger.peer_id not in a.call("status")["connected_peers"]
        for node in nodes:
            assert node.process.poll() is None, node.log()
    finally:
        for node in nodes:
            node.stop()
