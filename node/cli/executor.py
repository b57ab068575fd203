"""``colonymesh executor run|ls``: run an executor peer; list the colony's executors.

``executor run --config node.toml --kind python --functions MODULE:ATTR``
runs the node of ``node.toml`` (as ``node run`` does: control channel,
signals, revocations) plus an executor service that claims the colony's
processes of the certificate's executor type and runs them. Flags override
the config's ``[executor]`` section. ``executor ls`` lives in :mod:`.work`
with the other commands that join the colony through a client profile.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from colonymesh.node.cli import work

KINDS = ("python", "process", "slurm", "kubernetes")


def register(commands: Any) -> None:
    executor = commands.add_parser("executor", help="run an executor; list the colony's executors")
    esub = executor.add_subparsers(dest="executor_command", metavar="ACTION", required=True)
    run = esub.add_parser(
        "run", help="run an executor peer until SIGINT/SIGTERM (a node plus its executor service)"
    )
    run.add_argument("--config", "-c", type=Path, required=True, help="the node.toml")
    run.add_argument("--kind", choices=KINDS, help="executor kind (default: [executor] kind)")
    run.add_argument(
        "--functions", help="python kind: MODULE:ATTR of a PythonFunctions registry to serve"
    )
    run.add_argument("--concurrency", type=int, help="processes run at once (default 1)")
    run.add_argument("--name", help="executor name (default: the certificate's name)")
    run.add_argument(
        "--type",
        dest="executor_type",
        help="expected executor type (the certificate sets it; a mismatch is an error)",
    )
    run.add_argument("--log-format", choices=("text", "json"), help="override [log] format")
    run.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    run.set_defaults(handler=_run)
    work.add_executor_ls(esub)


def _run(args: argparse.Namespace) -> int:
    import trio

    from colonymesh.node.cli.node import setup_logging
    from colonymesh.node.config import load_config
    from colonymesh.node.errors import InputError
    from colonymesh.node.peer.daemon import run_node

    config = load_config(args.config)
    overrides: dict[str, Any] = {
        key: value
        for key, value in (
            ("kind", args.kind),
            ("functions", args.functions),
            ("concurrency", args.concurrency),
            ("name", args.name),
            ("executor_type", args.executor_type),
        )
        if value is not None
    }
    if "concurrency" in overrides and overrides["concurrency"] < 1:
        raise InputError("--concurrency must be at least 1")
    settings = dataclasses.replace(config.executor, **overrides)
    setup_logging(args.log_level or config.log_level, args.log_format or config.log_format)
    return trio.run(run_node, config, settings)


__all__ = ["register"]
