"""The SDK's labelled files: an app puts a file, another member of the colony gets it."""

from __future__ import annotations

from pathlib import Path

import trio

import colonymesh
from colonymesh.executors.python import PythonFunctions
from colonymesh.node.certs import Membership, Role
from colonymesh.node.colony.files import PIN_PREFIX
from colonymesh.node.colony.local import LocalColonyConfig, open_local_colony


async def test_an_app_puts_a_labelled_file_another_member_gets_it(tmp_path: Path) -> None:
    config = LocalColonyConfig(
        state_dir=tmp_path / "colony", functions=PythonFunctions(), executors=0
    )
    source = tmp_path / "report.csv"
    source.write_text("a,b\n1,2\n")
    with trio.fail_after(60):
        async with open_local_colony(config) as local:
            keys, certificate = local.issue("app", Role.SUBMITTER)
            async with colonymesh.connect(
                key=keys,
                certificate=certificate,
                colony=Membership(local.colony),
                bootstrap=local.bootstrap,
                listen=["/ip4/127.0.0.1/tcp/0"],
            ) as app:
                files = app.files(tmp_path / "app-chunks")
                put = await files.put(source, "/reports")
                assert local.files is not None
                listed = await local.files.ls("/reports")
                assert [(f["name"], f["cid"]) for f in listed["files"]] == [
                    ("report.csv", put["cid"])
                ]
                got = await local.files.get("/reports", "report.csv", tmp_path / "copy.csv")
                assert (tmp_path / "copy.csv").read_text() == "a,b\n1,2\n"
                assert got["by_peer"] == {app.peer.peer_id: 1}

                # A put's pin survives a pin update that runs before its commit lands.
                extra = tmp_path / "extra.txt"
                extra.write_text("not committed yet")
                cid, _ = await trio.to_thread.run_sync(files._import_file, extra)
                await files.keep_pins()
                assert PIN_PREFIX + cid.encode() in files.chunks.store.pins()
                files._fresh.discard(cid.encode())  # as put does once the commit is in
                await files.keep_pins()  # never committed: the ledger does not name it
                pins = files.chunks.store.pins()
                assert PIN_PREFIX + cid.encode() not in pins and PIN_PREFIX + put["cid"] in pins
