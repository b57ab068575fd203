"""``colonymesh executor run``: a kind's settings are checked before the node starts, one line each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.cli import fails

executor_kit = pytest.importorskip("executor_kit")


@pytest.fixture
def node(tmp_path: Path) -> Path:
    """An executor's folder (node.toml, key, certificate) in a colony that is not running."""
    kit = executor_kit.make_colony(tmp_path)
    added = kit.add_executor(
        "e1", executor_type="hpc", kind="slurm", executor_toml="",
        capabilities=executor_kit.Capabilities(), location="",
    )  # fmt: skip
    return Path(added.folder)


def run(node: Path, kind: str, toml: str | None) -> str:
    args: list[str | Path] = ["executor", "run", "--config", node / "node.toml", "--kind", kind]
    if toml is not None:
        (node / "executor.toml").write_text(toml)
        args += ["--executor-config", node / "executor.toml"]
    return fails(*args)


@pytest.mark.parametrize(
    ("kind", "toml", "words"),
    [
        ("slurm", None, "executor kind 'slurm' is not available without its settings"),
        ("process", "[process]\n", "[process] commands: required"),
        ("slurm", '[slurm]\nlog_dir = "/x"\npartition = "a;b"\n[slurm.commands]\nx = ["a"]', "[slurm] partition: must match"),
        ("slurm", '[slurm]\nlog_dir = "/x"\npoll_interval_s = -1\n[slurm.commands]\nx = ["a"]', "[slurm] poll_interval_s: must be > 0"),
        ("kubernetes", '[kubernetes]\nkubeconfig = "nope"\n[kubernetes.commands]\nx = ["a"]', "[kubernetes] kubeconfig:"),
        ("kubernetes", '[kubernetes]\nnamespace = "A"\n[kubernetes.commands]\nx = ["a"]', "[kubernetes] namespace: 'A' is not a DNS-1123 label"),
        ("python", '[python]\nisolation = "subprocess"\n', "[python] functions: required"),
        ("python", '[python]\nfunctions = "no_such_module_x:f"\n', "cannot import no_such_module_x"),
    ],
)  # fmt: skip
def test_bad_settings_are_one_line_naming_the_key(
    node: Path, kind: str, toml: str | None, words: str
) -> None:
    line = run(node, kind, toml)
    assert words in line, line
    if toml is not None:
        assert str(node / "executor.toml") in line or "cannot import" in line


def test_a_bad_kubeconfig_file_is_refused(node: Path) -> None:
    (node / "kubeconfig").write_text(json.dumps({"apiVersion": "v1", "kind": "Config"}))
    toml = '[kubernetes]\nkubeconfig = "kubeconfig"\n[kubernetes.commands]\nx = ["a"]'
    line = run(node, "kubernetes", toml)
    assert "[kubernetes] kubeconfig:" in line, line


def test_the_node_config_names_the_executor_config_and_the_flag_wins(node: Path) -> None:
    """``[executor] executor_config`` (relative to node.toml) is read; the flag overrides it."""
    with open(node / "node.toml", "a") as handle:
        handle.write('[executor]\nexecutor_config = "kinds/from-node.toml"\n')
    (node / "kinds").mkdir()
    (node / "kinds" / "from-node.toml").write_text("[process]\n")
    base = ["executor", "run", "--config", node / "node.toml", "--kind", "process"]
    line = fails(*base)
    assert "[process] commands: required" in line, line
    assert str(node / "kinds" / "from-node.toml") in line, line
    (node / "flag.toml").write_text('[process]\ngrace_s = -1\n[process.commands]\nx = ["a"]\n')
    line = fails(*base, "--executor-config", node / "flag.toml")
    assert str(node / "flag.toml") in line and "grace_s" in line, line
