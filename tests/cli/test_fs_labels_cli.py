"""``colonymesh fs`` with labels and snapshots, against two members' control channels on a local colony."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import trio

from colonymesh.executors.python import PythonFunctions
from colonymesh.fs.local import cid_of_path
from colonymesh.node.cli import main as cli_main
from colonymesh.node.colony.fscontrol import files_commands
from colonymesh.node.colony.local import LocalColonyConfig, open_local_colony
from colonymesh.node.control import ControlServer


async def _cli(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = await trio.to_thread.run_sync(cli_main, [str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def test_labels_revisions_sync_and_snapshots_through_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async def ok(*argv: object) -> Any:
        code, out, err = await _cli([*map(str, argv), "--json"], capsys)
        assert code == 0, err
        return json.loads(out)

    async def fails(*argv: object) -> str:
        code, out, err = await _cli(list(map(str, argv)), capsys)
        assert code == 1 and out == "" and err.count("\n") == 1, (code, out, err)
        return err

    source = tmp_path / "a.txt"
    source.write_text("one")
    config = LocalColonyConfig(
        state_dir=tmp_path / "colony", functions=PythonFunctions(), executors=1
    )
    with tempfile.TemporaryDirectory(prefix="cmfs") as short, trio.fail_after(120):
        a_ctl, b_ctl = f"ipc://{short}/a.sock", f"ipc://{short}/b.sock"
        async with open_local_colony(config) as colony, trio.open_nursery() as nursery:

            async def servers() -> list[str]:
                return [server.peer.peer_id for server in colony.servers]

            assert colony.files is not None
            other = colony.executors[0].fs
            assert other is not None
            for address, chunks in ((a_ctl, colony.files.chunks), (b_ctl, other.files.chunks)):
                commands = files_commands(chunks, servers)
                await nursery.start(ControlServer(address, commands).serve)
            a, b = ("--control", a_ctl), ("--control", b_ctl)

            put = await ok("fs", "put", source, "--label", "/in", *a)
            assert put["cid"] == cid_of_path(source) and put["name"] == "a.txt"
            await ok("fs", "put", source, "--label", "/in", *a)  # same content: no new revision
            source.write_text("two")
            second = await ok("fs", "put", source, "--label", "/in", *a)
            info = await ok("fs", "info", "a.txt", "--label", "/in", *b)
            assert [r["cid"] for r in info["revisions"]] == [put["cid"], second["cid"]]

            listed = await ok("fs", "ls", "/in", *b)
            assert [(f["name"], f["cid"], f["revisions"]) for f in listed["files"]] == [
                ("a.txt", second["cid"], 2)
            ]
            got = await ok("fs", "get", "a.txt", "--label", "/in", "-o", tmp_path / "got.txt", *b)
            assert (tmp_path / "got.txt").read_text() == "two"
            assert got["by_peer"] == {colony.client.peer.peer_id: 1}
            first = tmp_path / "first.txt"
            await ok("fs", "get", "a.txt", "-l", "/in", "--revision", put["cid"], "-o", first, *b)
            assert first.read_text() == "one"  # an older revision stays readable (pinned)

            work = tmp_path / "work"
            synced = await ok("fs", "sync", "-l", "/in", "-d", work, *b)
            assert synced["downloaded"] == ["a.txt"] and (work / "a.txt").read_text() == "two"
            (work / "deep").mkdir()
            (work / "deep" / "new.txt").write_text("new")
            (work / "a.txt").write_text("local edit")
            kept_remote = await ok("fs", "sync", "-l", "/in", "-d", work, *b)
            assert kept_remote["uploaded"] == ["deep/new.txt"]
            assert kept_remote["conflicts"] == ["a.txt"] and (work / "a.txt").read_text() == "two"
            (work / "a.txt").write_text("local edit")
            kept_local = await ok("fs", "sync", "-l", "/in", "-d", work, "--keeplocal", *b)
            assert kept_local["uploaded"] == ["a.txt"]

            labels = await ok("fs", "label", "ls", *a)
            assert labels["labels"] == [
                {"label": "/in", "files": 1},
                {"label": "/in/deep", "files": 1},
            ]
            snap = await ok("fs", "snapshot", "create", "--label", "/in", "--name", "s1", *a)
            assert snap["file_count"] == 2
            assert [s["name"] for s in (await ok("fs", "snapshot", "ls", *a))["snapshots"]] == [
                "s1"
            ]
            await ok("fs", "label", "rm", "/in", *a)
            assert (await ok("fs", "ls", *a))["files"] == []
            restored = await ok("fs", "snapshot", "get", "s1", "-d", tmp_path / "restore", *a)
            assert restored["files"] == ["a.txt", "deep/new.txt"]
            assert (tmp_path / "restore" / "a.txt").read_text() == "local edit"
            assert (tmp_path / "restore" / "deep" / "new.txt").read_text() == "new"
            await ok("fs", "snapshot", "rm", snap["snapshotid"], *a)

            assert "must start with '/'" in await fails("fs", "put", source, "--label", "in", *a)
            assert "no file" in await fails("fs", "get", "x", "--label", "/in", "-o", "y", *a)
            assert "no snapshot" in await fails("fs", "snapshot", "rm", "s1", *a)
            nursery.cancel_scope.cancel()
