"""Run named scenarios by seed, sweep seeds, and report failures with a one-line replay.

What it owns: the scenario registry (``raft`` now; ``dht``, ``gossip``,
``colony``, ``fs`` register the same way), :func:`run_scenario` and
:func:`sweep`, which return JSON-able summaries (``scenario``, ``peers``,
``seeds``, ``violations``, ``wall_seconds`` and the scenario's figures), and
the failure report: seed, fault profile, and the command that replays it.

Determinism contract: for the same arguments the summary is byte-identical
as JSON (``json.dumps(summary, sort_keys=True)``) except for the keys in
:data:`WALL_CLOCK_KEYS`, across runs and across ``PYTHONHASHSEED`` values.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TextIO

WALL_CLOCK_KEYS = ("wall_seconds", "events_per_second")
_FAILURES_LISTED_MAX = 20


@dataclass(frozen=True, slots=True)
class ScenarioResult:
    """One seeded run of a scenario."""

    violation: str | None
    violation_at: tuple[float, int] | None  # (virtual seconds, event number)
    profile: dict[str, float]
    figures: dict[str, Any]  # JSON-able, deterministic; numeric ones are summed by sweeps


ScenarioFn = Callable[[int, int, float | None], ScenarioResult]  # (seed, peers, duration)

_SCENARIOS: dict[str, ScenarioFn] = {}


def register_scenario(name: str, fn: ScenarioFn) -> None:
    _SCENARIOS[name] = fn


# Progress of a long run, (done, total) in the scenario's own units (virtual
# seconds): scenarios call report_progress between chunks of simulation; the
# CLI's --progress installs a listener. Never part of the results.
ProgressFn = Callable[[float, float], None]
_progress: list[ProgressFn] = []


def set_progress(fn: ProgressFn | None) -> None:
    """Install (or with None remove) the listener of :func:`report_progress`."""
    _progress.clear()
    if fn is not None:
        _progress.append(fn)


def report_progress(done: float, total: float) -> None:
    for fn in _progress:
        fn(done, total)


def scenario_names() -> list[str]:
    _load_builtin()
    return sorted(_SCENARIOS)


def _load_builtin() -> None:
    if "raft" not in _SCENARIOS:
        from colonymesh.simulations.raft_scenario import scenario as raft_scenario

        _SCENARIOS["raft"] = raft_scenario
    if "colony" not in _SCENARIOS:
        from colonymesh.simulations.colony_scenario import scenario as colony_scenario

        _SCENARIOS["colony"] = colony_scenario
    if "dht" not in _SCENARIOS:
        from colonymesh.simulations.dht_scenario import scenario as dht_scenario

        _SCENARIOS["dht"] = dht_scenario
    if "gossip" not in _SCENARIOS:
        from colonymesh.simulations.gossip_scenario import scenario as gossip_scenario

        _SCENARIOS["gossip"] = gossip_scenario
    if "fs" not in _SCENARIOS:
        from colonymesh.simulations.fs_scenario import scenario as fs_scenario

        _SCENARIOS["fs"] = fs_scenario


def _lookup(name: str) -> ScenarioFn:
    _load_builtin()
    fn = _SCENARIOS.get(name)
    if fn is None:
        raise KeyError(f"unknown scenario {name!r} (known: {', '.join(sorted(_SCENARIOS))})")
    return fn


def replay_command(name: str, peers: int, seed: int, duration: float | None = None) -> str:
    cmd = f"colonymesh simulate {name} --peers {peers} --seed {seed}"
    return cmd if duration is None else f"{cmd} --duration {duration:g}"


def _failure(
    name: str, peers: int, seed: int, duration: float | None, result: ScenarioResult
) -> dict[str, Any]:
    at = result.violation_at
    return {
        "seed": seed,
        "violation": result.violation,
        "virtual_seconds": None if at is None else round(at[0], 6),
        "event": None if at is None else at[1],
        "profile": result.profile,
        "replay": replay_command(name, peers, seed, duration),
    }


def format_failure(failure: dict[str, Any]) -> str:
    """The human report of one failing seed: what broke, when, under which faults, how to replay."""
    profile = " ".join(f"{k}={v:g}" for k, v in failure["profile"].items())
    return (
        f"VIOLATION seed={failure['seed']} at t={failure['virtual_seconds']}s "
        f"event={failure['event']}: {failure['violation']}\n"
        f"  fault profile: {profile}\n"
        f"  replay: {failure['replay']}"
    )


def run_scenario(
    name: str,
    peers: int,
    seed: int,
    duration: float | None = None,
    *,
    report_to: TextIO | None = sys.stderr,
) -> dict[str, Any]:
    """Run one seed; failures are also printed to ``report_to`` (None: silent)."""
    fn = _lookup(name)
    started = time.perf_counter()
    result = fn(seed, peers, duration)
    wall = time.perf_counter() - started
    failures = []
    if result.violation is not None:
        failures.append(_failure(name, peers, seed, duration, result))
        if report_to is not None:
            print(format_failure(failures[0]), file=report_to)
    summary: dict[str, Any] = {
        "scenario": name,
        "peers": peers,
        "seeds": 1,
        "seed": seed,
        "duration": duration,
        "violations": len(failures),
        "failures": failures,
        "profile": result.profile,
        **result.figures,
    }
    return _with_wall(summary, wall)


def sweep(
    name: str,
    peers: int,
    seeds: int | Iterable[int],
    duration: float | None = None,
    *,
    report_to: TextIO | None = sys.stderr,
) -> dict[str, Any]:
    """Run many seeds (an int K means seeds 0..K-1); numeric figures are summed."""
    fn = _lookup(name)
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    started = time.perf_counter()
    failures: list[dict[str, Any]] = []
    failing_seeds: list[int] = []
    totals: dict[str, float] = {}
    for seed in seed_list:
        result = fn(seed, peers, duration)
        if result.violation is not None:
            failing_seeds.append(seed)
            failure = _failure(name, peers, seed, duration, result)
            if len(failures) < _FAILURES_LISTED_MAX:
                failures.append(failure)
            if report_to is not None:
                print(format_failure(failure), file=report_to)
        for key, value in result.figures.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                totals[key] = totals.get(key, 0) + value
    wall = time.perf_counter() - started
    summary: dict[str, Any] = {
        "scenario": name,
        "peers": peers,
        "seeds": len(seed_list),
        "seed_first": seed_list[0] if seed_list else None,
        "duration": duration,
        "violations": len(failing_seeds),
        "failing_seeds": failing_seeds,
        "failures": failures,
        "totals": {k: round(v, 6) for k, v in sorted(totals.items())},
    }
    return _with_wall(summary, wall)


def _with_wall(summary: dict[str, Any], wall: float) -> dict[str, Any]:
    events = summary.get("events", summary.get("totals", {}).get("events", 0))
    summary["wall_seconds"] = round(wall, 3)
    summary["events_per_second"] = round(events / wall) if wall > 0 else None
    return summary


def deterministic_view(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary without the wall-clock keys: what must be identical for a seed."""
    return {k: v for k, v in summary.items() if k not in WALL_CLOCK_KEYS}
