"""The on-disk chunk store: atomic writes, verified reads, pins, gc, the size bound."""

from __future__ import annotations

import json
import os
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from colonymesh.fs import store as store_module
from colonymesh.fs.cid import CODEC_RAW, Cid
from colonymesh.fs.errors import (
    BlockMismatchError,
    ChunkNotFoundError,
    CorruptChunkError,
    StoreError,
    StoreFullError,
)
from colonymesh.fs.importer import Block, FixedSizeChunker, import_bytes, raw_block
from colonymesh.fs.local import cid_of_path, export_path
from colonymesh.fs.reader import read_file
from colonymesh.fs.store import ChunkStore

KIB = 1024


def _file(seed: int, size: int, chunk: int = 4 * KIB) -> tuple[Cid, list[Block], bytes]:
    data = random.Random(seed).randbytes(size)
    root, blocks = import_bytes(data, FixedSizeChunker(chunk))
    return root.cid, blocks, data


def _block_path(store: ChunkStore, cid: Cid) -> Path:
    key = cid.to_v1().encode()
    return Path(store.root) / "blocks" / key[-3:-1] / key


def test_put_get_and_layout(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path / "s", 10 * 1024 * KIB)
    block = raw_block(b"hello")
    assert store.put(block) is True
    assert store.put(block) is False  # idempotent
    assert store.get(block.cid) == b"hello"
    path = _block_path(store, block.cid)
    assert path.read_bytes() == b"hello"
    assert block.cid in store and len(store) == 1 and store.used_bytes == 5
    assert os.listdir(Path(store.root) / "tmp") == []
    with pytest.raises(ChunkNotFoundError):
        store.get(raw_block(b"absent").cid)
    with pytest.raises(BlockMismatchError):
        store.put_bytes(block.cid, b"not hello")
    assert store.delete(block.cid) and not path.exists() and store.used_bytes == 0


def test_reopen_keeps_blocks_and_pins_and_clears_tmp(tmp_path: Path) -> None:
    root, blocks, data = _file(1, 50 * KIB)
    store = ChunkStore(tmp_path / "s", 10 * 1024 * KIB)
    store.put_many(blocks)
    store.pin("snap", [root])
    (Path(store.root) / "tmp" / "123.1.tmp").write_bytes(b"half a block")
    again = ChunkStore(tmp_path / "s", 10 * 1024 * KIB)
    assert len(again) == len(blocks) and again.used_bytes == store.used_bytes
    assert again.pins() == {"snap": (root,)}
    assert b"".join(read_file(again.get, root)) == data
    assert os.listdir(Path(again.root) / "tmp") == []


def test_corrupt_chunk_is_detected_removed_and_refetchable(tmp_path: Path) -> None:
    root, blocks, data = _file(2, 20 * KIB)
    store = ChunkStore(tmp_path / "s", 10 * 1024 * KIB)
    store.put_many(blocks)
    victim = blocks[1]
    path = _block_path(store, victim.cid)
    raw = bytearray(path.read_bytes())
    raw[100] ^= 0x01  # one flipped bit on disk
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptChunkError):
        b"".join(read_file(store.get, root))
    assert not path.exists() and victim.cid not in store
    assert store.statistics().corrupt_blocks == 1
    with pytest.raises(ChunkNotFoundError):
        store.get(victim.cid)
    assert store.put(victim) is True  # re-fetched from a peer
    assert b"".join(read_file(store.get, root)) == data


def test_truncated_and_vanished_files(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path / "s", 1024 * KIB)
    a, b = raw_block(b"a" * 1000), raw_block(b"b" * 1000)
    store.put_many([a, b])
    _block_path(store, a.cid).write_bytes(b"a" * 999)
    with pytest.raises(CorruptChunkError):
        store.get(a.cid)
    _block_path(store, b.cid).unlink()
    with pytest.raises(ChunkNotFoundError):
        store.get(b.cid)
    assert len(store) == 0 and store.used_bytes == 0


def test_scrub_finds_every_corrupt_block(tmp_path: Path) -> None:
    _, blocks, _ = _file(3, 40 * KIB)
    store = ChunkStore(tmp_path / "s", 1024 * KIB)
    store.put_many(blocks)
    bad = [blocks[0].cid, blocks[5].cid]
    for cid in bad:
        _block_path(store, cid).write_bytes(b"garbage")
    assert sorted(store.verify_all(), key=str) == sorted(bad, key=str)
    assert len(store) == len(blocks) - 2


def test_gc_keeps_everything_reachable_from_pins(tmp_path: Path) -> None:
    kept_root, kept_blocks, kept_data = _file(4, 30 * KIB)
    _, gone_blocks, _ = _file(5, 30 * KIB)
    store = ChunkStore(tmp_path / "s", 10 * 1024 * KIB)
    store.put_many(kept_blocks + gone_blocks)
    store.pin("label/a", [kept_root])
    report = store.gc()
    assert report.removed_blocks == len(gone_blocks)
    assert report.freed_bytes == sum(len(b.data) for b in gone_blocks)
    assert all(b.cid in store for b in kept_blocks)
    assert not any(b.cid in store for b in gone_blocks)
    assert b"".join(read_file(store.get, kept_root)) == kept_data
    assert store.unpin("label/a") and not store.unpin("label/a")
    assert store.gc().removed_blocks == len(kept_blocks) and len(store) == 0


