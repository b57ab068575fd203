"""PNG plots of a scenario's summary: lookup hops and latency, gossip coverage over time.

What it owns: :func:`write_plots`, which reads the ``series`` (and
distribution figures) a scenario put in its summary and writes one PNG per
plot into a folder, returning the paths written. It plots only what the
summary holds, so the same JSON document re-plots the same figures.

matplotlib is an optional extra: it is imported here, lazily, with the Agg
backend (no display needed), only when plots are asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["PlotsUnavailable", "write_plots"]


class PlotsUnavailable(Exception):
    """matplotlib is not installed (``pip install colonymesh[plots]``)."""


def _figure() -> Figure:
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise PlotsUnavailable("plots need matplotlib (pip install matplotlib)") from exc
    return Figure(figsize=(7.0, 4.2), dpi=110)


def _title(summary: dict[str, Any], what: str) -> str:
    return f"{summary.get('scenario', '?')}: {what} ({summary.get('peers', '?')} peers, seed {summary.get('seed', '?')})"


def _save(fig: Figure, out_dir: Path, name: str, written: list[Path]) -> None:
    fig.tight_layout()
    path = out_dir / name
    # a fixed date and no software tag keep the PNG bytes a function of the data
    fig.savefig(path, format="png", metadata={"Software": None})
    written.append(path)


def _dht(
    summary: dict[str, Any], series: dict[str, Any], out_dir: Path, written: list[Path]
) -> None:
    counts = series.get("lookup_hops_counts")
    if counts:
        fig = _figure()
        ax = fig.add_subplot()
        hops = sorted(int(h) for h in counts)
        ax.bar(hops, [counts[str(h)] for h in hops], color="#3b7dd8")
        goal = summary.get("hops_goal_max")
        if isinstance(goal, int | float):
            ax.axvline(
                goal, color="#c0392b", linestyle="--", label=f"goal: median ≤ ½·log₂N = {goal:.2f}"
            )
            ax.legend()
        ax.set_xlabel("hops (sequential round trips to the nearest answer)")
        ax.set_ylabel("lookups")
        ax.set_title(_title(summary, "lookup hops"))
        _save(fig, out_dir, "dht_lookup_hops.png", written)
    hist = series.get("lookup_latency_histogram_s")
    if hist and hist.get("counts"):
        fig = _figure()
        ax = fig.add_subplot()
        edges, counts_ = hist["edges"], hist["counts"]
        widths = [edges[i + 1] - edges[i] for i in range(len(counts_))]
        ax.bar(edges[:-1], counts_, width=widths, align="edge", color="#27ae60")
        lat = summary.get("lookup_latency_s", {})
        for q, style in (("median", "-"), ("p90", "--"), ("p99", ":")):
            if q in lat:
                ax.axvline(lat[q], color="#333333", linestyle=style, label=f"{q} {lat[q]:.2f} s")
        ax.legend()
        ax.set_xlabel("lookup latency (virtual seconds)")
        ax.set_ylabel("lookups")
        ax.set_title(_title(summary, "lookup latency"))
        _save(fig, out_dir, "dht_lookup_latency.png", written)


def _gossip(
    summary: dict[str, Any], series: dict[str, Any], out_dir: Path, written: list[Path]
) -> None:
    curve = series.get("coverage")
    if not curve:
        return
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot([p[0] for p in curve], [100.0 * p[1] for p in curve], color="#8e44ad")
    ax.axhline(99.0, color="#c0392b", linestyle="--", linewidth=0.8, label="99%")
    t99 = summary.get("time_to_99_s", {}).get("median")
    if isinstance(t99, int | float):
        ax.axvline(t99, color="#333333", linestyle=":", label=f"median time to 99%: {t99:.3f} s")
    ax.set_ylim(0, 101)
    ax.set_xlabel("seconds since publication")
    ax.set_ylabel("live peers reached (%, all messages)")
    ax.legend(loc="lower right")
    ax.set_title(_title(summary, f"coverage at {100 * summary.get('loss', 0):g}% loss"))
    _save(fig, out_dir, "gossip_coverage.png", written)


def _timeseries(
    summary: dict[str, Any], series: dict[str, Any], out_dir: Path, written: list[Path]
) -> None:
    """Any other ``[[t, value], ...]`` series (e.g. a colony's queue length) as a line plot."""
    for name, points in sorted(series.items()):
        if name in ("coverage",) or not isinstance(points, list) or not points:
            continue
        if not all(isinstance(p, list) and len(p) == 2 for p in points):
            continue
        fig = _figure()
        ax = fig.add_subplot()
        ax.plot(
            [p[0] for p in points],
            [p[1] for p in points],
            color="#d35400",
            drawstyle="steps-post",  # sampled counts and indices hold until the next sample
        )
        ax.set_xlabel("virtual seconds")
        ax.set_ylabel(
            name.replace("_", " ") + (" (server index, -1: none)" if name == "leader" else "")
        )
        from matplotlib.ticker import MaxNLocator

        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(_title(summary, name.replace("_", " ")))
        _save(fig, out_dir, f"{summary.get('scenario', 'run')}_{name}.png", written)


def _colony(
    summary: dict[str, Any], series: dict[str, Any], out_dir: Path, written: list[Path]
) -> None:
    """Queue length, running processes and completion latency on one time axis, with the
    server group's leader changes marked."""
    queue = series.get("queue_length")
    p50 = series.get("completion_latency_p50_s")
    if not queue or not p50:
        return  # the single series are drawn by _timeseries
    fig = _figure()
    fig.set_size_inches(7.0, 6.0)
    top, bottom = fig.subplots(2, 1, sharex=True)
    if queue:
        top.plot([p[0] for p in queue], [p[1] for p in queue], color="#d35400", label="waiting")
    running = series.get("running_processes")
    if running:
        top.plot([p[0] for p in running], [p[1] for p in running], color="#2980b9", label="running")
    top.set_ylabel("processes")
    top.legend(loc="upper right")
    for name, color in (
        ("completion_latency_p50_s", "#27ae60"),
        ("completion_latency_p99_s", "#8e44ad"),
    ):
        points = series.get(name)
        if points:
            label = "p50" if "p50" in name else "p99"
            bottom.plot([p[0] for p in points], [p[1] for p in points], color=color, label=label)
    bottom.set_ylabel("arrival to final state (s)")
    bottom.set_xlabel("virtual seconds (leader changes dotted)")
    for t, _leader in series.get("leaders", [])[1:]:
        for ax in (top, bottom):
            ax.axvline(t, color="#7f8c8d", linestyle=":", linewidth=0.8)
    if p50:
        bottom.legend(loc="upper right")
    top.set_title(_title(summary, "queue and completion latency"))
    _save(fig, out_dir, "colony_queue_latency.png", written)


def write_plots(summary: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write every plot the summary has data for into ``out_dir``; the paths written."""
    series = summary.get("series")
    if not isinstance(series, dict):
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    scenario = summary.get("scenario")
    if scenario == "dht":
        _dht(summary, series, out_dir, written)
    elif scenario == "gossip":
        _gossip(summary, series, out_dir, written)
    elif scenario == "colony":
        _colony(summary, series, out_dir, written)
    _timeseries(summary, series, out_dir, written)
    return written
