"""Spec -> sbatch: the ColonyOS mapping, config, containers, and no shell injection.

The injection tests do not just look at the text: they run the generated
script with bash, with ``srun`` and ``module`` replaced by recorders on
PATH, and check the exact argv that would have been launched and that no
injected command ran.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from colonymesh.executors.slurm import (
    ContainerRuntime,
    SlurmConfig,
    SlurmConfigError,
    format_time,
    to_sbatch,
)
from colonymesh.node.spec import SpecError, parse_function_spec

CONFIG = SlurmConfig(
    log_dir="/var/log/colonymesh",
    partition="gpu",
    account="proj42",
    modules=("singularity/3.8", "cuda/12.1"),
    commands={"train": ("python3", "-m", "train"), "echo": ("echo",)},
)


def spec(**conditions: Any) -> Any:
    extra = conditions.pop("extra", {})
    return parse_function_spec(
        {"funcname": "train", "conditions": {"executortype": "hpc", **conditions}, **extra}
    )


def directives(script: str) -> list[str]:
    return [
        line.removeprefix("#SBATCH ") for line in script.splitlines() if line.startswith("#SBATCH ")
    ]


def test_colonyos_mapping() -> None:
    job = to_sbatch(
        spec(
            nodes=2,
            processes=8,
            processespernode=4,
            cpu="1500m",
            mem="15Gi",
            walltime=90061,
            gpu={"name": "a100", "count": 2},
        ),
        "p1",
        CONFIG,
    )
    assert directives(job.script) == [
        "--job-name=colonymesh-p1",
        "--output=/var/log/colonymesh/p1_%j.out",
        "--error=/var/log/colonymesh/p1_%j.err",
        "--partition=gpu",
        "--account=proj42",
        "--nodes=2",
        "--ntasks=8",
        "--ntasks-per-node=4",
        "--cpus-per-task=2",  # 1500m rounds up to 2 CPUs
        "--mem=15360M",  # MiB, Slurm's M
        "--time=1-01:01:01",
        "--gres=gpu:a100:2",
    ]
    assert job.script.startswith("#!/bin/bash\n")
    assert "module load singularity/3.8\nmodule load cuda/12.1\n" in job.script
    assert job.script.rstrip().endswith("srun python3 -m train")
    assert job.stdout_for(77) == "/var/log/colonymesh/p1_77.out"
    assert job.stderr_for(77) == "/var/log/colonymesh/p1_77.err"


def test_nothing_requested_emits_nothing() -> None:
    job = to_sbatch(spec(), "p2", SlurmConfig(log_dir="/tmp/logs", commands=CONFIG.commands))
    assert directives(job.script) == [
        "--job-name=colonymesh-p2",
        "--output=/tmp/logs/p2_%j.out",
        "--error=/tmp/logs/p2_%j.err",
    ]


@pytest.mark.parametrize(
    ("conditions", "line"),
    [
        ({"gpu": {"count": 1}}, "--gres=gpu:1"),
        ({"cpu": "100m"}, "--cpus-per-task=1"),
        ({"cpu": "4"}, "--cpus-per-task=4"),
        ({"mem": "1"}, "--mem=1M"),  # rounds up to a whole MiB
        ({"mem": "10G"}, "--mem=9537M"),
        ({"mem": "512Mi"}, "--mem=512M"),
        ({"walltime": 59}, "--time=0-00:00:59"),
        ({"walltime": 3600}, "--time=0-01:00:00"),
    ],
)
def test_single_mappings(conditions: dict[str, Any], line: str) -> None:
    assert line in directives(to_sbatch(spec(**conditions), "p", CONFIG).script)


def test_zero_memory_is_not_all_memory() -> None:
    # Slurm reads --mem=0 as "all memory of the node": "0" must emit nothing.
    assert not any(
        d.startswith("--mem") for d in directives(to_sbatch(spec(mem="0"), "p", CONFIG).script)
    )


def test_format_time() -> None:
    assert format_time(0) == "0-00:00:00"
    assert format_time(86_400 * 3 + 5) == "3-00:00:05"
    with pytest.raises(ValueError):
        format_time(-1)


def test_container_via_singularity_with_gpu_and_fs_bind() -> None:
    config = SlurmConfig(
        log_dir="/l",
        commands=CONFIG.commands,
        fs_dir="/scratch/cm",
        container_runtime=ContainerRuntime.APPTAINER,
    )
    job = to_sbatch(
        spec(
            gpu={"count": 1},
            extra={
                "kwargs": {"docker-image": "tensorflow/tensorflow:2.14.0-gpu"},
                "fs": {"mount": "/cfs"},
            },
        ),
        "p",
        config,
    )
    assert job.script.rstrip().endswith(
        "srun apptainer exec --nv --bind /scratch/cm:/cfs docker://tensorflow/tensorflow:2.14.0-gpu python3 -m train"
    )
    assert "export COLONYMESH_FS_DIR=/scratch/cm" in job.script
    sif = to_sbatch(spec(extra={"kwargs": {"docker-image": "/images/app.sif"}}), "p", CONFIG)
    assert sif.script.rstrip().endswith("srun singularity exec /images/app.sif python3 -m train")


def test_default_image_from_config() -> None:
    config = SlurmConfig(log_dir="/l", commands=CONFIG.commands, default_image="ubuntu:22.04")
    assert "singularity exec docker://ubuntu:22.04 python3" in to_sbatch(spec(), "p", config).script


def test_unregistered_function_is_refused_unless_config_allows_spec_commands() -> None:
    colonyos_style = parse_function_spec(
        {
            "funcname": "execute",
            "conditions": {"executortype": "hpc"},
            "kwargs": {"cmd": "nvidia-smi -L", "args": ["--id", 0], "docker-image": "ubuntu:22.04"},
        }
    )
    with pytest.raises(SpecError, match=r"^funcname: 'execute' is not registered"):
        to_sbatch(colonyos_style, "p", CONFIG)
    allowed = SlurmConfig(log_dir="/l", allow_spec_commands=True)
    script = to_sbatch(colonyos_style, "p", allowed).script
    assert script.rstrip().endswith(
        "srun singularity exec docker://ubuntu:22.04 nvidia-smi -L --id 0"
    )


def test_bad_gres_name_is_refused_by_field() -> None:
    with pytest.raises(SpecError, match=r"^conditions\.gpu\.name: "):
        to_sbatch(spec(gpu={"name": "a100 --uid=0", "count": 1}), "p", CONFIG)


@pytest.mark.parametrize(
    "config",
    [
        SlurmConfig(log_dir="relative/dir"),
        SlurmConfig(log_dir="/logs with space"),
        SlurmConfig(log_dir="/logs/%u"),
        SlurmConfig(log_dir="/l", partition="gpu\n#SBATCH --uid=0"),
        SlurmConfig(log_dir="/l", account="a b"),
        SlurmConfig(log_dir="/l", modules=("x; rm -rf /",)),
        SlurmConfig(log_dir="/l", fs_dir="/a b"),
        SlurmConfig(log_dir="/l", job_name_prefix="a\nb"),
        SlurmConfig(log_dir="/l", scrub_env_prefixes=("A*",)),
    ],
)
def test_unsafe_config_is_refused(config: SlurmConfig) -> None:
    with pytest.raises(SlurmConfigError):
        to_sbatch(
            spec(),
            "p",
            SlurmConfig(
                **{
                    **{f: getattr(config, f) for f in config.__dataclass_fields__},
                    "commands": CONFIG.commands,
                }
            ),
        )


@pytest.mark.parametrize("process_id", ["", "a b", "../x", "a\nb", "x" * 200, "%j"])
def test_bad_process_id_is_refused(process_id: str) -> None:
    with pytest.raises(ValueError):
        to_sbatch(spec(), process_id, CONFIG)


# ---------------------------------------------------------------- running the script

HOSTILE = [
    "; touch {canary}",
    "$(touch {canary})",
    "`touch {canary}`",
    "' ; touch {canary} ; '",
    '" ; touch {canary} ; "',
    "a\ntouch {canary}",
    "&& touch {canary}",
    "| touch {canary}",
    "> {canary}",
    "${{IFS}}touch${{IFS}}{canary}",
    "\\'; touch {canary}",
    "*",
    "~root",
    "!!",
    "",
]


def run_script(
    script: str, tmp_path: Path, extra_env: dict[str, str] | None = None
) -> tuple[list[str], dict[str, str]]:
    """Run ``script`` with bash, srun/module faked; return srun's argv and environment."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "argv"
    env_record = tmp_path / "env"
    fake_srun = bin_dir / "srun"
    fake_srun.write_text(
        f'#!/bin/sh\nfor a in "$@"; do printf \'%s\\0\' "$a"; done > {record}\nenv -0 > {env_record}\n'
    )
    fake_srun.chmod(0o755)
    fake_module = bin_dir / "module"
    fake_module.write_text("#!/bin/sh\nexit 0\n")
    fake_module.chmod(0o755)
    script_path = tmp_path / "job.sh"
    script_path.write_text(script)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path), **(extra_env or {})}
    subprocess.run(["bash", str(script_path)], cwd=tmp_path, env=env, check=True, timeout=30)
    argv = record.read_bytes().split(b"\0")[:-1]
    environ = dict(
        item.split("=", 1) for item in env_record.read_bytes().decode().split("\0") if "=" in item
    )
    return [a.decode() for a in argv], environ


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is needed to run the script")
def test_hostile_args_env_and_funcname_cannot_inject(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    args = [h.format(canary=canary) for h in HOSTILE]
    env = {f"V{i}": h.format(canary=canary) for i, h in enumerate(HOSTILE)}
    hostile_funcname = f"run; touch {canary}"
    funcspec = parse_function_spec(
        {
            "funcname": hostile_funcname,
            "args": [*args, 7, True, None, {"k": "$(id)"}],
            "env": env,
            "conditions": {"executortype": "hpc"},
        }
    )
    config = SlurmConfig(log_dir="/l", commands={hostile_funcname: ("printf", "%s $(touch x)")})
    job = to_sbatch(funcspec, "p", config)
    argv, environ = run_script(job.script, tmp_path)
    assert not canary.exists()
    assert argv == ["printf", "%s $(touch x)", *args, "7", "true", "null", '{"k":"$(id)"}']
    for name, value in env.items():
        assert environ[name] == value
    assert environ["COLONYMESH_PROCESS_ID"] == "p"
    assert not (tmp_path / "x").exists()


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is needed to run the script")
def test_colonyos_cmd_words_are_never_shell_interpreted(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    funcspec = parse_function_spec(
        {
            "funcname": "execute",
            "conditions": {"executortype": "hpc"},
            "kwargs": {
                "cmd": f"echo hi; touch {canary}",
                "args": [f"$(touch {canary})"],
                "docker-image": "ubuntu",
            },
        }
    )
    job = to_sbatch(funcspec, "p", SlurmConfig(log_dir="/l", allow_spec_commands=True))
    argv, _ = run_script(job.script, tmp_path)
    assert not canary.exists()
    assert argv == [
        "singularity",
        "exec",
        "docker://ubuntu",
        "echo",
        "hi;",
        "touch",
        str(canary),
        f"$(touch {canary})",
    ]


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is needed to run the script")
def test_executor_secrets_are_scrubbed(tmp_path: Path) -> None:
    job = to_sbatch(spec(), "p9", CONFIG)
    _, environ = run_script(
        job.script, tmp_path, {"COLONYMESH_PRIVATE_KEY": "secret", "OTHER": "kept"}
    )
    assert "COLONYMESH_PRIVATE_KEY" not in environ
    assert environ["OTHER"] == "kept"
    assert environ["COLONYMESH_PROCESS_ID"] == "p9"


@pytest.mark.parametrize(
    "name", ["PATH", "LD_PRELOAD", "BASH_ENV", "PYTHONPATH", "SLURM_EXPORT_ENV", "SINGULARITY_BIND"]
)
def test_env_that_would_change_the_program_is_refused(name: str) -> None:
    funcspec = parse_function_spec(
        {"funcname": "train", "env": {name: "/tmp/evil"}, "conditions": {"executortype": "hpc"}}
    )
    with pytest.raises(SpecError) as caught:
        to_sbatch(funcspec, "p", CONFIG)
    assert caught.value.path == f"env.{name}"
    relaxed = SlurmConfig(log_dir="/l", commands=CONFIG.commands, env_denied=())
    assert f"export {name}=/tmp/evil" in to_sbatch(funcspec, "p", relaxed).script


@pytest.mark.parametrize("cmd", ["--uid=0 ./x", "", "  ", ["-x"]])
def test_spec_command_must_name_a_program(cmd: object) -> None:
    funcspec = parse_function_spec(
        {"funcname": "execute", "kwargs": {"cmd": cmd}, "conditions": {"executortype": "hpc"}}
    )
    with pytest.raises(SpecError, match=r"^kwargs\.cmd: must name a program"):
        to_sbatch(funcspec, "p", SlurmConfig(log_dir="/l", allow_spec_commands=True))
