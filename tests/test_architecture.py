"""The design's layering and the purity of protocol cores, checked by reading imports.

DESIGN.md: consensus/ and fs/ import nothing of ours; executors/ only the spec
model; simulations/ node, consensus and fs. STYLE.md: protocol cores import no
trio, socket, time, random, os, threading (or other I/O): time and randomness
are passed in. A new core module is pure unless listed in IO_MODULES, with
the reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

MAY_IMPORT = {
    "consensus": {"consensus"},
    "fs": {"fs"},
    "executors": {"executors", "node.spec"},
    "simulations": {"simulations", "node", "consensus", "fs"},
    "node": {"node", "consensus", "fs", "executors", "_version"},
}

# Folders whose modules are protocol cores: no I/O, no clock, no global randomness.
PURE_FOLDERS = ["consensus", "node/dht", "node/gossip", "node/spec", "node/ledger", "fs"]
IO_MODULES = {
    "consensus/storage": "the durable log store: the one part of consensus that touches disk",
    "fs/store.py": "the local chunk store on disk",
    "fs/local.py": "reads local files and folders to feed the pure importer",
    "node/dht/driver.py": "the trio driver of the Kademlia core",
    "node/dht/links.py": "the Kademlia driver's per-peer stream links",
    "node/dht/mdns_driver.py": "the UDP multicast driver of LAN discovery",
    "node/gossip/driver.py": "the trio driver of the gossip core",
}
# ``import random`` itself is allowed for the ``random.Random`` type of an
# injected generator; any other ``random.X`` is reported by _imports.
FORBIDDEN_IN_CORES = {
    "trio",
    "socket",
    "time",
    "os",
    "threading",
    "asyncio",
    "selectors",
    "subprocess",
    "shutil",
    "pathlib",
    "tempfile",
    "signal",
    "zmq",
}


def _global_random_uses(tree: ast.AST) -> list[tuple[str, int]]:
    """``random.X`` other than the ``random.Random`` type: a draw from the global generator."""
    return [
        (f"random.{node.attr}", node.lineno)
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "random"
        and node.attr != "Random"
    ]


def _imports(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(), str(path))
    found = _global_random_uses(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
    return found


def _modules(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)


# The CLI is the program's composition root: `colonymesh simulate` runs the
# simulator, which itself imports node. Only the CLI may reach up to it.
EXTRA_ALLOWED = {"node/cli/simulate.py": {"simulations"}}


@pytest.mark.parametrize("part", sorted(MAY_IMPORT))
def test_parts_import_only_what_the_design_allows(part: str) -> None:
    offences = []
    for path in _modules(part):
        allowed = MAY_IMPORT[part] | EXTRA_ALLOWED.get(path.relative_to(ROOT).as_posix(), set())
        for module, line in _imports(path):
            if not module.startswith("colonymesh."):
                continue
            target = module.removeprefix("colonymesh.")
            if not any(target == a or target.startswith(a + ".") for a in allowed):
                offences.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not offences, "layering broken:\n" + "\n".join(offences)


def _is_io_module(path: Path) -> bool:
    relative = path.relative_to(ROOT).as_posix()
    return any(relative == m or relative.startswith(m.rstrip("/") + "/") for m in IO_MODULES)


@pytest.mark.parametrize("folder", PURE_FOLDERS)
def test_protocol_cores_do_no_io(folder: str) -> None:
    offences = []
    for path in _modules(folder):
        if _is_io_module(path):
            continue
        for module, line in _imports(path):
            if module.split(".")[0] in FORBIDDEN_IN_CORES or module.startswith("random."):
                offences.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not offences, "I/O in a sans-I/O core:\n" + "\n".join(offences)


def test_the_checker_sees_an_offence(tmp_path: Path) -> None:
    """Guard against a checker that cannot fail."""
    sample = tmp_path / "core.py"
    sample.write_text(
        "import time, random\nfrom trio import sleep\nfrom colonymesh.node import peer\n"
        "def f(rng: random.Random) -> float:\n    return random.random()\n"
    )
    found = sorted(m for m, _ in _imports(sample))
    assert found == ["colonymesh.node", "random", "random.random", "time", "trio"]
