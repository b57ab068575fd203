from __future__ import annotations

from support.cli import ok


def test_demo_runs_end_to_end_and_reports_json() -> None:
    summary = ok("demo", "--json").json()
    assert len(summary["members"]) == 8
    n = len(summary["members"])
    assert summary["envelopes_accepted"] == n * (n - 1)
    assert summary["envelopes_refused"] == 0
    assert summary["revoked_envelope_refused"] is True
    assert summary["seconds"] > 0
