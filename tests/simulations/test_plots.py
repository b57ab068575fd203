"""Plots: PNG files are written from a summary's series, and they show something."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from colonymesh.simulations.plots import write_plots
from colonymesh.simulations.runner import run_scenario

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _ink(path: Path) -> float:
    """Share of pixels that are not white: a blank canvas scores 0."""
    image = pytest.importorskip("matplotlib.image").imread(path)
    rgb = image[..., :3]
    return float((rgb.sum(axis=-1) < 2.9).mean())


def _check(paths: list[Path], names: set[str]) -> None:
    assert {p.name for p in paths} == names
    for p in paths:
        data = p.read_bytes()
        assert data.startswith(PNG_MAGIC)
        assert len(data) > 10_000
        assert _ink(p) > 0.02  # axes, bars and text, not an empty figure


def test_dht_run_plots_hops_and_latency(tmp_path: Path) -> None:
    summary = run_scenario("dht", 24, 5, duration=10.0, report_to=None)
    paths = write_plots(summary, tmp_path / "out")
    _check(paths, {"dht_lookup_hops.png", "dht_lookup_latency.png"})


def test_gossip_run_plots_coverage(tmp_path: Path) -> None:
    summary = run_scenario("gossip", 30, 2, duration=5.0, report_to=None)
    paths = write_plots(summary, tmp_path)
    _check(paths, {"gossip_coverage.png"})


def test_any_time_series_is_plotted_and_nothing_without_series(tmp_path: Path) -> None:
    summary: dict[str, Any] = {
        "scenario": "colony",
        "peers": 10,
        "seed": 1,
        "series": {"queue_length": [[float(t), float(t % 7)] for t in range(50)]},
    }
    _check(write_plots(summary, tmp_path), {"colony_queue_length.png"})
    assert write_plots({"scenario": "raft", "peers": 3}, tmp_path / "none") == []
    assert not (tmp_path / "none").exists()
