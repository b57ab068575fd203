"""``colonymesh fs put|get|ls|info`` against nodes' control channels (served in-process)."""

from __future__ import annotations

import json
import random
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pytest
import trio

from colonymesh.fs.local import cid_of_path
from colonymesh.node.cli import main as cli_main
from colonymesh.node.control import ControlServer
from colonymesh.node.fsnet.control import fs_commands
from colonymesh.node.fsnet.lab import open_fs_lab


async def _cli(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = await trio.to_thread.run_sync(cli_main, list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def test_put_on_one_node_get_ls_info_on_another(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "tree"
    folder.mkdir()
    data = random.Random(3).randbytes(700_000)
    (folder / "data.bin").write_bytes(data)
    (folder / "note.txt").write_text("hello")
    with tempfile.TemporaryDirectory(prefix="cmfs") as short:  # ipc paths must stay short
        a_ctl, b_ctl = f"ipc://{short}/a.sock", f"ipc://{short}/b.sock"
        async with open_fs_lab(tmp_path / "state", 2) as (a, b), trio.open_nursery() as nursery:
            await nursery.start(ControlServer(a_ctl, fs_commands(a)).serve)
            await nursery.start(ControlServer(b_ctl, fs_commands(b)).serve)

            code, out, _ = await _cli(["fs", "put", str(folder), "--control", a_ctl], capsys)
            assert code == 0 and out.strip() == cid_of_path(folder)
            root = out.strip()

            code, out, _ = await _cli(["fs", "ls", root, "--control", b_ctl, "--json"], capsys)
            assert code == 0
            entries = json.loads(out)["entries"]
            assert [(e["name"], e["size"] > 0) for e in entries] == [
                ("data.bin", True),
                ("note.txt", True),
            ]

            code, out, _ = await _cli(["fs", "info", root, "--control", b_ctl, "--json"], capsys)
            assert code == 0 and json.loads(out)["type"] == "directory"

            dest = tmp_path / "copy"
            code, out, _ = await _cli(
                ["fs", "get", root, str(dest), "--control", b_ctl, "--json"], capsys
            )
            assert code == 0
            result = json.loads(out)
            assert result["by_peer"] == {a.peer.peer_id: result["blocks_fetched"]}
            assert (dest / "data.bin").read_bytes() == data
            assert (dest / "note.txt").read_text() == "hello"

            # Errors: one line on stderr, non-zero exit, node unharmed.
            code, out, err = await _cli(["fs", "info", "not-a-cid", "--control", b_ctl], capsys)
            assert code == 1 and "not a CID" in err and err.count("\n") == 1
            code, _, err = await _cli(["fs", "get", root, str(dest), "--control", b_ctl], capsys)
            assert code == 1 and "already exists" in err
            code, _, err = await _cli(
                ["fs", "put", str(tmp_path / "nope"), "--control", a_ctl], capsys
            )
            assert code == 1 and "no such file" in err
            nursery.cancel_scope.cancel()
