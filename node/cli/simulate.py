"""``colonymesh simulate SCENARIO --peers N --seed S [--seeds K]``: the deterministic simulator.

Runs the same sans-I/O cores the nodes run, on a seeded virtual clock and
network. One seed gives the same result every time; a failing seed prints its
fault profile and a one-line command that replays it. Exit status 1 when any
seed violated a checker.

``--plots DIR`` writes PNG plots of a single run (matplotlib, Agg backend);
``--progress`` draws a progress bar on stderr, so it never mixes with the
JSON document ``--json`` prints on stdout.
"""

from __future__ import annotations

import argparse
import resource
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
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
    simulate.add_argument(
        "--plots", type=Path, metavar="DIR", help="write PNG plots of the run into DIR"
    )
    simulate.add_argument("--progress", action="store_true", help="show a progress bar on stderr")
    simulate.add_argument(
        "--config",
        type=Path,
        metavar="TOML",
        help="colony only: a colony description (peers by role, workload, faults); --peers ignored",
    )
    add_json_flag(simulate)
    simulate.set_defaults(handler=_simulate)


@contextmanager
def _progress_bar(enabled: bool, label: str) -> Iterator[None]:
    from colonymesh.simulations import runner

    if not enabled:
        yield
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} virtual s"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = progress.add_task(label, total=1.0)

    def update(done: float, total: float) -> None:
        progress.update(task, completed=done, total=total)

    runner.set_progress(update)
    try:
        with progress:
            yield
    finally:
        runner.set_progress(None)


def _flat(summary: dict[str, Any]) -> dict[str, float]:
    """The numeric figures for the terminal, one level of nested dicts as ``a.b``."""
    out: dict[str, float] = {}
    for key, value in summary.items():
        if key in ("series", "profile", "failures"):
            continue
        if isinstance(value, bool | int | float) and value is not None:
            out[key] = value
        elif isinstance(value, dict):
            for sub, v in value.items():
                if isinstance(v, int | float):
                    out[f"{key}.{sub}"] = v
    return out


def _simulate(args: argparse.Namespace) -> int:
    from colonymesh.simulations import runner

    if args.scenario not in runner.scenario_names():
        raise InputError(
            f"unknown scenario {args.scenario!r} (choose from {', '.join(runner.scenario_names())})"
        )
    if args.peers < 1 or (args.seeds is not None and args.seeds < 1):
        raise InputError("--peers and --seeds must be at least 1")
    if args.plots is not None and args.seeds is not None:
        raise InputError("--plots draws one run: use --seed, not --seeds")
    label = f"{args.scenario} {args.peers} peers"
    described = None
    if args.config is not None:
        from colonymesh.simulations.description import (
            DescriptionError,
            load_description,
            simulate_colony,
        )

        if args.scenario != "colony" or args.seeds is not None:
            raise InputError("--config describes one colony run: simulate colony --seed S")
        try:
            described = load_description(args.config)
        except DescriptionError as error:
            raise InputError(f"--config {error}") from None
        label = f"colony {described.peers} peers"
    try:
        with _progress_bar(args.progress, label):
            if described is not None:
                summary = simulate_colony(described, args.seed)
            elif args.seeds is None:
                summary = runner.run_scenario(args.scenario, args.peers, args.seed, args.duration)
            else:
                seeds = range(args.seed, args.seed + args.seeds)
                summary = runner.sweep(args.scenario, args.peers, seeds, args.duration)
    except ValueError as error:  # a scenario refusing its arguments (e.g. too many peers)
        raise InputError(f"{args.scenario}: {error}") from None
    written: list[Path] = []
    if args.plots is not None:
        from colonymesh.simulations.plots import PlotsUnavailable, write_plots

        try:
            written = write_plots(summary, args.plots)
        except (PlotsUnavailable, OSError) as error:
            raise InputError(f"--plots: {error}") from None
        if not args.json:
            if written:
                print(f"plots: {', '.join(str(p) for p in written)}", file=sys.stderr)
            else:
                print(f"plots: {args.scenario} has no series to plot", file=sys.stderr)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lines = [
        f"{summary['scenario']}: {summary['peers']} peers, {summary['seeds']} seed(s), "
        f"{summary['violations']} violation(s), {summary['wall_seconds']:.2f} s wall, "
        f"peak RSS {rss_mb:.0f} MB",
    ]
    figures = summary.get("totals") or _flat(summary)
    lines += [
        f"  {key}: {value}"
        for key, value in sorted(figures.items())
        if key not in ("peers", "seeds", "violations")
    ]
    emit(args, summary, lines)
    return 1 if summary["violations"] else 0
