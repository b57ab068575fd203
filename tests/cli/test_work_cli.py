"""The colony-at-work commands against a running `colonymesh dev` colony (real processes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from colonymesh.node.cli.work import gib
from support.cli import COMMAND, fails, ok

SQUARE = {"funcname": "square", "args": [9], "conditions": {"executortype": "python"}}


@pytest.fixture(scope="module")
def dev_colony(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("dev") / "colony"
    process = subprocess.Popen(
        [*COMMAND, "dev", "--dir", str(directory), "--executors", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("export COLONYMESH_PROFILE="):
            break
    else:
        pytest.fail(
            f"colonymesh dev did not start: {process.stderr.read() if process.stderr else ''}"
        )
    os.environ["COLONYMESH_PROFILE"] = str(directory / "profile")
    try:
        yield directory
    finally:
        del os.environ["COLONYMESH_PROFILE"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        assert "dev colony stopped" in process.stdout.read()


def test_submit_wait_and_inspect(dev_colony: Path, tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(SQUARE))
    done = ok("function", "submit", spec, "--wait", "--json").json()
    assert (done["state"], done["output"]) == ("success", [81])
    got = ok("process", "get", done["processid"], "--json").json()
    assert got["executor"] and got["funcname"] == "square"
    listed = ok("process", "pss", "--json").json()["processes"]
    assert done["processid"] in {p["processid"] for p in listed}
    status = ok("colony", "status", "--json").json()
    assert status["processes"]["success"] >= 1 and len(status["raft"]["voters"]) == 3
    executors = ok("executor", "ls", "--json").json()["executors"]
    assert {e["name"] for e in executors} == {"python-1", "python-2"}
    assert "square" in executors[0]["functions"]
    assert {e["storage_bytes"] for e in executors} == {2**34}
    table = ok("executor", "ls").stdout
    assert "storage" in table and "16 GiB" in table, table


def test_storage_is_shown_in_gib() -> None:
    assert [gib(n) for n in (0, 2**30, 2**34, 3 * 2**29, 2**30 + 1, 150 * 2**30 + 2**29)] == [
        "-",
        "1 GiB",
        "16 GiB",
        "1.5 GiB",
        "1.0 GiB",
        "150 GiB",
    ]


def test_a_workflow_through_the_cli(dev_colony: Path, tmp_path: Path) -> None:
    workflow = tmp_path / "wf.json"
    workflow.write_text(
        json.dumps(
            {
                "colonyname": "dev",
                "functionspecs": [
                    {
                        "nodename": "map",
                        "funcname": "split",
                        "args": [3],
                        "conditions": {"executortype": "python"},
                    },
                    {
                        "nodename": "reduce",
                        "funcname": "total",
                        "conditions": {"executortype": "python", "dependencies": ["map"]},
                    },
                ],
            }
        )
    )
    view = ok("workflow", "submit", workflow, "--wait", "--json").json()
    assert view["state"] == "success"
    assert next(p for p in view["processes"] if p["spec"]["nodename"] == "reduce")["output"] == [5]


def test_bad_specs_and_ids_are_one_line_errors(dev_colony: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**SQUARE, "conditions": {"executortype": "python", "walltime": -5}}))
    assert "conditions.walltime" in fails("function", "submit", bad)
    assert "no process" in fails("process", "get", "f" * 64)
    assert "cannot read" in fails("function", "submit", tmp_path / "missing.json")


def test_commands_need_a_profile(tmp_path: Path) -> None:
    env_profile = os.environ.pop("COLONYMESH_PROFILE", None)
    try:
        assert "no client profile" in fails("process", "ps")
    finally:
        if env_profile is not None:
            os.environ["COLONYMESH_PROFILE"] = env_profile
