"""The ``simulate`` command line (``colonymesh simulate`` delegates to it)."""

from __future__ import annotations

import json

import pytest

from colonymesh.simulations.cli import main


def test_json_summary_for_one_seed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["raft", "--peers", "3", "--seed", "2", "--duration", "2", "--json"]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out)
    assert summary["scenario"] == "raft" and summary["seeds"] == 1 and summary["violations"] == 0
    assert out.count("\n") == 1  # one JSON document on one line


def test_sweep_runs_consecutive_seeds(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["raft", "--peers", "3", "--seed", "10", "--seeds", "3", "--duration", "1"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("raft: 3 peers, 3 seed(s), 0 violation(s)")
    assert "commits" in text


def test_bad_usage_is_one_line_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["no-such-scenario"]) == 2
    assert main(["raft", "--peers", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and all(line.startswith("error:") for line in err.splitlines())
