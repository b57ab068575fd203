"""``simulate``: run a registered scenario by seed (``colonymesh simulate`` delegates here).

Usage: ``simulate SCENARIO --peers N [--seed S] [--seeds K] [--duration D] [--json]``.
One seed runs :func:`~colonymesh.simulations.runner.run_scenario`; ``--seeds K``
sweeps seeds ``S .. S+K-1``. With ``--json`` the summary is one JSON document
on stdout; failures are always reported on stderr with the one-line replay
command. The exit status is 1 if any seed found a violation, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from colonymesh.simulations.runner import run_scenario, scenario_names, sweep


def build_parser(prog: str = "colonymesh simulate") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Run a deterministic simulation.")
    parser.add_argument("scenario", help=f"one of: {', '.join(scenario_names())}")
    parser.add_argument("--peers", type=int, default=5, help="number of peers (servers)")
    parser.add_argument("--seed", type=int, default=0, help="the (first) seed")
    parser.add_argument("--seeds", type=int, default=0, help="sweep this many seeds")
    parser.add_argument("--duration", type=float, default=None, help="virtual seconds")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "colonymesh simulate") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.scenario not in scenario_names():
        print(f"error: unknown scenario {args.scenario!r}", file=sys.stderr)
        return 2
    if args.peers < 1 or args.seeds < 0 or (args.duration is not None and args.duration <= 0):
        print(
            "error: --peers and --duration must be positive, --seeds not negative", file=sys.stderr
        )
        return 2
    try:
        if args.seeds:
            seeds = range(args.seed, args.seed + args.seeds)
            summary = sweep(args.scenario, args.peers, seeds, args.duration)
        else:
            summary = run_scenario(args.scenario, args.peers, args.seed, args.duration)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        print(_human(summary))
    return 1 if summary["violations"] else 0


def _human(summary: dict[str, Any]) -> str:
    lines = [
        f"{summary['scenario']}: {summary['peers']} peers, {summary['seeds']} seed(s), "
        f"{summary['violations']} violation(s), {summary['wall_seconds']} s wall, "
        f"{summary['events_per_second']} events/s"
    ]
    figures = summary.get("totals", summary)
    shown = {"peers", "seeds", "seed", "violations", "wall_seconds", "events_per_second"}
    for key in sorted(figures.keys() - shown):
        value = figures[key]
        if isinstance(value, int | float) and not isinstance(value, bool):
            lines.append(f"  {key:<28} {value:g}")
    return "\n".join(lines)
