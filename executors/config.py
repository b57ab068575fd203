"""The executor kind's own configuration file (``executor.toml``), read strictly.

What it owns: turning the TOML document given to ``colonymesh executor run
--executor-config FILE`` into the configuration object of one kind, and
refusing anything wrong with a message that names the section and key
(``[slurm] poll_interval_s: must be > 0``). Pure: the caller reads the file
and passes its text; paths are resolved against ``base`` (the file's folder).

One section per kind; only the section of the kind being started is read
(others may be present, so one file can serve several executors)::

    [python]
    functions = "mypkg.tasks:functions"   # MODULE:ATTR of a PythonFunctions registry
    isolation = "subprocess"              # or "none" (default): see executors/pool.py
    workers = 2                           # subprocess pool size (default: concurrency)

    [process]
    workdir_root = "/var/tmp/colonymesh"  # base of per-process working directories
    keep_workdir = false
    inherit_env = ["PATH", "HOME"]
    env = { OMP_NUM_THREADS = "1" }
    [process.commands]
    sum = ["python3", "-m", "tools.sum"]
    resize = { argv = ["convert"], description = "resize an image" }

    [slurm]
    log_dir = "/srv/slurm/colonymesh"     # required: job stdout/stderr land here
    partition = "debug"
    account = "proj1"
    modules = ["gcc/12", "openmpi"]
    container_runtime = "singularity"     # or "apptainer"
    default_image = ""                    # run every command in this image
    poll_interval_s = 0.5                 # first squeue poll; backs off to poll_max_s
    [slurm.commands]
    square = ["python3", "-c", "..."]

    [kubernetes]
    namespace = "colony"
    kubeconfig = "~/.kube/config"
    context = ""
    [kubernetes.commands]
    train = { argv = ["python3", "-m", "train"], image = "ghcr.io/lab/train:1" }

Unknown sections and keys are refused (with the closest known key), as
are wrong types; each kind's own ``check()`` then validates the values.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from colonymesh.executors.kubernetes.manifest import KubernetesConfig, KubernetesConfigError
from colonymesh.executors.kubernetes.runtime.executor import KubernetesRuntimeConfig
from colonymesh.executors.process import ProcessConfig
from colonymesh.executors.slurm.runtime.executor import SlurmRuntimeConfig
from colonymesh.executors.slurm.sbatch import ContainerRuntime, SlurmConfig, SlurmConfigError

__all__ = [
    "EXECUTOR_CONFIG_BYTES_MAX",
    "ExecutorConfigError",
    "Isolation",
    "PythonKindConfig",
    "parse_executor_config",
]

EXECUTOR_CONFIG_BYTES_MAX = 1 << 20
KINDS = ("python", "process", "slurm", "kubernetes")
T = TypeVar("T")


class ExecutorConfigError(ValueError):
    """The executor config is unusable; the message names the section and key."""


class Isolation(enum.Enum):
    NONE = "none"  # functions run in the executor's own process (threads for sync ones)
    SUBPROCESS = "subprocess"  # each run in a worker process of a pool (executors/pool.py)


@dataclass(frozen=True, slots=True)
class PythonKindConfig:
    functions: str = ""  # MODULE:ATTR of a PythonFunctions registry
    isolation: Isolation = Isolation.NONE
    workers: int = 0  # subprocess pool size; 0 = the executor's concurrency
    grace_s: float = 2.0  # SIGTERM -> SIGKILL for a worker told to stop


KindConfig = PythonKindConfig | ProcessConfig | SlurmRuntimeConfig | KubernetesRuntimeConfig


class _Table:
    """One TOML table, read key by key; what was never read is an unknown key."""

    def __init__(self, where: str, table: Any, base: Path) -> None:
        if not isinstance(table, dict):
            raise ExecutorConfigError(f"{where}: must be a table")
        self.where = where
        self.table: dict[str, Any] = table
        self.base = base
        self.read: set[str] = set()

    def fail(self, key: str, reason: str) -> ExecutorConfigError:
        return ExecutorConfigError(f"{self.where} {key}: {reason}")

    def get(self, key: str, kind: type[T], default: T) -> T:
        self.read.add(key)
        if key not in self.table:
            return default
        value = self.table[key]
        ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise self.fail(key, f"must be {_type_name(kind)}, not {_type_name(type(value))}")
        return value  # type: ignore[no-any-return]

    def positive(self, key: str, kind: type[T], default: T, *, zero: bool = False) -> T:
        value = self.get(key, kind, default)
        if value < 0 or (value == 0 and not zero):  # type: ignore[operator]
            raise self.fail(key, "must be >= 0" if zero else "must be > 0")
        return value

    def strings(self, key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.get(key, list, list(default))
        if not all(isinstance(item, str) for item in value):
            raise self.fail(key, "must be a list of strings")
        return tuple(value)

    def path(self, key: str, default: str = "") -> str:
        value = self.get(key, str, default)
        if not value:
            return ""
        return str((self.base / os.path.expanduser(value)).resolve())

    def env(self, key: str) -> dict[str, str]:
        value = self.get(key, dict, {})
        for name, text in value.items():
            if (
                not isinstance(text, str)
                or not name.replace("_", "a").isalnum()
                or name[0].isdigit()
            ):
                raise self.fail(f"{key}.{name}", 'must be a NAME = "string" pair')
        return dict(value)

    def commands(
        self, key: str, extra: tuple[str, ...] = ()
    ) -> tuple[dict[str, tuple[str, ...]], dict[str, str], dict[str, dict[str, str]]]:
        """``name = [argv]`` or ``name = {argv = [...], description = "...", <extra>}``."""
        table = self.get(key, dict, {})
        argvs: dict[str, tuple[str, ...]] = {}
        descriptions: dict[str, str] = {}
        extras: dict[str, dict[str, str]] = {}
        for name, value in table.items():
            where = f"{key}.{name}"
            if isinstance(value, list):
                value = {"argv": value}
            if not isinstance(value, dict):
                raise self.fail(where, "must be a list of words or a table with argv")
            unknown = sorted(set(value) - {"argv", "description", *extra})
            if unknown:
                raise self.fail(f"{where}.{unknown[0]}", _unknown(unknown[0], ("argv", "description", *extra)))  # fmt: skip
            argv = value.get("argv")
            if not isinstance(argv, list) or not argv or not all(isinstance(w, str) for w in argv):
                raise self.fail(f"{where}.argv", "must be a non-empty list of strings")
            if not argv[0]:
                raise self.fail(f"{where}.argv", "must name a program")
            argvs[name] = tuple(argv)
            for field_name in ("description", *extra):
                text = value.get(field_name, "")
                if not isinstance(text, str):
                    raise self.fail(f"{where}.{field_name}", "must be a string")
                if field_name == "description" and text:
                    descriptions[name] = text
                elif text:
                    extras.setdefault(field_name, {})[name] = text
        return argvs, descriptions, extras

    def done(self) -> None:
        for key in self.table:
            if key not in self.read:
                raise self.fail(key, _unknown(key, tuple(sorted(self.read))))


def _type_name(kind: type) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false",
            list: "a list", dict: "a table"}.get(kind, kind.__name__)  # fmt: skip


def _unknown(key: str, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f"unknown key (did you mean {close[0]!r}?)" if close else "unknown key"


def _python(t: _Table) -> PythonKindConfig:
    isolation = t.get("isolation", str, "none")
    try:
        mode = Isolation(isolation)
    except ValueError:
        raise t.fail("isolation", 'must be "none" or "subprocess"') from None
    functions = t.get("functions", str, "")
    if functions and ":" not in functions:
        raise t.fail("functions", "expected MODULE:ATTR, e.g. mypkg.tasks:functions")
    return PythonKindConfig(
        functions=functions,
        isolation=mode,
        workers=t.positive("workers", int, 0, zero=True),
        grace_s=t.positive("grace_s", float, 2.0, zero=True),
    )


def _process(t: _Table) -> ProcessConfig:
    commands, descriptions, _ = t.commands("commands")
    defaults = ProcessConfig(commands={})
    config = ProcessConfig(
        commands=commands,
        descriptions=descriptions,
        allow_spec_commands=t.get("allow_spec_commands", bool, False),
        workdir=t.path("workdir"),
        workdir_root=t.path("workdir_root"),
        keep_workdir=t.get("keep_workdir", bool, False),
        inherit_env=t.strings("inherit_env", defaults.inherit_env),
        env=t.env("env"),
        grace_s=t.positive("grace_s", float, defaults.grace_s, zero=True),
        log_interval_s=t.positive("log_interval_s", float, defaults.log_interval_s),
        stderr_tail_lines=t.positive(
            "stderr_tail_lines", int, defaults.stderr_tail_lines, zero=True
        ),
    )
    t.done()  # unknown keys first: a typo explains a missing value
    if not commands and not config.allow_spec_commands:
        raise t.fail("commands", "required: the command line of each function this executor runs")
    _check(t, config.check)
    return config


def _slurm(t: _Table) -> SlurmRuntimeConfig:
    commands, descriptions, _ = t.commands("commands")
    log_dir = t.path("log_dir")
    if not log_dir:
        raise t.fail("log_dir", "required: an absolute folder for the jobs' stdout/stderr")
    runtime = t.get("container_runtime", str, ContainerRuntime.SINGULARITY.value)
    try:
        container_runtime = ContainerRuntime(runtime)
    except ValueError:
        raise t.fail("container_runtime", 'must be "singularity" or "apptainer"') from None
    defaults = SlurmRuntimeConfig(sbatch=SlurmConfig(log_dir="/"))
    poll = t.positive("poll_interval_s", float, defaults.poll_initial_s)
    config = SlurmRuntimeConfig(
        sbatch=SlurmConfig(
            log_dir=log_dir,
            partition=t.get("partition", str, ""),
            account=t.get("account", str, ""),
            modules=t.strings("modules"),
            container_runtime=container_runtime,
            commands=commands,
            allow_spec_commands=t.get("allow_spec_commands", bool, False),
            default_image=t.get("default_image", str, ""),
            fs_dir=t.path("fs_dir"),
            workdir=t.path("workdir"),
            job_name_prefix=t.get("job_name_prefix", str, "colonymesh"),
        ),
        descriptions=descriptions,
        script_dir=t.path("script_dir"),
        keep_scripts=t.get("keep_scripts", bool, False),
        use_sacct=t.get("use_sacct", bool, False),
        poll_initial_s=poll,
        poll_max_s=t.positive("poll_max_s", float, max(poll, defaults.poll_max_s)),
        tail_interval_s=t.positive("tail_interval_s", float, defaults.tail_interval_s),
        log_interval_s=t.positive("log_interval_s", float, defaults.log_interval_s),
        cancel_wait_s=t.positive("cancel_wait_s", float, defaults.cancel_wait_s),
    )
    t.done()  # unknown keys first: a typo explains a missing value
    if not commands and not config.sbatch.allow_spec_commands:
        raise t.fail("commands", "required: the command line of each function this executor runs")
    _check(t, config.check)
    return config


def _kubernetes(t: _Table) -> KubernetesRuntimeConfig:
    commands, descriptions, extras = t.commands("commands", extra=("image",))
    defaults = KubernetesRuntimeConfig(manifest=KubernetesConfig())
    ttl = t.get("ttl_seconds_after_finished", int, -1)
    kubeconfig = t.path("kubeconfig")
    if kubeconfig and not os.path.isfile(kubeconfig):
        raise t.fail("kubeconfig", f"{kubeconfig}: no such file")
    config = KubernetesRuntimeConfig(
        manifest=KubernetesConfig(
            namespace=t.get("namespace", str, ""),
            commands=commands,
            allow_spec_commands=t.get("allow_spec_commands", bool, False),
            default_image=t.get("default_image", str, ""),
            name_prefix=t.get("name_prefix", str, "colonymesh"),
            gpu_resource=t.get("gpu_resource", str, "nvidia.com/gpu"),
            gpu_node_label=t.get("gpu_node_label", str, "nvidia.com/gpu.product"),
            fs_claim_name=t.get("fs_claim_name", str, ""),
            image_pull_policy=t.get("image_pull_policy", str, ""),
            service_account=t.get("service_account", str, ""),
            ttl_seconds_after_finished=None if ttl < 0 else ttl,
        ),
        images=extras.get("image", {}),
        descriptions=descriptions,
        kubeconfig=kubeconfig,
        context=t.get("context", str, ""),
        delete_after=t.get("delete_after", bool, True),
        poll_interval_s=t.positive("poll_interval_s", float, defaults.poll_interval_s),
        watch_timeout_s=t.positive("watch_timeout_s", int, defaults.watch_timeout_s),
        request_timeout_s=t.positive("request_timeout_s", float, defaults.request_timeout_s),
    )
    t.done()  # unknown keys first: a typo explains a missing value
    if not commands and not config.manifest.allow_spec_commands:
        raise t.fail("commands", "required: the command line of each function this executor runs")
    _check(t, config.check)
    return config


def _check(t: _Table, check: Any) -> None:
    """Run a kind's own ``check()``; its ``key: reason`` message gets the section in front."""
    try:
        check()
    except (SlurmConfigError, KubernetesConfigError, ValueError) as error:
        raise ExecutorConfigError(f"{t.where} {error}") from None


