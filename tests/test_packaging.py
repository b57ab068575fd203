"""The wheel installs into a fresh venv as one namespace, ``colonymesh``, and runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IGNORED = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".*_cache",
    "node_modules",
    ".hypothesis",
)
IMPORT_EVERY_MODULE = """
import importlib, pkgutil, colonymesh
names = [m.name for m in pkgutil.walk_packages(colonymesh.__path__, "colonymesh.")]
for name in names:
    importlib.import_module(name)
print(colonymesh.__file__)
print(len(names))
"""


def _run(*command: object, **options: object) -> subprocess.CompletedProcess[str]:
    """Run a step; on failure, fail the test with the step's own output."""
    completed = subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        **options,  # type: ignore[call-overload]
    )
    if completed.returncode != 0:
        pytest.fail(
            f"{command[0]} ... failed ({completed.returncode}):\n{completed.stdout}\n{completed.stderr}"
        )
    return completed


def _build_wheel(tmp_path: Path) -> Path:
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=IGNORED, symlinks=True)
    out = tmp_path / "dist"
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        out,
        source,
    )
    (wheel,) = out.glob("colonymesh-*.whl")
    return wheel


def _fresh_venv(tmp_path: Path) -> tuple[Path, Path]:
    venv = tmp_path / "venv"
    _run(
        sys.executable,
        "-m",
        "venv",
        venv,
    )
    purelib = Path(
        subprocess.run(
            [
                venv / "bin" / "python",
                "-c",
                "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    return venv, purelib


def _check_install(venv: Path, purelib: Path) -> None:
    version = _run(
        venv / "bin" / "colonymesh",
        "--version",
    )
    assert version.stdout.startswith("colonymesh ")
    imported = _run(
        venv / "bin" / "python",
        "-c",
        IMPORT_EVERY_MODULE,
        cwd=venv,
    )
    location, count = imported.stdout.split()
    assert Path(location).is_relative_to(purelib), "colonymesh must come from the installed wheel"
    assert int(count) >= 10
    (record,) = purelib.glob("colonymesh-*.dist-info/RECORD")
    installed = [line.split(",")[0] for line in record.read_text().splitlines()]
    top_level = {path.split("/")[0] for path in installed if not path.startswith("..")}
    top_level = {name for name in top_level if not name.endswith(".dist-info")}
    assert top_level == {"colonymesh"}, f"wheel installed generic top-level names: {top_level}"
    assert not any(path.startswith("colonymesh/tests/") for path in installed)


def test_wheel_installs_into_a_fresh_venv(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    venv, purelib = _fresh_venv(tmp_path)
    # Dependencies come from this environment (no network in the default suite);
    # the slow test below resolves them from the index instead.
    (purelib / "deps-from-test-env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(
        venv / "bin" / "python",
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--no-index",
        "-q",
        wheel,
    )
    _check_install(venv, purelib)


@pytest.mark.slow
def test_wheel_installs_with_its_dependencies_from_the_index(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    venv, purelib = _fresh_venv(tmp_path)
    constraints = ROOT / ".ci" / "constraints.txt"
    _run(
        venv / "bin" / "python",
        "-m",
        "pip",
        "install",
        "-q",
        "-c",
        constraints,
        wheel,
        timeout=600,
    )
    _check_install(venv, purelib)
