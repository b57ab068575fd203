"""ChunkService in one process: real peers (TCP, Noise, yamux, gating) on loopback."""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
import trio

from colonymesh.fs.cid import CODEC_RAW, Cid
from colonymesh.fs.local import cid_of_path
from colonymesh.node.errors import InputError
from colonymesh.node.fsnet import ChunkService, FetchFailed
from colonymesh.node.fsnet.export import BlockGate
from colonymesh.node.fsnet.lab import open_fs_lab
from colonymesh.node.identity import KeyPair


def _write(path: Path, size: int, seed: int) -> bytes:
    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return data


def block_path(service: ChunkService, cid: Cid) -> Path:
    key = cid.to_v1().encode()
    return Path(service.store.root) / "blocks" / key[-3:-1] / key


async def test_put_on_one_get_on_another_in_parallel(tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    data = _write(source, 3 * 1024 * 1024 + 17, seed=1)
    async with open_fs_lab(tmp_path / "state", 3) as (a, b, c):
        root = await a.put_path(source)
        assert root.encode() == cid_of_path(source)
        with trio.fail_after(30):
            got = await b.get(root, tmp_path / "on-b.bin")
        assert (tmp_path / "on-b.bin").read_bytes() == data
        assert got.fetched.ok and got.fetched.by_peer == {a.peer.peer_id: 14}
        # Now a and b both hold it: c pulls from both at once.
        with trio.fail_after(30):
            got = await c.get(root, tmp_path / "on-c.bin")
        assert (tmp_path / "on-c.bin").read_bytes() == data
        assert sorted(got.fetched.by_peer) == sorted([a.peer.peer_id, b.peer.peer_id])
        assert sum(got.fetched.by_peer.values()) == 14
        # Already local: nothing fetched.
        again = await c.get(root, tmp_path / "again.bin")
        assert again.fetched.blocks_fetched == 0


async def test_corrupt_chunk_at_the_provider_is_served_by_another(tmp_path: Path) -> None:
    source = tmp_path / "f.bin"
    data = _write(source, 2 * 1024 * 1024, seed=2)
    async with open_fs_lab(tmp_path / "state", 3) as (a, b, c):
        root = await a.put_path(source)
        await b.get(root, tmp_path / "b.bin")
        leaves = [cid for cid in a.store.cids() if cid != root]
        victim = leaves[3]
        path = block_path(a, victim)
        raw = bytearray(path.read_bytes())
        raw[100] ^= 0xFF
        path.write_bytes(bytes(raw))

        async def a_first(cid: Cid) -> list[str]:
            # The root is looked up first and found at a only, so a is asked for every
            # block; the one a drops as corrupt is looked up again and found at b.
            return [a.peer.peer_id] if cid == root else [a.peer.peer_id, b.peer.peer_id]

        c.providers = a_first
        with trio.fail_after(30):
            got = await c.get(root, tmp_path / "c.bin")
        assert (tmp_path / "c.bin").read_bytes() == data
        assert got.fetched.ok
        assert got.fetched.by_peer[b.peer.peer_id] == 1
        assert a.store.statistics().corrupt_blocks == 1  # detected at a, dropped
        assert not path.exists()
        assert a.server.core.stats.dont_haves_sent >= 1
        # a itself reads its file again: the dropped block comes back from b or c.
        with trio.fail_after(30):
            mine = await a.get(root, tmp_path / "a.bin")
        assert (tmp_path / "a.bin").read_bytes() == data
        assert mine.fetched.blocks_fetched == 1


async def test_corruption_found_during_export_is_refetched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "f.bin"
    data = _write(source, 600_000, seed=3)
    async with open_fs_lab(tmp_path / "state", 2) as (a, b):
        root = await a.put_path(source)
        await b.fetch([root])
        leaf = next(cid for cid in b.store.cids() if cid != root)
        path = block_path(b, leaf)
        gate_get = BlockGate.get
        store_pin = b.store.pin
        fetched = threading.Event()  # the fetch's own local check of the leaf has passed
        rotted = 0

        def pin_then_signal(label: str, roots: Sequence[Cid]) -> None:
            store_pin(label, roots)
            fetched.set()

        def rot_then_get(gate: BlockGate, cid: Cid) -> bytes:
            nonlocal rotted
            if cid == leaf and not rotted:  # it rots at rest just before the export reads it
                if not fetched.wait(20):
                    raise RuntimeError("the fetch never finished")
                rotted += 1
                path.write_bytes(b"rotten" + path.read_bytes()[6:])
            return gate_get(gate, cid)

        monkeypatch.setattr(BlockGate, "get", rot_then_get)
        monkeypatch.setattr(b.store, "pin", pin_then_signal)
        got = await b.get(root, tmp_path / "b.bin")
        assert (tmp_path / "b.bin").read_bytes() == data
        assert rotted == 1
        assert got.refetched_corrupt == 1  # the export tripped on it, then it came back
        assert b.store.statistics().corrupt_blocks == 1
        assert b.store.get(leaf) in data  # stored again (the read verifies it)
        assert not [p for p in tmp_path.iterdir() if p.name.endswith(".cm-part")]


async def test_directory_ls_info_and_missing_content(tmp_path: Path) -> None:
    folder = tmp_path / "tree"
    (folder / "sub").mkdir(parents=True)
    _write(folder / "one.bin", 300_000, seed=4)
    _write(folder / "sub" / "two.txt", 10, seed=5)
    (folder / "empty").write_bytes(b"")
    async with open_fs_lab(tmp_path / "state", 2) as (a, b):
        root = await a.put_path(folder)
        listing = await b.ls(root)
        assert [e["name"] for e in listing] == ["empty", "one.bin", "sub"]
        assert b.store.has(root) and len(b.store) == 1  # ls fetched the root only
        info = await b.info(root)
        assert info["type"] == "directory" and info["links"] == 3
        await b.get(root, tmp_path / "copy")
        assert cid_of_path(tmp_path / "copy") == root.encode()
        assert (tmp_path / "copy" / "sub" / "two.txt").read_bytes() == (
            folder / "sub" / "two.txt"
        ).read_bytes()
        absent = Cid.of(CODEC_RAW, b"nobody holds this")
        with pytest.raises(FetchFailed):
            await b.get(absent, tmp_path / "nothing")
        with pytest.raises(InputError):
            await b.get(root, tmp_path / "copy")  # exists


async def test_a_lying_peer_is_caught_over_the_wire(tmp_path: Path) -> None:
    source = tmp_path / "f.bin"
    data = _write(source, 1_000_000, seed=6)
    async with open_fs_lab(tmp_path / "state", 3) as (a, liar, c):
        root = await a.put_path(source)
        await liar.put_path(source)
        original = liar.server.core.answer

        def lie(requester: str, cid: Cid, block: bytes | None):  # type: ignore[no-untyped-def]
            return original(requester, cid, None if block is None else os.urandom(len(block)))

        liar.server.core.answer = lie  # type: ignore[method-assign]
        with trio.fail_after(30):
            got = await c.get(root, tmp_path / "c.bin")
        assert (tmp_path / "c.bin").read_bytes() == data
        assert liar.peer.peer_id not in got.fetched.by_peer


async def test_an_unreachable_provider_is_dropped_and_the_rest_serve(tmp_path: Path) -> None:
    source = tmp_path / "f.bin"
    data = _write(source, 1_500_000, seed=7)
    async with open_fs_lab(tmp_path / "state", 2) as (a, b):
        root = await a.put_path(source)
        ghost = KeyPair.generate().peer_id  # a member we have no address for

        async def with_ghost(cid: Cid) -> list[str]:
            return [ghost, a.peer.peer_id]

        b.providers = with_ghost
        with trio.fail_after(20):
            got = await b.get(root, tmp_path / "b.bin")
        assert (tmp_path / "b.bin").read_bytes() == data
        assert got.fetched.by_peer == {a.peer.peer_id: 7}
