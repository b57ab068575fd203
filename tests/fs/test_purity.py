"""The pure core of fs/ imports no I/O, clock, randomness or anything else of ours."""

from __future__ import annotations

import ast
from pathlib import Path

import colonymesh.fs

FS = Path(colonymesh.fs.__file__).parent
PURE = ["cid.py", "pb.py", "importer.py", "cdc.py", "reader.py", "errors.py"]
FORBIDDEN = {"os", "io", "time", "random", "socket", "threading", "asyncio", "trio", "pathlib"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_core_modules_are_sans_io() -> None:
    for name in PURE:
        roots = {imported.split(".")[0] for imported in _imports(FS / name)}
        assert not roots & FORBIDDEN, f"{name} imports {roots & FORBIDDEN}"


def test_fs_imports_nothing_else_of_ours() -> None:
    for path in sorted(FS.glob("*.py")):
        ours = {m for m in _imports(path) if m.startswith("colonymesh")}
        assert all(m.startswith("colonymesh.fs") for m in ours), f"{path.name}: {ours}"
