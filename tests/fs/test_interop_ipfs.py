"""Our CIDs against a real IPFS implementation (js ipfs-unixfs-importer, pinned in interop/).

The reference runs in Node; `npm ci` installs it into interop/node_modules (gitignored)
on first use. Skipped only when node or npm is not installed.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from colonymesh.fs import cid_of_path
from colonymesh.fs.errors import UnsupportedError
from colonymesh.fs.importer import FixedSizeChunker
from colonymesh.fs.local import import_path

INTEROP = Path(__file__).parent / "interop"
CHUNK = 262_144

Reference = Callable[..., list[str]]


@pytest.fixture(scope="module")
def ipfs_cids() -> Reference:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node/npm not installed: cannot run the reference IPFS importer")
    if not (INTEROP / "node_modules" / "ipfs-unixfs-importer").is_dir():
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=INTEROP,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            raise RuntimeError(f"npm ci failed:\n{done.stdout}\n{done.stderr}")

    def run(
        paths: Sequence[Path], chunk_bytes: int | None = None, max_links: int | None = None
    ) -> list[str]:
        env = dict(os.environ)
        if chunk_bytes is not None:
            env["CHUNK_BYTES"] = str(chunk_bytes)
        if max_links is not None:
            env["MAX_LINKS"] = str(max_links)
        done = subprocess.run(
            [node, str(INTEROP / "cids.mjs"), *map(str, paths)],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=True,
        )
        return done.stdout.split()

    return run


def _write(path: Path, size: int, seed: int) -> Path:
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


def _tree(root: Path) -> Path:
    (root / "nested" / "deeper" / "deepest").mkdir(parents=True)
    (root / "empty-dir").mkdir()
    (root / "empty-file").write_bytes(b"")
    (root / ".hidden").write_bytes(b"dot files count\n")
    (root / "B-upper").write_bytes(b"sorted by bytes: 'B' < 'a'\n")
    (root / "a b").write_bytes(b"space in a name\n")
    (root / "\u00e4-umlaut").write_bytes(b"non-ASCII names sort by UTF-8 bytes\n")
    _write(root / "nested" / "two-chunks", CHUNK + 1, 7)
    _write(root / "nested" / "deeper" / "one-chunk", CHUNK, 8)
    (root / "nested" / "deeper" / "deepest" / "empty").write_bytes(b"")
    os.symlink("../a b", root / "nested" / "link-to-file")
    os.symlink("/does/not/exist", root / "dangling-link")
    return root


def test_file_edge_cases_match_ipfs(tmp_path: Path, ipfs_cids: Reference) -> None:
    sizes = {
        "empty": 0,
        "one-byte": 1,
        "one-chunk": CHUNK,
        "chunk-plus-one": CHUNK + 1,
        "full-node": 174 * CHUNK,  # exactly one full file node
        "full-node-plus-one": 174 * CHUNK + 1,  # two levels, one-leaf tail node
    }
    paths = [_write(tmp_path / name, size, i) for i, (name, size) in enumerate(sizes.items())]
    ours = [cid_of_path(p) for p in paths]
    assert ours[0] == "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    assert ours == ipfs_cids(paths)


def test_multi_level_50mb_matches_ipfs(tmp_path: Path, ipfs_cids: Reference) -> None:
    # 50 MB = 191 chunks > 174: a two-level balanced DAG.
    path = _write(tmp_path / "big", 50_000_000, 42)
    ours = cid_of_path(path)
    assert ours.startswith("bafybei")
    assert [ours] == ipfs_cids([path])


def test_directory_tree_matches_ipfs(tmp_path: Path, ipfs_cids: Reference) -> None:
    root = _tree(tmp_path / "tree")
    empty_dir = root / "empty-dir"
    assert [cid_of_path(root), cid_of_path(empty_dir)] == ipfs_cids([root, empty_dir])


def test_deep_dags_match_ipfs(tmp_path: Path, ipfs_cids: Reference) -> None:
    # Tiny chunks and fan-out build 4-6 levels from small files, covering the tail
    # groups of one at every level and exact powers of the fan-out.
    chunk, fanout = 100, 3
    sizes = [chunk * 3**3, chunk * 3**3 + 1, chunk * 3**4 - 1, 30_001, 54_321]
    paths = [_write(tmp_path / f"f{size}", size, size) for size in sizes]
    paths.append(_tree(tmp_path / "tree"))
    small = lambda: FixedSizeChunker(chunk)  # noqa: E731
    ours = [import_path(p, chunker_factory=small, max_links=fanout).cid.encode() for p in paths]
    assert ours == ipfs_cids(paths, chunk_bytes=chunk, max_links=fanout)


def test_directory_at_the_sharding_threshold(tmp_path: Path, ipfs_cids: Reference) -> None:
    # IPFS shards a directory whose links estimate (name bytes + CID bytes) passes
    # 256 KiB. Each entry here is 200 + 36 bytes: 1110 entries stay flat (and must
    # match), 1111 would be a HAMT, which we refuse rather than mis-encode.
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(1110):
        (flat / f"{i:0200d}").write_bytes(b"")
    assert [cid_of_path(flat)] == ipfs_cids([flat])
    (flat / f"{1110:0200d}").write_bytes(b"")
    with pytest.raises(UnsupportedError):
        cid_of_path(flat)
