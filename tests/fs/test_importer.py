"""The streaming importer, the DAG reader and local import/export."""

from __future__ import annotations

import itertools
import os
import random
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from colonymesh.fs.cid import CODEC_DAG_PB, CODEC_RAW, Cid
from colonymesh.fs.errors import FsUsageError, UnixFsError, UnsupportedError
from colonymesh.fs.importer import (
    Block,
    DagEntry,
    FileImporter,
    FixedSizeChunker,
    directory_node,
    file_node,
    import_bytes,
    raw_block,
)
from colonymesh.fs.local import cid_of_path, export_path, import_file, import_path
from colonymesh.fs.pb import PBNode, decode_pbnode, decode_unixfs, encode_pbnode
from colonymesh.fs.reader import child_cids, list_directory, read_file

CHUNK = 262_144


def _store(blocks: list[Block]) -> dict[Cid, bytes]:
    store: dict[Cid, bytes] = {}
    for block in blocks:
        assert block.cid.verify(block.data)
        for child in child_cids(block.cid, block.data):
            assert child in store, "children must be emitted before their parents"
        store[block.cid] = block.data
    return store


def _depth(store: dict[Cid, bytes], cid: Cid) -> int:
    children = child_cids(cid, store[cid])
    return 1 + max((_depth(store, c) for c in children), default=0)


@pytest.mark.parametrize(
    ("size", "codec", "depth"),
    [
        (0, CODEC_RAW, 1),
        (1, CODEC_RAW, 1),
        (CHUNK, CODEC_RAW, 1),
        (CHUNK + 1, CODEC_DAG_PB, 2),
        (174 * CHUNK, CODEC_DAG_PB, 2),
        (174 * CHUNK + 1, CODEC_DAG_PB, 3),
    ],
)
def test_round_trip_and_shape(size: int, codec: int, depth: int) -> None:
    data = random.Random(size).randbytes(size)
    root, blocks = import_bytes(data)
    store = _store(blocks)
    assert root.cid == blocks[-1].cid
    assert (root.cid.codec, root.filesize) == (codec, size)
    assert _depth(store, root.cid) == depth
    assert b"".join(read_file(store.__getitem__, root.cid)) == data
    assert root.tsize == sum(len(b) for b in store.values())  # random data: no repeats


def test_file_node_declares_sizes() -> None:
    leaves = [DagEntry(raw_block(b"ab").cid, 2, 2), DagEntry(raw_block(b"c").cid, 1, 1)]
    entry, block = file_node(leaves)
    node = decode_pbnode(block.data)
    assert node.data is not None
    unixfs = decode_unixfs(node.data)
    assert (unixfs.filesize, unixfs.blocksizes) == (3, (2, 1))
    assert [link.name for link in node.links] == ["", ""]
    assert entry.tsize == len(block.data) + 3


@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(max_size=3000),
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=8),
    chunk=st.integers(min_value=1, max_value=200),
    fanout=st.integers(min_value=2, max_value=5),
)
def test_feeding_pieces_never_changes_the_dag(
    data: bytes, cuts: list[int], chunk: int, fanout: int
) -> None:
    whole = FileImporter(FixedSizeChunker(chunk), fanout)
    blocks = whole.feed(data)
    root, tail = whole.finish()
    pieces = FileImporter(FixedSizeChunker(chunk), fanout)
    got: list[Block] = []
    bounds = [0, *sorted(c for c in cuts if c <= len(data)), len(data)]
    for start, end in itertools.pairwise(bounds):
        got += pieces.feed(data[start:end])
    root2, tail2 = pieces.finish()
    assert root2 == root and got + tail2 == blocks + tail
    store = _store(blocks + tail)
    assert b"".join(read_file(store.__getitem__, root.cid)) == data


def test_misuse_raises() -> None:
    importer = FileImporter()
    importer.finish()
    with pytest.raises(FsUsageError):
        importer.feed(b"x")
    with pytest.raises(FsUsageError):
        importer.finish()
    with pytest.raises(FsUsageError):
        FixedSizeChunker(0)


def test_directory_rules() -> None:
    leaf = DagEntry(raw_block(b"x").cid, 1, 1)
    entry, block = directory_node([("b", leaf), ("B", leaf), ("a", leaf)])
    names = [link.name for link in decode_pbnode(block.data).links]
    assert names == ["B", "a", "b"]
    assert entry.tsize == len(block.data) + 3
    for bad in [[("x", leaf), ("x", leaf)], [("a/b", leaf)], [("", leaf)], [("..", leaf)]]:
        with pytest.raises(FsUsageError):
            directory_node(bad)
    many = [(f"{i:0200d}", leaf) for i in range(1200)]  # ~283 KB of links: IPFS would shard
    with pytest.raises(UnsupportedError):
        directory_node(many)


def test_reader_rejects_inconsistent_sizes() -> None:
    data = random.Random(1).randbytes(250)
    importer = FileImporter(FixedSizeChunker(100))
    blocks = importer.feed(data)
    root, tail = importer.finish()
    store = _store(blocks + tail)
    node = decode_pbnode(store[root.cid])
    # Swap the links: a different file whose blocksizes now lie about the children.
    forged = encode_pbnode(PBNode(tuple(reversed(node.links)), node.data))
    forged_cid = Cid.of(CODEC_DAG_PB, forged)
    store[forged_cid] = forged
    with pytest.raises(UnixFsError):
        b"".join(read_file(store.__getitem__, forged_cid))
    with pytest.raises(UnixFsError):
        list_directory(store.__getitem__, root.cid)


def test_import_streams_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "big"
    with open(path, "wb") as handle:
        rng = random.Random(3)
        for _ in range(24):
            handle.write(rng.randbytes(1 << 20))
    tracemalloc.start()
    try:
        root = import_file(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert root.filesize == 24 << 20
    assert peak < 6 << 20, f"peak {peak} bytes while hashing a 24 MiB file"


def test_export_round_trips_a_tree(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub" / "empty-dir").mkdir(parents=True)
    (src / "empty").write_bytes(b"")
    (src / "sub" / "two-chunks").write_bytes(random.Random(5).randbytes(CHUNK + 1))
    os.symlink("sub/two-chunks", src / "link")
    blocks: list[Block] = []
    root = import_path(src, blocks.append)
    store = _store(blocks)
    dest = tmp_path / "dest"
    export_path(store.__getitem__, root.cid, dest)
    assert (dest / "empty").read_bytes() == b""
    assert (dest / "sub" / "two-chunks").read_bytes() == (src / "sub" / "two-chunks").read_bytes()
    assert (dest / "sub" / "empty-dir").is_dir()
    assert os.readlink(dest / "link") == "sub/two-chunks"
    assert cid_of_path(dest) == root.cid.encode()
    assert [e.name for e in list_directory(store.__getitem__, root.cid)] == ["empty", "link", "sub"]


def test_unsupported_entries(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(UnsupportedError):
        cid_of_path(tmp_path)
    with pytest.raises(FileNotFoundError):
        cid_of_path(tmp_path / "missing")
