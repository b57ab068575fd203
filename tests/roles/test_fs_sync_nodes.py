"""A spec's fs directives on real processes: ``executor run`` syncs in, runs, syncs out.

Three ``node run`` servers and one ``executor run --kind python`` peer. An input
file is put under a label through one server node; a spec whose ``fs`` section
syncs that label in and an output label out is submitted from the CLI; the
output file is then listed and fetched through another node, byte for byte.
"""

from __future__ import annotations

from pathlib import Path

import trio
from rolekit import make_cluster, wait_for

from colonymesh.node.sdk import connect
from support.cli import ok


async def test_an_executor_peer_syncs_a_specs_folders(tmp_path: Path) -> None:
    cluster = make_cluster(tmp_path, servers=3, executors=1)
    try:
        cluster.start(cluster.servers)
        cluster.wait_leader()
        cluster.start(cluster.executors)
        wait_for("executor registered", lambda: cluster.registered_executors() == 1, 30)
        first, second = cluster.servers[0], cluster.servers[1]
        source = tmp_path / "a.txt"
        source.write_bytes(b"hello colony\n")
        ok("fs", "put", source, "--label", "/in", "--state-dir", first.state, "--json")
        spec = {
            "funcname": "upper",
            "conditions": {"executortype": "python"},
            "fs": {
                "mount": "/cfs",
                "dirs": [
                    {"label": "/in", "dir": "/cfs/{processid}/in"},
                    {"label": "/out/{processid}", "dir": "/cfs/{processid}/out"},
                ],
            },
        }
        with trio.fail_after(90):
            async with connect(
                key=cluster.submitter_keys,
                certificate=cluster.submitter_certificate,
                colony=cluster.colony_dir,
                bootstrap=[s.address for s in cluster.servers],
                timeout_s=30.0,
            ) as colony:
                process = await colony.submit(spec)
                await process.wait(timeout_s=60)
                assert process.state == "success", process.errors
                assert process.output == ["a.txt"]
                pid = process.id
        on_second = ("--state-dir", second.state)
        listed = ok("fs", "ls", f"/out/{pid}", *on_second, "--json").json()["files"]
        assert [f["name"] for f in listed] == ["a.txt.up"]
        dest = tmp_path / "got.txt"
        ok("fs", "get", "a.txt.up", "--label", f"/out/{pid}", "-o", dest, *on_second)
        assert dest.read_bytes() == b"HELLO COLONY\n"
    finally:
        cluster.close()
