"""Layering: the spec model imports nothing else of ours; the translators only the spec model.

Both are pure: no I/O, clock, randomness or threads. Checked on the source
(``ast``), so a lazy import inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMPURE = {"trio", "socket", "time", "random", "os", "threading", "asyncio", "subprocess"}

RULES = {
    "node/spec": ("colonymesh.node.spec",),
    "executors/slurm": ("colonymesh.node.spec", "colonymesh.executors.slurm"),
    "executors/kubernetes": ("colonymesh.node.spec", "colonymesh.executors.kubernetes"),
}


def imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


@pytest.mark.parametrize("folder", sorted(RULES))
def test_layering_and_purity(folder: str) -> None:
    files = sorted((ROOT / folder).glob("*.py"))
    assert files, f"no modules found under {folder}"
    for path in files:
        for name in imports(path):
            top = name.split(".")[0]
            assert top not in IMPURE, (
                f"{path.name} imports {name}: translators and the model are pure"
            )
            if top == "colonymesh":
                assert name.startswith(RULES[folder]), f"{path.name} imports {name}"
