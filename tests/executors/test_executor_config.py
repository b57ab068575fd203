"""executor.toml: every kind's section read strictly, every defect named by section and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from colonymesh.executors.config import (
    ExecutorConfigError,
    Isolation,
    PythonKindConfig,
    parse_executor_config,
)
from colonymesh.executors.kubernetes.runtime import KubernetesRuntimeConfig
from colonymesh.executors.process import ProcessConfig
from colonymesh.executors.slurm import ContainerRuntime
from colonymesh.executors.slurm.runtime import SlurmRuntimeConfig

FULL = """
[python]
functions = "exectasks:functions"
isolation = "subprocess"
workers = 3

[process]
workdir_root = "work"
inherit_env = ["PATH"]
env = { OMP_NUM_THREADS = "1" }
[process.commands]
sum = ["python3", "-c", "print(1)"]
resize = { argv = ["convert"], description = "resize an image" }

[slurm]
log_dir = "/srv/slurm/logs"
partition = "debug"
account = "proj1"
modules = ["gcc/12", "openmpi"]
container_runtime = "apptainer"
default_image = "docker://python:3.11"
poll_interval_s = 0.25
[slurm.commands]
square = ["python3", "-c", "print(4)"]

[kubernetes]
namespace = "colony"
kubeconfig = "kubeconfig"
delete_after = false
[kubernetes.commands]
train = { argv = ["python3", "-m", "train"], image = "ghcr.io/lab/train:1" }
echo = ["echo"]
"""


@pytest.fixture
def base(tmp_path: Path) -> Path:
    (tmp_path / "kubeconfig").write_text("{}")
    return tmp_path


def test_every_kind_reads_its_section(base: Path) -> None:
    python = parse_executor_config("python", FULL, base=base)
    assert python == PythonKindConfig("exectasks:functions", Isolation.SUBPROCESS, 3)
    process = parse_executor_config("process", FULL, base=base)
    assert isinstance(process, ProcessConfig)
    assert process.commands["resize"] == ("convert",)
    assert process.descriptions == {"resize": "resize an image"}
    assert process.workdir_root == str(base / "work")  # relative to the file
    assert process.env == {"OMP_NUM_THREADS": "1"} and process.inherit_env == ("PATH",)
    slurm = parse_executor_config("slurm", FULL, base=base)
    assert isinstance(slurm, SlurmRuntimeConfig)
    assert slurm.sbatch.partition == "debug" and slurm.sbatch.account == "proj1"
    assert slurm.sbatch.modules == ("gcc/12", "openmpi")
    assert slurm.sbatch.container_runtime is ContainerRuntime.APPTAINER
    assert slurm.poll_initial_s == 0.25
    kubernetes = parse_executor_config("kubernetes", FULL, base=base)
    assert isinstance(kubernetes, KubernetesRuntimeConfig)
    assert kubernetes.images == {"train": "ghcr.io/lab/train:1"}
    assert kubernetes.kubeconfig == str(base / "kubeconfig") and not kubernetes.delete_after


@pytest.mark.parametrize(
    ("kind", "text", "message"),
    [
        ("python", '[python]\nisolation = "thread"', '[python] isolation: must be "none" or "subprocess"'),
        ("python", '[python]\nfunctions = "tasks"', "[python] functions: expected MODULE:ATTR"),
        ("python", "[python]\nworkers = -1", "[python] workers: must be >= 0"),
        ("process", "[process]\n", "[process] commands: required"),
        ("process", '[process]\ncomands = {}', "[process] comands: unknown key (did you mean 'commands'?)"),
        ("process", "[process.commands]\nx = []", "[process] commands.x.argv: must be a non-empty list"),
        ("process", '[process.commands]\nx = { argv = ["a"], img = "b" }', "[process] commands.x.img: unknown key"),
        ("process", '[process]\ngrace_s = "5"\n[process.commands]\nx = ["a"]', "[process] grace_s: must be a number, not a string"),
        ("process", '[process]\nenv = { "1X" = "a" }\n[process.commands]\nx = ["a"]', "[process] env.1X: must be a NAME"),
        ("slurm", '[slurm.commands]\nx = ["a"]', "[slurm] log_dir: required"),
        ("slurm", '[slurm]\nlog_dir = "/l"\npartition = "a b"\n[slurm.commands]\nx = ["a"]', "[slurm] partition: must match"),
        ("slurm", '[slurm]\nlog_dir = "/l"\nmodules = ["$(x)"]\n[slurm.commands]\nx = ["a"]', "[slurm] modules: '$(x)' must match"),
        ("slurm", '[slurm]\nlog_dir = "/l"\npoll_interval_s = 0\n[slurm.commands]\nx = ["a"]', "[slurm] poll_interval_s: must be > 0"),
        ("slurm", '[slurm]\nlog_dir = "/l"\ncontainer_runtime = "docker"\n[slurm.commands]\nx = ["a"]', '[slurm] container_runtime: must be "singularity" or "apptainer"'),
        ("kubernetes", '[kubernetes]\nnamespace = "Bad_NS"\n[kubernetes.commands]\nx = ["a"]', "[kubernetes] namespace: 'Bad_NS' is not a DNS-1123 label"),
        ("kubernetes", '[kubernetes]\nkubeconfig = "missing"\n[kubernetes.commands]\nx = ["a"]', "[kubernetes] kubeconfig:"),
        ("kubernetes", '[kubernetes]\nimage_pull_policy = "Sometimes"\n[kubernetes.commands]\nx = ["a"]', "[kubernetes] image_pull_policy: must be one of"),
        ("slurm", "[slrum]\n", "unknown section [slrum] (did you mean [slurm]?)"),
        ("slurm", "[process]\n", "no [slurm] section"),
        ("process", "[process\n", "not valid TOML"),
    ],
)  # fmt: skip
def test_defects_are_named(base: Path, kind: str, text: str, message: str) -> None:
    with pytest.raises(ExecutorConfigError) as caught:
        parse_executor_config(kind, text, base=base)
    assert message in str(caught.value)