def test_full_store_evicts_unpinned_lru_first(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path / "s", 10 * KIB)
    blocks = [raw_block(bytes([i]) * KIB) for i in range(10)]
    store.put_many(blocks)
    assert store.used_bytes == 10 * KIB
    store.get(blocks[0].cid)  # now the most recently used
    store.pin("keep", [blocks[1].cid])
    extra = raw_block(b"x" * (2 * KIB))
    store.put(extra)
    # Oldest unpinned were 2 and 3 (0 was read, 1 is pinned).
    assert [b.cid in store for b in blocks[:4]] == [True, True, False, False]
    assert store.used_bytes == 10 * KIB and store.statistics().evicted_blocks == 2
    with pytest.raises(StoreFullError):
        store.put(raw_block(b"y" * (11 * KIB)))


def test_pinned_dag_is_never_evicted_and_full_means_refusal(tmp_path: Path) -> None:
    root, blocks, data = _file(6, 16 * KIB, chunk=KIB)
    size = sum(len(b.data) for b in blocks)
    store = ChunkStore(tmp_path / "s", size + 2 * KIB)
    store.put_many(blocks)
    store.pin("snap", [root])
    store.put(raw_block(b"a" * KIB))
    store.put(raw_block(b"b" * KIB))
    store.put(raw_block(b"c" * KIB))  # evicts "a", never a pinned block
    with pytest.raises(StoreFullError):
        store.put(raw_block(b"d" * (3 * KIB)))
    assert b"".join(read_file(store.get, root)) == data
    assert raw_block(b"c" * KIB).cid in store


def test_lru_order_survives_reopen(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path / "s", 3 * KIB)
    blocks = [raw_block(bytes([i]) * KIB) for i in range(3)]
    for i, block in enumerate(blocks):
        store.put(block)
        os.utime(_block_path(store, block.cid), ns=(i * 10**9, i * 10**9))
    os.utime(_block_path(store, blocks[0].cid), ns=(10**10, 10**10))
    again = ChunkStore(tmp_path / "s", 3 * KIB)
    again.put(raw_block(b"new" * 100))
    assert [b.cid in again for b in blocks] == [True, False, True]


def test_holding_protects_unpinned_blocks_from_eviction(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path / "s", 3 * KIB)
    a, b, c = (raw_block(ch * KIB) for ch in (b"a", b"b", b"c"))
    with store.holding():
        store.put_many([a, b])
        store.put(raw_block(b"d" * KIB))
        with pytest.raises(StoreFullError):
            store.put(c)
    store.put(c)  # the hold is gone: the oldest block goes
    assert [x.cid in store for x in (a, b, c)] == [False, True, True]


