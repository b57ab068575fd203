"""A get streams its export behind the fetch: bounded store queue, atomic output, gate semantics."""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
import trio

from colonymesh.fs.cid import CODEC_RAW, Cid
from colonymesh.fs.errors import ChunkNotFoundError
from colonymesh.fs.exchange.session import SessionConfig
from colonymesh.fs.store import ChunkStore
from colonymesh.node.fsnet import FetchFailed
from colonymesh.node.fsnet.export import BlockGate, export_atomic
from colonymesh.node.fsnet.fetch import Fetch
from colonymesh.node.fsnet.lab import open_fs_lab
from colonymesh.node.fsnet.service import ServiceConfig

BLOCK = 256 * 1024


def _write(path: Path, size: int, seed: int) -> bytes:
    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return data


async def test_a_slow_store_holds_the_providers_back(tmp_path: Path) -> None:
    """Received-but-unstored bytes stay within the bound however slow the disk is."""
    source = tmp_path / "f.bin"
    _write(source, 24 * BLOCK, seed=11)
    async with open_fs_lab(tmp_path / "state", 3) as (a, b, c):
        root = await a.put_path(source)
        await b.put_path(source)
        put_batch = c.store.put_batch

        def slow_put(items: Sequence[tuple[Cid, bytes]], *, verified: bool = False) -> int:
            time.sleep(0.05)
            return put_batch(items, verified=verified)

        c.store.put_batch = slow_put  # type: ignore[method-assign]
        bound = 2 * BLOCK
        fetch = Fetch(
            c.peer,
            c.store,
            c.ask_connected,
            [root],
            SessionConfig(),
            random.Random(3),
            store_queue_bytes_max=bound,
        )
        with trio.fail_after(60):
            result = await fetch.run()
        assert result.ok and result.blocks_fetched == 25
        # Each of the two links may hand over one more block before it waits.
        assert bound <= fetch.queued_bytes_peak <= bound + 2 * BLOCK
        assert fetch.queued_bytes == 0
        assert all(c.store.has(cid) for cid in a.store.cids())


async def test_a_failed_get_leaves_no_output(tmp_path: Path) -> None:
    source = tmp_path / "f.bin"
    _write(source, 5 * BLOCK, seed=12)
    config = ServiceConfig(session=SessionConfig(peer_timeout_s=2.0), have_timeout_s=1.0)
    async with open_fs_lab(tmp_path / "state", 2, config=config) as (a, b):
        root = await a.put_path(source)
        leaf = next(cid for cid in a.store.cids() if cid != root)
        a.store.delete(leaf)  # nobody holds it any more
        with trio.fail_after(60), pytest.raises(FetchFailed):
            await b.get(root, tmp_path / "out.bin")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin", "state"]


def test_export_atomic_fails_cleanly_on_a_missing_block(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path / "store", 2**30)
    gate = BlockGate(store)
    gate.close()  # the fetch is over and the block never came
    with pytest.raises(ChunkNotFoundError):
        export_atomic(gate, Cid.of(CODEC_RAW, b"absent"), os.fspath(tmp_path / "out"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]


def test_the_gate_waits_for_a_block_until_it_is_stored(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path / "store", 2**30)
    gate = BlockGate(store)
    data = b"late block"
    cid = Cid.of(CODEC_RAW, data)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(gate.get(cid)))
    reader.start()
    time.sleep(0.1)
    assert not got and gate.waits >= 1  # it waits rather than failing
    store.put_batch([(cid, data)])
    gate.stored([cid])
    reader.join(5)
    assert got == [data]


def test_export_atomic_never_replaces_what_appeared_at_dest(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path / "store", 2**30)
    data = b"the content"
    cid = Cid.of(CODEC_RAW, data)
    store.put_batch([(cid, data)])
    dest = tmp_path / "out"
    dest.write_bytes(b"someone else's")
    with pytest.raises(FileExistsError):
        export_atomic(BlockGate(store), cid, os.fspath(dest))
    assert dest.read_bytes() == b"someone else's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "store"]
    export_atomic(BlockGate(store), cid, os.fspath(tmp_path / "fresh"))
    assert (tmp_path / "fresh").read_bytes() == data
