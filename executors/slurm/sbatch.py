"""Function spec -> sbatch script: the pure Slurm translator.

What it owns: turning a validated ``FunctionSpec`` plus the executor's
``SlurmConfig`` into the text of a batch script and the paths its output
will land in. It runs nothing; the Slurm executor writes the script to a
file and calls ``sbatch`` on it.

The mapping (ColonyOS's, with the gaps filled):

================================  ==========================================
spec                              sbatch
================================  ==========================================
process id                        ``--job-name=<prefix>-<process id>``
``conditions.nodes``              ``--nodes=N``
``conditions.processes``          ``--ntasks=N``
``conditions.processespernode``   ``--ntasks-per-node=N``
``conditions.cpu``                ``--cpus-per-task=ceil(millicores/1000)``
``conditions.mem`` (per node)     ``--mem=<ceil(bytes/MiB)>M`` (Slurm's M is MiB)
``conditions.walltime`` (s)       ``--time=D-HH:MM:SS``
``conditions.gpu.count/name``     ``--gres=gpu:N`` or ``--gres=gpu:NAME:N``
config partition/account          ``--partition`` / ``--account``
config modules                    ``module load NAME`` lines
``env``                           ``export NAME='value'`` lines
config log_dir                    ``--output=DIR/<pid>_%j.out``, ``--error=DIR/<pid>_%j.err``
``kwargs["docker-image"]``        ``srun singularity exec [--nv] [--bind FS:MOUNT] IMAGE argv``
================================  ==========================================

``0``/empty values request nothing and emit no line. ``gpu.mem`` and
``gpu.nodecount`` have no portable sbatch flag and are left to matching.
The command comes from ``colonymesh.node.spec.command.resolve_command``
(registered functions by default; ColonyOS's ``kwargs.cmd`` only when the
config allows it). With an image the command runs in the configured
container runtime (``singularity`` or ``apptainer``); a bare image name is
pulled as ``docker://IMAGE``, a ``*.sif`` path or ``scheme://`` reference is
used as given, and ``--nv`` is added when GPUs are requested.

Safety: every value that reaches a shell line is ``shlex.quote``-d;
``#SBATCH`` lines are not parsed by a shell, so the values there (numbers,
config names, the GRES type) are checked against strict character sets
instead, and a value that fails is refused, never escaped. Before anything
else the script unsets inherited variables with the configured prefixes
(``COLONYMESH_`` by default) so no executor secret reaches the job. The
job runs under the executor owner's account, so spec ``env`` names that
would change which program runs or how (``PATH``, ``LD_*``, ``BASH_ENV``,
``PYTHON*``, ``SLURM_*``, ``SINGULARITY_*``... see ``DEFAULT_ENV_DENIED``)
are refused with a field-named error unless the config allows them.
"""

from __future__ import annotations

import enum
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

from colonymesh.node.spec import FunctionSpec, SpecError, resolve_command, validate_function_spec

__all__ = [
    "ContainerRuntime",
    "SbatchJob",
    "SlurmConfig",
    "SlurmConfigError",
    "format_time",
    "to_sbatch",
]

MIB = 1 << 20
_PROCESS_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")
_SLURM_NAME = re.compile(r"[A-Za-z0-9_.,+-]{1,128}\Z")
_MODULE = re.compile(r"[A-Za-z0-9_./+-]{1,256}\Z")
_SAFE_PATH = re.compile(r"/[A-Za-z0-9_./+-]{0,1023}\Z")
_GRES_TYPE = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")
_ENV_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\Z")


DEFAULT_ENV_DENIED = (
    "PATH",
    "LD_*",
    "BASH_ENV",
    "ENV",
    "BASHOPTS",
    "SHELLOPTS",
    "IFS",
    "PS4",
    "PROMPT_COMMAND",
    "MODULEPATH",
    "LMOD_*",
    "PYTHON*",
    "PERL5*",
    "PERLLIB",
    "RUBYLIB",
    "RUBYOPT",
    "NODE_OPTIONS",
    "NODE_PATH",
    "SLURM_*",
    "SBATCH_*",
    "SRUN_*",
    "SINGULARITY_*",
    "APPTAINER_*",
)