def test_add_path_imports_pins_and_evicts_only_cache(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(random.Random(7).randbytes(600 * KIB))
    (src / "empty").write_bytes(b"")
    store = ChunkStore(tmp_path / "s", 650 * KIB)
    old = raw_block(b"old" * 30_000)  # 90 KB of unpinned cache
    store.put(old)
    root = store.add_path(src, label="inputs")
    assert root.cid.encode() == cid_of_path(src)
    assert old.cid not in store
    assert store.pins() == {"inputs": (root.cid,)}
    export_path(store.get, root.cid, tmp_path / "out")
    assert (tmp_path / "out" / "f").read_bytes() == (src / "f").read_bytes()
    with pytest.raises(StoreFullError):  # everything left is pinned
        store.put(raw_block(random.Random(8).randbytes(200 * KIB)))


def test_bad_pins_file_refuses_to_open(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path / "s", KIB)
    store.pin("x", [raw_block(b"z").cid])
    doc = json.loads((tmp_path / "s" / "pins.json").read_text())
    assert doc["pins"] == {"x": [raw_block(b"z").cid.encode()]}
    (tmp_path / "s" / "pins.json").write_text('{"version": 1, "pins": {"x": ["nope"]}}')
    with pytest.raises(StoreError):
        ChunkStore(tmp_path / "s", KIB)
    with pytest.raises(StoreError):
        store.pin("", [])


def test_v0_and_v1_name_the_same_block(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path / "s", KIB)
    data = bytes.fromhex("0a020801")  # the empty UnixFS directory
    v0 = Cid.parse("QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn")
    assert store.put_bytes(v0, data)
    assert store.get(v0.to_v1()) == data
    assert not store.put_bytes(Cid.of(0x70, data), data)
    assert Cid.of(CODEC_RAW, data) not in store


def test_blocks_of_a_pinned_root_arriving_later_are_protected(tmp_path: Path) -> None:
    # A reader pins a snapshot first, then fetches its blocks top-down (as the
    # exchange will) while cache traffic keeps the store full: every later
    # arrival of the pinned DAG must be kept, only cache evicted.
    root, blocks, data = _file(9, 12 * KIB, chunk=KIB)
    size = sum(len(b.data) for b in blocks)
    store = ChunkStore(tmp_path / "s", size + 2 * KIB)
    store.pin("snap", [root])
    store.put(blocks[-1])  # the root node first
    filler = [raw_block(i.to_bytes(2, "big") * (KIB // 2)) for i in range(len(blocks) * 3)]
    store.put_many(filler[:2])
    for i, leaf in enumerate(blocks[:-1]):
        store.put(leaf)
        store.put_many(filler[2 + 2 * i : 4 + 2 * i])
        assert store.used_bytes <= store.capacity_bytes
    assert all(b.cid in store for b in blocks)
    assert store.statistics().evicted_blocks > len(blocks)
    assert b"".join(read_file(store.get, root)) == data


def test_put_batch_stores_durably_dedupes_and_reopens(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path, 10 * 1024 * KIB)
    root, blocks, data = _file(11, 40 * KIB)
    items = [(b.cid, b.data) for b in blocks]
    assert store.put_batch(items + items[:3]) == len(blocks)
    assert store.put_batch(items) == 0
    assert os.listdir(tmp_path / "tmp") == []
    reopened = ChunkStore(tmp_path, 10 * 1024 * KIB)
    assert len(reopened) == len(blocks)
    assert b"".join(read_file(reopened.get, root)) == data
    for block in blocks:
        assert _block_path(reopened, block.cid).read_bytes() == block.data


def test_put_batch_refuses_a_bad_block_before_writing_any(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path, 10 * 1024 * KIB)
    good = raw_block(b"good")
    with pytest.raises(BlockMismatchError):
        store.put_batch([(good.cid, good.data), (raw_block(b"x").cid, b"y")])
    assert len(store) == 0 and os.listdir(tmp_path / "tmp") == []


def test_batch_writer_flushes_every_blocks_max_and_on_exit(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path, 10 * 1024 * KIB)
    _, blocks, _ = _file(12, 20 * KIB)
    with store.batch(blocks_max=2) as sink:
        for index, block in enumerate(blocks):
            sink.put(block)
            assert len(store) == (index + 1) // 2 * 2
    assert len(store) == len(blocks) and sink.new == len(blocks)
    store.close()
    assert store.put_many([raw_block(b"after close")]) == 1


def test_put_batch_evicts_unpinned_blocks_for_the_whole_batch(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path, 12 * KIB)
    old = [raw_block(bytes([i]) * 4 * KIB) for i in range(3)]
    store.put_batch([(b.cid, b.data) for b in old])
    new = [raw_block(bytes([10 + i]) * 4 * KIB) for i in range(2)]
    assert store.put_batch([(b.cid, b.data) for b in new]) == 2
    assert [b.cid in store for b in old] == [False, False, True]
    assert store.used_bytes == 12 * KIB


def test_concurrent_batches_overlap_and_account_each_block_once(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path, 10 * 1024 * KIB)
    root, blocks, data = _file(21, 200 * KIB)
    items = [(b.cid, b.data) for b in blocks]
    halves = [items[: len(items) // 2 + 5], items[len(items) // 2 - 5 :]]  # 10 in both
    counts: list[int] = []
    with ThreadPoolExecutor(2) as pool:
        counts = list(pool.map(lambda part: store.put_batch(part, verified=True), halves))
    assert sum(counts) == len(blocks)  # the shared ten count once
    assert store.used_bytes == sum(len(b.data) for b in blocks)
    assert os.listdir(tmp_path / "tmp") == []
    assert b"".join(read_file(store.get, root)) == data


def test_a_read_does_not_wait_for_a_batchs_fsyncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ChunkStore(tmp_path, 10 * 1024 * KIB)
    old = raw_block(b"already here")
    store.put_batch([(old.cid, old.data)])
    fsyncing = threading.Event()
    release = threading.Event()
    real_fsync = store_module._fsync_path

    def slow_fsync(path: str, directory: bool) -> None:
        fsyncing.set()
        release.wait(10)
        real_fsync(path, directory)

    monkeypatch.setattr(store_module, "_fsync_path", slow_fsync)
    new = raw_block(b"being written")
    writer = threading.Thread(target=store.put_batch, args=([(new.cid, new.data)],))
    writer.start()
    try:
        assert fsyncing.wait(10)
        assert store.get(old.cid) == old.data  # served while the batch is in its fsync
        assert not store.has(new.cid)  # not visible before it is durable
    finally:
        release.set()
        writer.join(10)
    assert store.get(new.cid) == new.data


def test_put_batch_verified_is_trusted_but_reads_still_verify(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path, 10 * 1024 * KIB)
    cid = raw_block(b"x").cid
    store.put_batch([(cid, b"y")], verified=True)  # the caller's word, not checked
    with pytest.raises(CorruptChunkError):
        store.get(cid)  # data at rest is always verified
    assert not store.has(cid)
