"""``cron`` and ``generator`` against a running `colonymesh dev` colony (real processes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.cli import COMMAND, fails, ok


def workflow(funcname: str, args: list[Any]) -> dict[str, Any]:
    return {
        "colonyname": "dev",
        "functionspecs": [
            {
                "nodename": funcname,
                "funcname": funcname,
                "args": args,
                "conditions": {"executortype": "python"},
            }
        ],
    }


@pytest.fixture(scope="module")
def dev_colony(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("dev") / "colony"
    process = subprocess.Popen(
        [*COMMAND, "dev", "--dir", str(directory), "--executors", "1"],
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


def poll(check: Any, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.3)


@pytest.mark.slow  # a dozen CLI runs, each joining the colony (~2 s); the SDK e2e runs by default
def test_cron_add_ls_get_run_rm(dev_colony: Path, tmp_path: Path) -> None:
    spec = tmp_path / "square.json"
    spec.write_text(json.dumps(workflow("square", [4])))
    added = ok("cron", "add", "--name", "sq", "--interval", "1", "--spec", spec, "--json").json()
    assert added["name"] == "sq" and added["interval"] == 1 and added["runs"] == 0

    def fired_twice() -> dict[str, Any] | None:
        view: dict[str, Any] = ok("cron", "get", "sq", "--json").json()
        return view if view["runs"] >= 2 else None

    got = poll(fired_twice)
    assert got, "the cron did not fire twice within 30 s"
    assert got["cronid"] == added["cronid"] and got["prevprocessgraphid"]
    assert got["workflowspec"]["functionspecs"][0]["funcname"] == "square"
    table = ok("cron", "ls").stdout
    assert "sq" in table and "every 1 s" in table
    workflow_id = ok("cron", "run", "sq", "--json").json()["workflowid"]
    assert len(workflow_id) == 64 and workflow_id != got["prevprocessgraphid"]
    assert ok("cron", "rm", added["cronid"], "--json").json() == {"removed": added["cronid"]}
    assert "no cron sq" in fails("cron", "get", "sq")


@pytest.mark.slow
def test_generator_add_pack_ls_get_rm(dev_colony: Path, tmp_path: Path) -> None:
    spec = tmp_path / "words.json"
    spec.write_text(json.dumps(workflow("word_count", ["placeholder"])))
    ok("generator", "add", "--name", "words", "--spec", spec, "--trigger", "1", "--timeout", "0")
    ok("generator", "pack", "words", "three little words")

    def ran() -> dict[str, Any] | None:
        view = ok("generator", "get", "words", "--json").json()
        return view if view["runs"] == 1 and view["lastworkflowstate"] == "success" else None

    view = poll(ran)
    assert view and view["pending"] == [], "the generator did not run its batch"
    result = ok("workflow", "get", view["lastworkflowid"], "--json").json()
    assert result["processes"][0]["output"] == [3]
    assert "words" in ok("generator", "ls").stdout
    ok("generator", "rm", "words")
    assert ok("generator", "ls", "--json").json() == {"generators": []}


def test_mistakes_are_one_line_field_named_errors(dev_colony: Path, tmp_path: Path) -> None:
    spec = tmp_path / "square.json"
    spec.write_text(json.dumps(workflow("square", [2])))
    assert "--cron: second field: 61 is outside 0-59" in fails(
        "cron", "add", "--name", "x", "--cron", "61 * * * * *", "--spec", spec
    )
    assert "expected 6 fields" in fails(
        "cron", "add", "--name", "x", "--cron", "* * * * *", "--spec", spec
    )
    assert "--interval: must be a positive" in fails(
        "cron", "add", "--name", "x", "--interval", "0", "--spec", spec
    )
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"functionspecs": [{"funcname": "f", "conditions": {}}]}))
    assert "conditions.executortype" in fails(
        "cron", "add", "--name", "x", "--interval", "5", "--spec", bad
    )
    assert "--trigger: must be at least 1" in fails(
        "generator", "add", "--name", "g", "--spec", spec, "--trigger", "0"
    )
    assert "no generator 'nope'" in fails("generator", "pack", "nope", "arg")
