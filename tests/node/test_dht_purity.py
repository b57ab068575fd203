"""The Kademlia and gossip cores stay sans-I/O: no clock, sockets, tasks, global
randomness, and nothing of the rest of the project (they must run unchanged under
the trio driver and the simulator)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import colonymesh

ROOT = Path(colonymesh.__file__).parent
FORBIDDEN = {"trio", "socket", "time", "random", "os", "threading", "asyncio", "selectors"}


def _runtime_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    names: list[str] = []
    for node in tree.body:  # module level only; `if TYPE_CHECKING:` blocks are types
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names.append(node.module)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import):
                    names.extend(alias.name for alias in inner.names)
                elif isinstance(inner, ast.ImportFrom) and inner.module is not None:
                    names.append(inner.module)
    return names


@pytest.mark.parametrize("package", ["dht", "gossip"])
def test_core_imports_nothing_impure(package: str) -> None:
    # The driver side (trio driver, stream links, wire codec) runs the core on the
    # network; it is I/O and project glue on purpose, and is checked elsewhere.
    driver_side = {"driver.py", "links.py", "codec.py", "mdns_driver.py"}
    files = sorted(p for p in (ROOT / "node" / package).glob("*.py") if p.name not in driver_side)
    assert files
    own = f"colonymesh.node.{package}"
    for path in files:
        for name in _runtime_imports(path):
            top = name.split(".")[0]
            assert top not in FORBIDDEN, f"{path.name} imports {name}"
            if top == "colonymesh":
                assert name.startswith(own), f"{path.name} imports {name}"
