"""Labelled files and sync directives end to end on a local colony (real peers on loopback)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import trio

from colonymesh.executors.base import ProcessFailed
from colonymesh.executors.python import PythonFunctions
from colonymesh.fs.cid import Cid
from colonymesh.fs.local import cid_of_path
from colonymesh.node.colony.files import PIN_PREFIX, ColonyFiles, FileNotInColony
from colonymesh.node.colony.local import LocalColony, LocalColonyConfig, open_local_colony

BIG = random.Random(9).randbytes(600_000)  # three chunks: a DAG, not a raw leaf


def fs_functions() -> PythonFunctions:
    functions = PythonFunctions()

    @functions.function
    async def upper(ctx: Any) -> list[str]:
        """Read every input file, write its upper-cased copy to the output folder."""
        base = Path(ctx.fs_mount) / ctx.process_id
        written = []
        for source in sorted((base / "in").iterdir()):
            (base / "out" / (source.name + ".up")).write_bytes(source.read_bytes().upper())
            written.append(source.name)
        return written

    @functions.function
    async def listing(ctx: Any, fail: bool = False) -> list[str]:
        names = sorted(p.name for p in (Path(ctx.fs_root) / "snap" / ctx.process_id).iterdir())
        if fail:
            raise ProcessFailed("asked to fail", *names)
        return names

    return functions


def _files(colony: LocalColony) -> ColonyFiles:
    assert colony.files is not None
    return colony.files


async def test_a_process_syncs_an_input_and_an_output_dir(tmp_path: Path) -> None:
    config = LocalColonyConfig(state_dir=tmp_path / "colony", functions=fs_functions(), executors=1)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "a.txt").write_bytes(b"hello colony\n")
    (inputs / "big.bin").write_bytes(BIG)
    with trio.fail_after(90):
        async with open_local_colony(config) as colony:
            files = _files(colony)
            for name in ("a.txt", "big.bin"):
                put = await files.put(inputs / name, "/in")
                assert put["cid"] == cid_of_path(inputs / name)
            spec = {
                "funcname": "upper",
                "conditions": {"executortype": "python"},
                "fs": {
                    "mount": "/cfs",
                    "dirs": [
                        {"label": "/in", "dir": "/cfs/{processid}/in"},
                        {
                            "label": "/out/{processid}",
                            "dir": "/cfs/{processid}/out",
                            "onconflicts": {"onclose": {"keeplocal": True}},
                        },
                    ],
                },
            }
            pid = await colony.client.submit(spec)
            done = await colony.client.wait(pid, timeout_s=60)
            assert done["state"] == "success", done["errors"]
            assert done["output"] == ["a.txt", "big.bin"]

            expected = {"a.txt.up": b"HELLO COLONY\n", "big.bin.up": BIG.upper()}
            for name, data in expected.items():
                (tmp_path / name).write_bytes(data)
            listed = (await files.ls("/out"))["files"]
            assert [(f["label"], f["name"], f["cid"], f["size"]) for f in listed] == [
                (f"/out/{pid}", name, cid_of_path(tmp_path / name), len(data))
                for name, data in expected.items()
            ]
            executor = colony.executors[0]
            assert executor.fs is not None
            assert {f["adder"] for f in listed} == {executor.client.peer.peer_id}
            for name, data in expected.items():  # fetched from the executor's peer
                got = await files.get(f"/out/{pid}", name, tmp_path / "got" / name)
                assert (tmp_path / "got" / name).read_bytes() == data
                assert got["by_peer"] == {executor.client.peer.peer_id: got["blocks_fetched"]}

            # keepfiles false: the executor's folders are gone; its outputs stay pinned.
            assert not (executor.fs.root / "cfs" / pid).exists()
            store = executor.fs.files.chunks.store
            report = await trio.to_thread.run_sync(store.gc)
            for f in listed:
                assert PIN_PREFIX + f["cid"] in store.pins()
                assert store.has(Cid.parse(f["cid"]))
            assert report.kept_blocks >= 3 + 1  # big.bin.up's three leaves and its root

            # Removing the label unpins its outputs at the next pin update; gc then frees them.
            await files.remove_label("/out")
            await executor.fs.files.keep_pins()
            pinned = {label for label in store.pins() if label.startswith(PIN_PREFIX)}
            # Still pinned: the inputs it downloaded, which /in still references.
            assert pinned == {PIN_PREFIX + cid_of_path(inputs / n) for n in ("a.txt", "big.bin")}
            await trio.to_thread.run_sync(store.gc)
            assert not any(store.has(Cid.parse(f["cid"])) for f in listed)
            with pytest.raises(FileNotInColony):
                await files.get(f"/out/{pid}", "a.txt.up", tmp_path / "nope")


async def test_snapshot_directive_and_a_failed_process_keeps_its_snapshot(tmp_path: Path) -> None:
    config = LocalColonyConfig(state_dir=tmp_path / "colony", functions=fs_functions(), executors=1)
    source = tmp_path / "x.txt"
    source.write_text("x")
    with trio.fail_after(90):
        async with open_local_colony(config) as colony:
            files = _files(colony)
            await files.put(source, "/data")
            await files.put(source, "/data/sub", "y.txt")

            def spec(fail: bool, keepsnapshot: bool = False) -> dict[str, Any]:
                return {
                    "funcname": "listing",
                    "kwargs": {"fail": fail},
                    "conditions": {"executortype": "python"},
                    "fs": {
                        "snapshots": [
                            {
                                "label": "/data",
                                "dir": "/snap/{processid}",
                                "keepsnapshot": keepsnapshot,
                            }
                        ]
                    },
                }

            ok = await colony.client.wait(await colony.client.submit(spec(False)), timeout_s=60)
            assert ok["state"] == "success" and ok["output"] == ["sub", "x.txt"]
            assert await files.snapshots() == []  # removed after success (keepsnapshot false)

            bad = await colony.client.wait(await colony.client.submit(spec(True)), timeout_s=60)
            assert bad["state"] == "failed" and "asked to fail" in bad["errors"]
            kept = await files.snapshot(f"{bad['processid']}:/data")  # ColonyOS would delete it
            assert [(f["label"], f["name"]) for f in kept["files"]] == [
                ("/data", "x.txt"),
                ("/data/sub", "y.txt"),
            ]
            downloaded = await files.snapshot_get(kept["snapshotid"], tmp_path / "restore")
            assert downloaded["files"] == ["x.txt", "sub/y.txt"]
            assert (tmp_path / "restore" / "sub" / "y.txt").read_text() == "x"

            named = await colony.client.submit(
                {
                    **spec(False, keepsnapshot=True),
                    "fs": {
                        "snapshots": [
                            {
                                "snapshotid": kept["name"],
                                "dir": "/snap/{processid}",
                                "keepsnapshot": True,
                            }
                        ]
                    },
                }
            )
            again = await colony.client.wait(named, timeout_s=60)
            assert again["state"] == "success" and again["output"] == ["sub", "x.txt"]
            assert [s["snapshotid"] for s in await files.snapshots()] == [kept["snapshotid"]]

            missing = await colony.client.submit(
                {**spec(False), "fs": {"snapshots": [{"snapshotid": "nope", "dir": "/s"}]}}
            )
            failed = await colony.client.wait(missing, timeout_s=60)
            assert failed["state"] == "failed"
            assert "fs.snapshots[0]" in failed["errors"][0] and "nope" in failed["errors"][0]
