"""Run the ``colonymesh`` program as a user does: a real process, its exit code and output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCRIPT = Path(sys.executable).parent / "colonymesh"
COMMAND = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "colonymesh.node.cli"]


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def run(*args: str | Path, cwd: Path | None = None, timeout: float = 60) -> Result:
    env = {**os.environ, "COLUMNS": "200"}
    completed = subprocess.run(
        [*COMMAND, *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    return Result(completed.returncode, completed.stdout, completed.stderr)


def ok(*args: str | Path, cwd: Path | None = None) -> Result:
    result = run(*args, cwd=cwd)
    assert result.code == 0, f"colonymesh {' '.join(map(str, args))} failed: {result.stderr}"
    return result


def fails(*args: str | Path, cwd: Path | None = None) -> str:
    """Run a command that must fail with exactly one line on stderr; return that line."""
    result = run(*args, cwd=cwd)
    assert result.code != 0, f"expected failure, got: {result.stdout}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one error line, got: {result.stderr}"
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    return lines[0]