_READERS: dict[str, Callable[[_Table], KindConfig]] = {
    "python": _python,
    "process": _process,
    "slurm": _slurm,
    "kubernetes": _kubernetes,
}


def parse_executor_config(kind: str, text: str, *, base: Path) -> KindConfig:
    """The configuration of ``kind`` in the TOML ``text``; ``ExecutorConfigError`` if unusable."""
    if kind not in _READERS:
        raise ExecutorConfigError(f"unknown executor kind {kind!r}; expected one of {KINDS}")
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ExecutorConfigError(f"not valid TOML: {error}") from None
    for section in document:
        if section not in _READERS:
            close = difflib.get_close_matches(section, KINDS, n=1)
            hint = f" (did you mean [{close[0]}]?)" if close else f"; expected one of {KINDS}"
            raise ExecutorConfigError(f"unknown section [{section}]{hint}")
    if kind not in document and kind != "python":
        raise ExecutorConfigError(f"no [{kind}] section: a {kind} executor needs its settings")
    table = _Table(f"[{kind}]", document.get(kind, {}), base)
    config: KindConfig = _READERS[kind](table)
    table.done()
    return config


def with_python_functions(config: PythonKindConfig, functions: str) -> PythonKindConfig:
    """``config`` with ``functions`` set (the ``--functions`` flag wins over the file)."""
    return dataclasses.replace(config, functions=functions) if functions else config


def describe(config: KindConfig) -> Mapping[str, object]:
    """A short summary for the executor's start-up log line."""
    if isinstance(config, PythonKindConfig):
        return {"functions": config.functions, "isolation": config.isolation.value}
    if isinstance(config, ProcessConfig):
        return {"commands": sorted(config.commands), "workdir_root": config.workdir_root}
    if isinstance(config, SlurmRuntimeConfig):
        return {"commands": sorted(config.sbatch.commands), "partition": config.sbatch.partition}
    return {"commands": sorted(config.manifest.commands), "namespace": config.manifest.namespace}
