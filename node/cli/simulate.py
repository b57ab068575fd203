"""``colonymesh simulate SCENARIO --peers N --seed S [--seeds K]``: the deterministic simulator.

Runs the same sans-I/O cores the nodes run, on a seeded virtual clock and
network. One seed gives the same result every time; a failing seed prints its
fault profile and a one-line command that replays it. Exit status 1 when any
seed violated a checker.
"""

from __future__ import annotations

import argparse
from typing import Any

from colonymesh.node.cli.output import add_json_flag, emit
from colonymesh.node.errors import InputError


def register(commands: Any) -> None:
    simulate = commands.add_parser("simulate", help="run a deterministic simulation scenario")
    simulate.add_argument("scenario", help="scenario name (e.g. raft)")
    simulate.add_argument("--peers", type=int, default=5, help="number of peers (default 5)")
    simulate.add_argument(
        "--seed", type=int, default=0, help="the seed of a single run (default 0)"
    )
    simulate.add_argument("--seeds", type=int, help="sweep seeds SEED..SEED+K-1 instead of one run")
    simulate.add_argument(
        "--duration", type=float, help="simulated seconds (scenario default if omitted)"
    )
    add_json_flag(simulate)
    simulate.set_defaults(handler=_simulate)


def _simulate(args: argparse.Namespace) -> int:
    from colonymesh.simulations import runner

    if args.scenario not in runner.scenario_names():
        raise InputError(
            f"unknown scenario {args.scenario!r} (choose from {', '.join(runner.scenario_names())})"
        )
    if args.peers < 1 or (args.seeds is not None and args.seeds < 1):
        raise InputError("--peers and --seeds must be at least 1")
    try:
        if args.seeds is None:
            summary = runner.run_scenario(args.scenario, args.peers, args.seed, args.duration)
        else:
            seeds = range(args.seed, args.seed + args.seeds)
            summary = runner.sweep(args.scenario, args.peers, seeds, args.duration)
    except ValueError as error:  # a scenario refusing its arguments (e.g. too many peers)
        raise InputError(f"{args.scenario}: {error}") from None
    lines = [
        f"{summary['scenario']}: {summary['peers']} peers, {summary['seeds']} seed(s), "
        f"{summary['violations']} violation(s), {summary['wall_seconds']:.2f} s wall",
    ]
    figures = summary.get("totals") or {
        k: v for k, v in summary.items() if isinstance(v, int | float)
    }
    lines += [
        f"  {key}: {value}"
        for key, value in sorted(figures.items())
        if key not in ("peers", "seeds", "violations")
    ]
    emit(args, summary, lines)
    return 1 if summary["violations"] else 0
