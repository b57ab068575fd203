"""The operator view against a real colony of processes: ``colonymesh dht put|get|providers|
find|peers`` from a client profile, as a user runs them."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from proccluster import ProcCluster

from support.cli import run


@pytest.fixture(scope="module")
def colony(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ProcCluster, Path]]:
    root = tmp_path_factory.mktemp("dhtcli")
    cluster = ProcCluster(root / "procs", 4)
    try:
        cluster.wait_until(lambda s: all(x["contacts"] >= 3 for x in s), 30, "tables")
        profile = root / "profile"
        cluster.write_profile(profile)
        yield cluster, profile
    finally:
        cluster.stop()


def test_put_then_get_from_another_client_process(colony: tuple[ProcCluster, Path]) -> None:
    cluster, profile = colony
    put = run("dht", "put", "cfg/motd", "hello colony", "--profile", profile, "--json")
    assert put.code == 0, put.stderr
    assert put.json()["stored"] >= 3
    got = run("dht", "get", "cfg/motd", "--profile", profile, "--json")
    assert got.code == 0, got.stderr
    assert got.json()["value"] == "hello colony"
    # and a member process reads the operator's record too (its certificate travelled along)
    assert cluster.procs[3].call({"op": "get", "key": b"cfg/motd".hex()})["value"] == (
        b"hello colony".hex()
    )
    missing = run("dht", "get", "nothing/here", "--profile", profile)
    assert missing.code == 1 and "no value" in missing.stdout


def test_providers_find_and_peers(colony: tuple[ProcCluster, Path]) -> None:
    cluster, profile = colony
    assert cluster.procs[2].call({"op": "provide", "key": b"chunk/1".hex()})["stored"] >= 1
    providers = run("dht", "providers", "chunk/1", "--profile", profile, "--json")
    assert providers.code == 0, providers.stderr
    assert [p["peer_id"] for p in providers.json()["providers"]] == [cluster.procs[2].peer_id]
    found = run("dht", "find", cluster.procs[1].peer_id, "--profile", profile, "--json")
    assert found.code == 0 and found.json()["addrs"], found.stderr
    peers = run("dht", "peers", "--profile", profile, "--json")
    assert peers.code == 0, peers.stderr
    assert {c["peer_id"] for c in peers.json()["contacts"]} == {p.peer_id for p in cluster.procs}
    text = run("dht", "peers", "--profile", profile)
    assert "4 contact(s)" in text.stdout


def test_no_profile_is_one_line_error(tmp_path: Path) -> None:
    result = run("dht", "get", "x", "--profile", tmp_path)
    assert result.code == 1 and result.stderr.count("\n") == 1 and "profile" in result.stderr