def _denied(name: str, patterns: tuple[str, ...]) -> bool:
    return any(name.startswith(p[:-1]) if p.endswith("*") else name == p for p in patterns)


class SlurmConfigError(ValueError):
    """The executor's Slurm configuration (not the spec) is unusable."""


class ContainerRuntime(enum.Enum):
    SINGULARITY = "singularity"
    APPTAINER = "apptainer"


@dataclass(frozen=True, slots=True)
class SlurmConfig:
    """What the executor's owner decides; the spec cannot change any of it."""

    log_dir: str
    partition: str = ""
    account: str = ""
    modules: tuple[str, ...] = ()
    container_runtime: ContainerRuntime = ContainerRuntime.SINGULARITY
    # funcname -> argv prefix; the spec's args are appended (see node/spec/command.py)
    commands: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    allow_spec_commands: bool = False
    default_image: str = ""
    # Host directory the fs sync fills; bound to ``spec.fs.mount`` inside a container.
    fs_dir: str = ""
    workdir: str = ""
    job_name_prefix: str = "colonymesh"
    scrub_env_prefixes: tuple[str, ...] = ("COLONYMESH_",)
    # Spec env names refused here ("X*" = prefix): they would change which
    # program runs, or how, under the executor owner's account.
    env_denied: tuple[str, ...] = DEFAULT_ENV_DENIED

    def check(self) -> None:
        """Raise ``SlurmConfigError`` for any value unsafe to write into a script."""
        for name in ("log_dir", "fs_dir", "workdir"):
            value = getattr(self, name)
            if (name == "log_dir" or value) and not _SAFE_PATH.match(value):
                raise SlurmConfigError(f"{name}: must be an absolute path of [A-Za-z0-9_./+-]")
        for name in ("partition", "account"):
            value = getattr(self, name)
            if value and not _SLURM_NAME.match(value):
                raise SlurmConfigError(f"{name}: must match [A-Za-z0-9_.,+-]{{1,128}}")
        for module in self.modules:
            if not _MODULE.match(module):
                raise SlurmConfigError(f"modules: {module!r} must match [A-Za-z0-9_./+-]")
        if not _SLURM_NAME.match(self.job_name_prefix) or "," in self.job_name_prefix:
            raise SlurmConfigError("job_name_prefix: must match [A-Za-z0-9_.+-]{1,128}")
        for prefix in self.scrub_env_prefixes:
            if not _ENV_PREFIX.match(prefix):
                raise SlurmConfigError(f"scrub_env_prefixes: {prefix!r} is not a variable prefix")


@dataclass(frozen=True, slots=True)
class SbatchJob:
    """A batch script and where Slurm will write its output (``%j`` = job id)."""

    script: str
    job_name: str
    stdout_path: str
    stderr_path: str

    def stdout_for(self, job_id: int) -> str:
        return self.stdout_path.replace("%j", str(job_id))

    def stderr_for(self, job_id: int) -> str:
        return self.stderr_path.replace("%j", str(job_id))


def format_time(seconds: int) -> str:
    """Seconds as Slurm's ``D-HH:MM:SS`` (``90061`` -> ``1-01:01:01``)."""
    if seconds < 0:
        raise ValueError("a time limit cannot be negative")
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days}-{hours:02d}:{minutes:02d}:{secs:02d}"


