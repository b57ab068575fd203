"""Crash states built from the store's own system calls, under POSIX persistence rules.

A workload (appends, conflicting appends, rollovers, syncs, hard states, a
snapshot with compaction) runs against a real directory while every
mutating call the store makes (open/create, pwrite, ftruncate, fsync,
fdatasync, rename, unlink) is recorded. A crash after any call is then
rebuilt in a fresh directory the way a disk may leave it:

* a file's writes and truncations are durable once that file was fsynced;
  of the later ones, an in-order prefix survives, the next one possibly torn;
* a creation, rename or unlink is durable once the directory was fsynced;
  of the later ones, ANY subset survives (this is what checks the store's
  directory fsyncs: a missing one shows up as a gap or a lost file).

Every crash state must open without error and keep everything acknowledged
(``sync()`` returned) before the crash. This checks the fsync discipline
independently of the store's own bookkeeping.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from colonymesh.consensus.storage import LogStore
from colonymesh.consensus.types import (
    ConfState,
    Entry,
    EntryKind,
    HardState,
    LogIndex,
    NodeId,
    Snapshot,
    SnapshotMeta,
    Term,
)


@dataclass
class Recorder:
    """Wraps os.* calls and logs those touching ``root`` as abstract operations."""

    root: Path
    ops: list[tuple[Any, ...]] = field(default_factory=list)
    fds: dict[int, tuple[int | None, str]] = field(default_factory=dict)  # fd -> (inode, name)
    inodes: dict[str, int] = field(default_factory=dict)  # current name -> inode
    next_inode: int = 0

    def name(self, path: Any) -> str | None:
        p = Path(os.fsdecode(path))
        if p == self.root:
            return ""
        return p.name if p.parent == self.root else None

    def preload(self) -> None:
        """Record the files already in ``root`` as durably created and written."""
        for name in sorted(os.listdir(self.root)):
            self.next_inode += 1
            self.inodes[name] = self.next_inode
            data = (self.root / name).read_bytes()
            self.ops += [("create", name, self.next_inode), ("write", self.next_inode, 0, data)]
            self.ops.append(("fsync", self.next_inode))
        self.ops.append(("fsync_dir",))

    def install(self, mp: pytest.MonkeyPatch) -> None:
        real = {n: getattr(os, n) for n in
                ("open", "pwrite", "ftruncate", "fsync", "fdatasync", "replace", "unlink", "close")}  # fmt: skip

        def open_(path: Any, flags: int, mode: int = 0o777, **kw: Any) -> int:
            name = self.name(path)
            existed = os.path.exists(path)
            fd: int = real["open"](path, flags, mode, **kw)
            if name is not None:
                if name == "":
                    self.fds[fd] = (None, "")
                else:
                    if not existed:
                        self.next_inode += 1
                        self.inodes[name] = self.next_inode
                        self.ops.append(("create", name, self.next_inode))
                    self.fds[fd] = (self.inodes[name], name)
            return fd

        def pwrite(fd: int, data: Any, offset: int) -> int:
            n: int = real["pwrite"](fd, data, offset)
            if fd in self.fds:
                self.ops.append(("write", self.fds[fd][0], offset, bytes(memoryview(data)[:n])))
            return n

        def ftruncate(fd: int, size: int) -> None:
            real["ftruncate"](fd, size)
            if fd in self.fds:
                self.ops.append(("trunc", self.fds[fd][0], size))

        def sync(fd: int, kind: str) -> None:
            real[kind](fd)
            if fd in self.fds:
                inode = self.fds[fd][0]
                self.ops.append(("fsync_dir",) if inode is None else ("fsync", inode))

        def replace(src: Any, dst: Any) -> None:
            real["replace"](src, dst)
            a, b = self.name(src), self.name(dst)
            if a is not None and b is not None:
                self.inodes[b] = self.inodes.pop(a)
                self.ops.append(("rename", a, b))

        def unlink(path: Any, **kw: Any) -> None:
            real["unlink"](path, **kw)
            name = self.name(path)
            if name is not None:
                self.inodes.pop(name, None)
                self.ops.append(("unlink", name))

        def close(fd: int) -> None:
            self.fds.pop(fd, None)
            real["close"](fd)

        mp.setattr(os, "open", open_)
        mp.setattr(os, "pwrite", pwrite)
        mp.setattr(os, "ftruncate", ftruncate)
        mp.setattr(os, "fsync", lambda fd: sync(fd, "fsync"))
        mp.setattr(os, "fdatasync", lambda fd: sync(fd, "fdatasync"))
        mp.setattr(os, "replace", replace)
        mp.setattr(os, "unlink", unlink)
        mp.setattr(os, "close", close)

    def ack(self, log: dict[int, Entry], upto: int, hs: HardState) -> None:
        self.ops.append(("ack", {i: log[i] for i in log if i <= upto}, upto, hs))


def materialize(ops: list[tuple[Any, ...]], crash_at: int, rng: random.Random, into: Path) -> None:
    """Write the directory a crash just before ``ops[crash_at]`` may leave behind."""
    ops = ops[:crash_at]
    last_dir_sync = max((k for k, op in enumerate(ops) if op[0] == "fsync_dir"), default=-1)
    last_file_sync: dict[int, int] = {}
    for k, op in enumerate(ops):
        if op[0] == "fsync":
            last_file_sync[op[1]] = k
    names: dict[str, int] = {}
    for k, op in enumerate(ops):  # namespace: durable ops, plus any subset of the others
        if op[0] not in ("create", "rename", "unlink"):
            continue
        if k > last_dir_sync and rng.random() < 0.5:
            continue
        if op[0] == "create":
            names[op[1]] = op[2]
        elif op[0] == "rename" and op[1] in names:
            names[op[2]] = names.pop(op[1])
        elif op[0] == "unlink":
            names.pop(op[1], None)
    contents: dict[int, bytearray] = {}
    stopped: set[int] = set()
    for k, op in enumerate(ops):  # contents: durable ops, then an in-order prefix, maybe torn
        if op[0] not in ("write", "trunc") or op[1] in stopped:
            continue
        buf = contents.setdefault(op[1], bytearray())
        durable = k < last_file_sync.get(op[1], -1)
        if not durable and rng.random() < 0.3:
            stopped.add(op[1])
            if op[0] == "write" and rng.random() < 0.5:  # torn: a prefix of this write lands
                op = (*op[:3], op[3][: rng.randrange(len(op[3]) + 1)])
            else:
                continue
        if op[0] == "write":
            _, _, offset, data = op
            if len(buf) < offset:
                buf.extend(b"\0" * (offset - len(buf)))
            buf[offset : offset + len(data)] = data
        else:
            del buf[op[2] :]
    into.mkdir()
    for name, inode in names.items():
        if name:
            (into / name).write_bytes(bytes(contents.get(inode, b"")))


SEG = 4096


def entry(i: int, term: int) -> Entry:
    return Entry(Term(term), LogIndex(i), EntryKind.NORMAL, bytes([i % 256]) * (40 + i * 7 % 300))


def workload(directory: Path, rec: Recorder) -> None:
    log: dict[int, Entry] = {}
    term, last = 1, 0
    hs = HardState()
    store = LogStore.open(directory, segment_bytes_max=SEG)
    rng = random.Random(7)
    for step in range(60):
        r = rng.random()
        if r < 0.15 and last > 5 and step < 50:  # a new leader overwrites a suffix
            term += 1
            at = rng.randint(max(store.first_index(), last - 6), last)
            batch = [entry(i, term) for i in range(at, at + rng.randint(1, 4))]
            rec.ops.append(("truncate", at))  # Raft may drop acknowledged, uncommitted entries
            for i in list(log):
                if i >= at:
                    del log[i]
        else:
            term += rng.random() < 0.1
            batch = [entry(i, term) for i in range(last + 1, last + 1 + rng.randint(1, 9))]
        store.append(batch)
        log.update({e.index: e for e in batch})
        last = batch[-1].index
        if rng.random() < 0.4:
            hs = HardState(Term(term), NodeId("n1"), LogIndex(max(0, last - 3)))
            rec.ops.append(("hs", None, None, hs))  # before its writes: a crash may follow any
            store.save_hard_state(hs)
        if rng.random() < 0.5:
            store.sync()
            rec.ack(log, last, hs)
        if step == 52:  # a snapshot from the leader that our log does not match: reset
            at = last + 3
            term += 1
            rec.ops.append(("truncate", 0))  # every entry may go
            store.save_snapshot(Snapshot(SnapshotMeta(LogIndex(at), Term(term), ConfState()), b"L"))
            log.clear()
            last = at
        if step == 40:
            at = last - 10
            store.save_snapshot(
                Snapshot(SnapshotMeta(LogIndex(at), log[at].term, ConfState()), b"s")
            )
            for i in list(log):
                if i <= at:
                    del log[i]
    store.sync()
    rec.ack(log, last, hs)
    store.close()


class Ops(list[tuple[Any, ...]]):
    def __repr__(self) -> str:  # keep hypothesis' failure reports readable
        return f"<{len(self)} recorded operations>"


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Any, ...]]:
    root = tmp_path_factory.mktemp("recorded") / "log"
    root.mkdir()
    rec = Recorder(root)
    mp = pytest.MonkeyPatch()
    try:
        rec.install(mp)
        workload(root, rec)
    finally:
        mp.undo()
    kinds = {op[0] for op in rec.ops}
    assert {"create", "write", "trunc", "fsync", "fsync_dir", "rename", "unlink", "ack"} <= kinds
    return Ops(rec.ops)


def check_crash_state(
    recording: list[tuple[Any, ...]],
    tmp_path_factory: pytest.TempPathFactory,
    where: float,
    seed: int,
    start: int = 0,
) -> None:
    """Crash somewhere after ``recording[start]``, rebuild the disk, reopen, check."""
    crash_at = start + int(where * (len(recording) - start))
    into = tmp_path_factory.mktemp("crash") / "log"
    materialize(recording, crash_at, random.Random(seed), into)
    acks = [(k, op) for k, op in enumerate(recording[:crash_at]) if op[0] == "ack"]
    with LogStore.open(into, fsync=False) as s:
        first, last = s.first_index(), s.last_index()
        got = {e.index: e for e in s.entries(first, last + 1)}
        hs = s.hard_state()
    if not acks:
        return
    k, (_, acked_log, acked, acked_hs) = acks[-1]
    for op in recording[k:crash_at]:
        if op[0] == "truncate":
            acked = min(acked, op[1] - 1)
    assert last >= acked, f"acknowledged up to {acked}, recovered only {last}"
    for i in range(first, acked + 1):
        assert got[i] == acked_log[i], f"entry {i} differs from the acknowledged one"
    saved_since = [op[3] for op in recording[k:crash_at] if op[0] == "hs"]
    assert hs == acked_hs or hs in saved_since


HEALTH = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


@settings(max_examples=300, deadline=None, suppress_health_check=HEALTH)
@given(where=st.floats(0, 1), seed=st.integers(0, 2**32))
def test_any_crash_state_keeps_everything_acknowledged(
    recording: list[tuple[Any, ...]],
    tmp_path_factory: pytest.TempPathFactory,
    where: float,
    seed: int,
) -> None:
    check_crash_state(recording, tmp_path_factory, where, seed)


@pytest.mark.slow
@settings(max_examples=5000, deadline=None, suppress_health_check=HEALTH)
@given(where=st.floats(0, 1), seed=st.integers(0, 2**32))
def test_any_crash_state_keeps_everything_acknowledged_long(
    recording: list[tuple[Any, ...]],
    tmp_path_factory: pytest.TempPathFactory,
    where: float,
    seed: int,
) -> None:
    check_crash_state(recording, tmp_path_factory, where, seed)


@settings(max_examples=100, deadline=None, suppress_health_check=HEALTH)
@given(
    where=st.floats(0, 1),
    seed=st.integers(0, 2**32),
    where2=st.floats(0, 1),
    seed2=st.integers(0, 2**32),
)
def test_crash_during_recovery_and_after(
    recording: list[tuple[Any, ...]],
    tmp_path_factory: pytest.TempPathFactory,
    where: float,
    seed: int,
    where2: float,
    seed2: int,
) -> None:
    """Open a crash state (recovery truncates, unlinks, discards), keep writing, crash
    again anywhere, including inside that recovery: what open() returned counts as
    acknowledged, as its contract says."""
    first = tmp_path_factory.mktemp("first") / "log"
    materialize(recording, int(where * len(recording)), random.Random(seed), first)
    rec = Recorder(first)
    rec.preload()
    preloaded = len(rec.ops)  # the crash comes after these: they stand for what is on disk
    mp = pytest.MonkeyPatch()
    try:
        rec.install(mp)
        store = LogStore.open(first, segment_bytes_max=SEG)
        lo, last = store.first_index(), store.last_index()
        log = {e.index: e for e in store.entries(lo, last + 1)}
        rec.ack(log, last, store.hard_state())
        term = store.term(last)
        for n in (3, 5):
            batch = [entry(i, term) for i in range(last + 1, last + 1 + n)]
            store.append(batch)
            store.sync()
            log.update({e.index: e for e in batch})
            last += n
            rec.ack(log, last, store.hard_state())
        store.close()
    finally:
        mp.undo()
    check_crash_state(Ops(rec.ops), tmp_path_factory, where2, seed2, start=preloaded)
