from __future__ import annotations

from support.cli import fails, ok

WALL_CLOCK = ("wall_seconds", "events_per_second")


def test_simulate_reports_the_contract_fields_and_replays_exactly() -> None:
    first = ok("simulate", "raft", "--peers", "3", "--seeds", "3", "--json").json()
    for key in ("scenario", "peers", "seeds", "violations", "wall_seconds"):
        assert key in first
    assert (first["scenario"], first["peers"], first["seeds"], first["violations"]) == (
        "raft",
        3,
        3,
        0,
    )
    again = ok("simulate", "raft", "--peers", "3", "--seeds", "3", "--json").json()
    assert {k: v for k, v in first.items() if k not in WALL_CLOCK} == {
        k: v for k, v in again.items() if k not in WALL_CLOCK
    }


def test_unknown_scenario_is_a_one_line_error() -> None:
    assert "unknown scenario" in fails("simulate", "nope")
