"""``colonymesh executor run|ls``: run an executor peer; list the colony's executors.

``executor run --config node.toml --kind KIND [--executor-config executor.toml]``
runs the node of ``node.toml`` (as ``node run`` does: control channel,
signals, revocations) plus an executor service that claims the colony's
processes of the certificate's executor type and runs them with KIND:

* ``python``: a ``PythonFunctions`` registry (``--functions MODULE:ATTR`` or
  ``[python] functions``), called in the executor's process, or in a pool of
  worker processes with ``[python] isolation = "subprocess"``;
* ``process``: registered command lines as local processes (``[process]``);
* ``slurm``: batch jobs on the Slurm cluster this machine submits to
  (``[slurm]``);
* ``kubernetes``: Jobs (Deployments for services) through a kubeconfig
  (``[kubernetes]``).

The kind's settings live in their own file, ``--executor-config`` or the
node config's ``[executor] executor_config`` (the flag wins; one
section per kind; ``colonymesh.executors.config`` documents every key); a
bad value is refused before the node starts with the section and key in the
message. Flags override the node config's ``[executor]`` section.
``executor ls`` lives in :mod:`.work` with the other commands that join the
colony through a client profile.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from colonymesh.node.cli import work

if TYPE_CHECKING:
    from colonymesh.executors.base import ExecutorKind

KINDS = ("python", "process", "slurm", "kubernetes")
EXECUTOR_CONFIG_BYTES_MAX = 1 << 20


def register(commands: Any) -> None:
    executor = commands.add_parser("executor", help="run an executor; list the colony's executors")
    esub = executor.add_subparsers(dest="executor_command", metavar="ACTION", required=True)
    run = esub.add_parser(
        "run", help="run an executor peer until SIGINT/SIGTERM (a node plus its executor service)"
    )
    run.add_argument("--config", "-c", type=Path, required=True, help="the node.toml")
    run.add_argument("--kind", choices=KINDS, help="executor kind (default: [executor] kind)")
    run.add_argument(
        "--executor-config",
        type=Path,
        metavar="FILE",
        help="the kind's settings (executor.toml: [python], [process], [slurm], [kubernetes]);"
        " default: [executor] executor_config",
    )
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


def _read_executor_config(path: Path) -> str:
    from colonymesh.node.errors import InputError

    try:
        with open(path, "rb") as handle:
            raw = handle.read(EXECUTOR_CONFIG_BYTES_MAX + 1)
    except FileNotFoundError:
        raise InputError(f"{path}: no such executor config file") from None
    except OSError as error:
        raise InputError(f"{path}: cannot read: {error.strerror}") from None
    if len(raw) > EXECUTOR_CONFIG_BYTES_MAX:
        raise InputError(f"{path}: too large for an executor config file")
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None


def build_kind(
    kind: str, executor_config: Path | None, functions: str, concurrency: int
) -> ExecutorKind | None:
    """The executor kind to serve; ``None`` leaves a plain ``--functions`` registry to the node."""
    from colonymesh.executors.config import (
        ExecutorConfigError,
        Isolation,
        PythonKindConfig,
        parse_executor_config,
        with_python_functions,
    )
    from colonymesh.node.colony.roles import load_functions
    from colonymesh.node.errors import InputError

    if executor_config is None:
        if kind == "python":
            return None
        raise InputError(
            f"executor kind {kind!r} is not available without its settings: pass "
            f"--executor-config FILE with a [{kind}] section (see docs/running.md)"
        )
    text = _read_executor_config(executor_config)
    try:
        config = parse_executor_config(kind, text, base=executor_config.parent)
    except ExecutorConfigError as error:
        raise InputError(f"{executor_config}: {error}") from None
    try:
        if isinstance(config, PythonKindConfig):
            config = with_python_functions(config, functions)
            if not config.functions:
                raise InputError(
                    f"{executor_config}: [python] functions: required (or --functions MODULE:ATTR)"
                )
            registry = load_functions(config.functions)
            if config.isolation is Isolation.NONE:
                return registry
            from colonymesh.executors.pool import IsolatedFunctions

            return IsolatedFunctions(
                config.functions,
                registry.functions(),
                workers=config.workers or concurrency,
                grace_s=config.grace_s,
            )
        return _platform_kind(config)
    except (ValueError, OSError) as error:  # a kind refusing its config, a kubeconfig...
        raise InputError(f"{executor_config}: [{kind}] {error}") from None


def _platform_kind(config: Any) -> ExecutorKind:
    from colonymesh.executors.kubernetes.runtime import KubernetesExecutor, KubernetesRuntimeConfig
    from colonymesh.executors.process import ProcessConfig, ProcessExecutor
    from colonymesh.executors.slurm.runtime import SlurmExecutor, SlurmRuntimeConfig

    if isinstance(config, ProcessConfig):
        return ProcessExecutor(config)
    if isinstance(config, SlurmRuntimeConfig):
        return SlurmExecutor(config)
    if isinstance(config, KubernetesRuntimeConfig):
        try:
            return KubernetesExecutor(config)
        except Exception as error:  # the client's ConfigException for a bad kubeconfig
            raise ValueError(f"kubeconfig: {error}") from error
    raise TypeError(f"no executor kind for {type(config).__name__}")


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
            ("executor_config", args.executor_config),
        )
        if value is not None
    }
    if "concurrency" in overrides and overrides["concurrency"] < 1:
        raise InputError("--concurrency must be at least 1")
    settings = dataclasses.replace(config.executor, **overrides)
    setup_logging(args.log_level or config.log_level, args.log_format or config.log_format)
    kind = build_kind(
        settings.kind, settings.executor_config, settings.functions, settings.concurrency
    )
    return trio.run(run_node, config, settings, kind)


__all__ = ["build_kind", "register"]
