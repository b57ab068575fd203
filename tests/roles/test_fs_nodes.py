"""The meta-filesystem through `colonymesh node run` processes: put on one node, get on another."""

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


def test_a_file_put_on_one_node_is_read_on_another(cluster: Cluster, tmp_path: Path) -> None:
    first, second = cluster.servers[0], cluster.servers[1]
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom(3 * 256 * 1024 + 1234))  # four chunks and a root
    put = ok("fs", "put", source, "--state-dir", first.state, "--json").json()
    assert put["cid"] == ok("fs", "cid", source).stdout.strip()
    dest = tmp_path / "copy.bin"
    ok("fs", "get", put["cid"], dest, "--state-dir", second.state, "--json")
    assert dest.read_bytes() == source.read_bytes()
    assert "info" not in fails(
        "fs", "get", "bafkreinotacid", tmp_path / "x", "--state-dir", second.state
    )