def _directives(spec: FunctionSpec, config: SlurmConfig, job: SbatchJob) -> list[str]:
    c = spec.conditions
    lines = [
        f"--job-name={job.job_name}",
        f"--output={job.stdout_path}",
        f"--error={job.stderr_path}",
    ]
    if config.partition:
        lines.append(f"--partition={config.partition}")
    if config.account:
        lines.append(f"--account={config.account}")
    if c.nodes:
        lines.append(f"--nodes={c.nodes}")
    if c.processes:
        lines.append(f"--ntasks={c.processes}")
    if c.processespernode:
        lines.append(f"--ntasks-per-node={c.processespernode}")
    millicores = c.cpu_millicores
    if millicores:
        lines.append(f"--cpus-per-task={-(-millicores // 1000)}")
    mem = c.mem_bytes
    if mem:
        lines.append(f"--mem={-(-mem // MIB)}M")
    if c.walltime:
        lines.append(f"--time={format_time(c.walltime)}")
    if c.gpu.count:
        if c.gpu.name and not _GRES_TYPE.match(c.gpu.name):
            raise SpecError("conditions.gpu.name", "is not a Slurm GRES type ([A-Za-z0-9_.-])")
        gres_type = f"{c.gpu.name}:" if c.gpu.name else ""
        lines.append(f"--gres=gpu:{gres_type}{c.gpu.count}")
    if config.workdir:
        lines.append(f"--chdir={config.workdir}")
    return [f"#SBATCH {line}" for line in lines]


def _image_ref(image: str) -> str:
    if "://" in image or image.endswith(".sif"):
        return image
    return f"docker://{image}"


def _launch(spec: FunctionSpec, config: SlurmConfig) -> str:
    command = resolve_command(
        spec,
        config.commands,
        allow_spec_commands=config.allow_spec_commands,
        default_image=config.default_image,
    )
    words = ["srun"]
    if command.image:
        words += [config.container_runtime.value, "exec"]
        if spec.conditions.gpu.count:
            words.append("--nv")
        if config.fs_dir and spec.fs.mount:
            words += ["--bind", f"{config.fs_dir}:{spec.fs.mount}"]
        words.append(_image_ref(command.image))
    words += command.argv
    return " ".join(shlex.quote(word) for word in words)


def to_sbatch(spec: FunctionSpec, process_id: str, config: SlurmConfig) -> SbatchJob:
    """The sbatch script for running ``spec`` as process ``process_id``.

    Raises ``SpecError`` when the spec asks for something this executor
    cannot express (an unregistered function, a GRES name Slurm cannot
    take), ``SlurmConfigError`` for a bad config, ``ValueError`` for a bad id.
    """
    if not _PROCESS_ID.match(process_id):
        raise ValueError("process_id must match [A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
    config.check()
    spec = validate_function_spec(spec)
    stem = f"{config.log_dir.rstrip('/')}/{process_id}_%j"
    job = SbatchJob(
        script="",
        job_name=f"{config.job_name_prefix}-{process_id}",
        stdout_path=f"{stem}.out",
        stderr_path=f"{stem}.err",
    )
    lines = ["#!/bin/bash", *_directives(spec, config, job)]
    lines.append("# Generated by colonymesh from a function spec; user values are shell-quoted.")
    if config.scrub_env_prefixes:
        pattern = "|".join(f"{prefix}*" for prefix in config.scrub_env_prefixes)
        lines.append(
            f'for _cm_var in $(compgen -v); do case "$_cm_var" in {pattern}) '
            'unset "$_cm_var" ;; esac; done; unset _cm_var'
        )
    lines.append("set -e")
    lines += [f"module load {shlex.quote(module)}" for module in config.modules]
    lines.append(f"export COLONYMESH_PROCESS_ID={shlex.quote(process_id)}")
    if config.fs_dir:
        lines.append(f"export COLONYMESH_FS_DIR={shlex.quote(config.fs_dir)}")
    for name, value in spec.env:
        if _denied(name, config.env_denied):
            raise SpecError(
                f"env.{name}", "may not be set on this executor: it would change which program runs"
            )
        lines.append(f"export {name}={shlex.quote(value)}")
    lines.append(_launch(spec, config))
    return SbatchJob(
        script="\n".join(lines) + "\n",
        job_name=job.job_name,
        stdout_path=job.stdout_path,
        stderr_path=job.stderr_path,
    )
