"""Labelled files through `colonymesh node run` processes: put under a label on one node, read on another."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from rolekit import Cluster, make_cluster

from support.cli import fails, ok


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    made = make_cluster(tmp_path, servers=3, executors=0)
    try:
        made.start(made.servers)
        made.wait_leader()
        yield made
    finally:
        made.close()


def test_labelled_put_on_one_node_get_and_snapshot_on_another(
    cluster: Cluster, tmp_path: Path
) -> None:
    first, second = cluster.servers[0], cluster.servers[1]
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom(2 * 256 * 1024 + 7))
    on_first, on_second = ("--state-dir", first.state), ("--state-dir", second.state)
    put = ok("fs", "put", source, "--label", "/in", *on_first, "--json").json()
    assert put["cid"] == ok("fs", "cid", source).stdout.strip()
    listed = ok("fs", "ls", "/in", *on_second, "--json").json()["files"]
    assert [(f["name"], f["cid"], f["adder"]) for f in listed] == [
        ("data.bin", put["cid"], first.peer_id)
    ]
    dest = tmp_path / "copy.bin"
    ok("fs", "get", "data.bin", "--label", "/in", "-o", dest, *on_second, "--json")
    assert dest.read_bytes() == source.read_bytes()
    snap = ok("fs", "snapshot", "create", "-l", "/in", "--name", "s", *on_second, "--json").json()
    ok("fs", "rm", "data.bin", "-l", "/in", *on_first)
    assert ok("fs", "ls", "/in", *on_first, "--json").json()["files"] == []
    ok("fs", "snapshot", "get", "s", "-d", tmp_path / "restored", *on_first, "--json")
    assert (tmp_path / "restored" / "data.bin").read_bytes() == source.read_bytes()
    ok("fs", "snapshot", "rm", snap["snapshotid"], *on_first)
    assert "no snapshot" in fails("fs", "snapshot", "rm", "s", *on_first)
