from __future__ import annotations

from support.cli import ok


def test_demo_runs_a_colony_end_to_end_and_reports_json() -> None:
    summary = ok("demo", "--json", "--fan-out", "4", "--specs", "6").json()
    assert summary["failed"] == 0
    assert summary["workflow_state"] == "success"
    assert summary["workflow_result"] == 0 + 1 + 4 + 9
    assert summary["submitted"] == 2 + 4 + 6 == summary["succeeded"]
    assert summary["specs_succeeded"] == 6
    assert len(summary["executors"]) == 4
    assert 0 < summary["seconds"] < 60
