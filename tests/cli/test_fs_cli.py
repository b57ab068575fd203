from __future__ import annotations

from pathlib import Path

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
