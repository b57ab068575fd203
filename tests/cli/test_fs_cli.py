from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support.cli import fails, ok

EMPTY_FILE_CID = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"  # IPFS's, raw leaf
EMPTY_DIR_CID = "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354"


def test_fs_cid_of_known_values(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "dir").mkdir()
    assert ok("fs", "cid", tmp_path / "empty").stdout.strip() == EMPTY_FILE_CID
    assert ok("fs", "cid", tmp_path / "dir", "--json").json()["cid"] == EMPTY_DIR_CID


def test_fs_cid_of_missing_path_is_one_line(tmp_path: Path) -> None:
    assert "no such file" in fails("fs", "cid", tmp_path / "nope")


def test_transfers_show_a_progress_bar_only_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from colonymesh.node.cli import fs

    calls: list[str] = []

    def item(name: str, size: int) -> tuple[str, int, Callable[[], dict[str, Any]]]:
        return name, size, lambda: calls.append(name) or {"name": name}  # type: ignore[func-returns-value]

    items = [item("a", 10), item("b", 20)]
    quiet = fs._transfer(argparse.Namespace(json=False), "get", items)
    assert quiet == [{"name": "a"}, {"name": "b"}] and capsys.readouterr().out == ""
    monkeypatch.setattr(fs, "_show_progress", lambda args: True)
    shown = fs._transfer(argparse.Namespace(json=False), "get", items)
    assert shown == quiet and calls == ["a", "b", "a", "b"]
    assert "30/30 bytes" in capsys.readouterr().out
