from __future__ import annotations

from pathlib import Path

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


def test_gossip_with_plots_and_progress_keeps_stdout_one_json_document(tmp_path: Path) -> None:
    out = tmp_path / "plots"
    result = ok(
        "simulate",
        "gossip",
        "--peers",
        "20",
        "--seed",
        "1",
        "--duration",
        "4",
        "--plots",
        str(out),
        "--progress",
        "--json",
    )
    summary = result.json()  # the progress bar went to stderr, not into the document
    assert summary["scenario"] == "gossip" and summary["violations"] == 0
    assert summary["reached_every_live_peer"] is True
    png = out / "gossip_coverage.png"
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 10_000


def test_dht_terminal_summary_shows_nested_figures() -> None:
    result = ok("simulate", "dht", "--peers", "12", "--seed", "2", "--duration", "5")
    assert "lookup_hops.median:" in result.stdout
    assert "lookup_success_rate:" in result.stdout
    assert "peak RSS" in result.stdout


def test_plots_of_a_sweep_is_a_one_line_error(tmp_path: Path) -> None:
    line = fails("simulate", "gossip", "--seeds", "2", "--plots", str(tmp_path))
    assert "--plots" in line
