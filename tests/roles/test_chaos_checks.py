"""The chaos checkers themselves: each flags what it must (so a clean chaos run means something)."""

from __future__ import annotations

from typing import Any

from chaos import concurrent_runs, foreign_closes


def _run(process: str, executor: str, start: float, end: float | None) -> dict[str, Any]:
    return {"process": process, "executor": executor, "start": start, "end": end}


def test_overlapping_runs_of_one_process_are_flagged() -> None:
    runs = {
        "n1": _run("p", "e1", 1.0, 2.0),
        "n2": _run("p", "e2", 1.5, 2.5),  # overlaps n1
        "n3": _run("q", "e1", 1.0, 2.0),
        "n4": _run("q", "e2", 2.0, 3.0),  # after q's first run: a legitimate re-run
    }
    assert concurrent_runs(runs, {}) == (["p"], 2, 0)


def test_a_run_cut_by_a_kill_ends_at_the_kill() -> None:
    runs = {"n1": _run("p", "e1", 1.0, None), "n2": _run("p", "e2", 6.0, 6.1)}
    assert concurrent_runs(runs, {"e1": [5.0]}) == ([], 1, 1)
    assert concurrent_runs(runs, {"e1": [7.0]}) == (["p"], 1, 1)
    assert concurrent_runs(runs, {"e1": [0.5, 5.0]}) == ([], 1, 1)  # the kill after its start
    assert concurrent_runs(runs, {}) == (["p"], 1, 1)  # e1 never killed: its run never ended


def test_an_output_from_another_executor_or_no_run_is_a_foreign_close() -> None:
    runs = {"a": _run("p", "e1", 1.0, 2.0), "b": _run("q", "e2", 1.0, 2.0)}

    def view(executor: str, output: list[Any], arg: int = 7) -> dict[str, Any]:
        return {
            "state": "success",
            "executor": executor,
            "output": output,
            "spec": {"args": [arg, 10]},
        }

    views = {
        "p": view("e1", [7, "a"]),  # fine
        "q": view("e1", [7, "b"]),  # run b was at e2
        "r": view("e1", [7, "zz"]),  # no such run
        "s": view("e1", [7, "a"]),  # run a was of process p
    }
    assert foreign_closes(views, runs) == ["q", "r", "s"]
