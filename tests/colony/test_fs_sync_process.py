"""A local-process step runs in the folder its spec's fs directives synced (real peers)."""

from __future__ import annotations

import sys
from pathlib import Path

import trio

from colonymesh.executors.process import ProcessConfig, ProcessExecutor
from colonymesh.node.colony.files import ColonyFiles
from colonymesh.node.colony.local import ExecutorGroup, LocalColonyConfig, open_local_colony

# Reads in/input.txt relative to its working directory, writes out/result.txt there.
SCRIPT = """
import json, os, pathlib
text = pathlib.Path("in/input.txt").read_text()
os.makedirs("out", exist_ok=True)
pathlib.Path("out/result.txt").write_text(text[::-1])
print(json.dumps([os.getcwd(), os.environ.get("COLONYMESH_FS_ROOT"),
                  os.environ.get("COLONYMESH_FS_MOUNT")]))
"""


async def test_a_local_process_reads_synced_input_and_its_output_is_uploaded(
    tmp_path: Path,
) -> None:
    kind = ProcessExecutor(ProcessConfig(commands={"py": (sys.executable, "-c")}, grace_s=1.0))
    config = LocalColonyConfig(
        state_dir=tmp_path / "colony",
        executors=0,
        executor_groups=(ExecutorGroup("local", kind, 1),),
    )
    source = tmp_path / "input.txt"
    source.write_text("colony input")
    with trio.fail_after(90):
        async with open_local_colony(config) as colony:
            files = colony.files
            assert isinstance(files, ColonyFiles)
            await files.put(source, "/in")
            spec = {
                "funcname": "py",
                "args": [SCRIPT],
                "conditions": {"executortype": "local"},
                "fs": {
                    "mount": "/work/{processid}",
                    "dirs": [
                        {"label": "/in", "dir": "/work/{processid}/in"},
                        {
                            "label": "/out/{processid}",
                            "dir": "/work/{processid}/out",
                            "onconflicts": {"onclose": {"keeplocal": True}},
                        },
                    ],
                },
            }
            pid = await colony.client.submit(spec)
            done = await colony.client.wait(pid, timeout_s=60)
            assert done["state"] == "success", done["errors"]
            executor = colony.executors[0]
            assert executor.fs is not None
            root = executor.fs.root
            mount = str(root / "work" / pid)
            assert done["output"] == [mount, str(root), mount]

            got = await files.get(f"/out/{pid}", "result.txt", tmp_path / "got.txt")
            assert got["size"] == len("colony input")
            assert (tmp_path / "got.txt").read_text() == "tupni ynoloc"
            listed = (await files.ls("/out"))["files"]
            assert [(f["label"], f["name"]) for f in listed] == [(f"/out/{pid}", "result.txt")]
            # keepfiles is false: the runtime's sync cleaned the folders up afterwards.
            assert not (root / "work" / pid / "in").exists()
