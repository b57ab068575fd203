"""Hard state and snapshot files: atomic replacement, torn slots, leftovers, corruption."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from colonymesh.consensus.storage import (
    CorruptHardStateError,
    CorruptLogError,
    CorruptSnapshotError,
    LogStore,
)
from colonymesh.consensus.storage.hardstate import SLOT_BYTES, HardStateFile
from colonymesh.consensus.storage.snapshots import encode_snapshot
from colonymesh.consensus.types import (
    ConfState,
    HardState,
    LogIndex,
    NodeId,
    Snapshot,
    SnapshotMeta,
    Term,
)


def hs(term: int, vote: str | None = "a", commit: int = 0) -> HardState:
    return HardState(Term(term), None if vote is None else NodeId(vote), LogIndex(commit))


def garble(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(b"\xde\xad\xbe\xef")


def test_unsynced_hard_state_writes_never_touch_the_durable_slot(tmp_path: Path) -> None:
    p = tmp_path / "hardstate"
    f = HardStateFile.open(p, fsync=True)
    f.save(hs(1))
    f.sync(fsync=True)  # hs(1) durable
    for t in range(2, 6):  # several unsynced saves: all into the same, other slot
        f.save(hs(t))
    f.close()
    durable = p.read_bytes()
    # Tear each slot in turn: tearing the unsynced slot falls back to hs(1), tearing the
    # other (durable) one is impossible in a real crash, and then hs(5) is what is left.
    states = set()
    for slot in (0, 1):
        p.write_bytes(durable)
        garble(p, slot * SLOT_BYTES + 20)
        g = HardStateFile.open(p, fsync=False)
        states.add(g.state)
        g.close()
    assert states == {hs(1), hs(5)}


def test_hard_state_alternates_slots_after_each_sync(tmp_path: Path) -> None:
    p = tmp_path / "hardstate"
    f = HardStateFile.open(p, fsync=True)
    for t in range(1, 6):
        f.save(hs(t, commit=t))
        f.sync(fsync=True)
    f.close()
    # Both slots hold valid, consecutive states; damaging the newer falls back one step.
    for slot in (0, 1):
        data = p.read_bytes()
        garble(p, slot * SLOT_BYTES + 20)
        g = HardStateFile.open(p, fsync=False)
        assert g.state in (hs(4, commit=4), hs(5, commit=5))
        g.close()
        p.write_bytes(data)


def test_both_hard_state_slots_bad_is_an_error(tmp_path: Path) -> None:
    LogStore.open(tmp_path).close()
    garble(tmp_path / "hardstate", 10)
    garble(tmp_path / "hardstate", SLOT_BYTES + 10)  # the never-written slot is invalid anyway
    with pytest.raises(CorruptHardStateError) as err:
        LogStore.open(tmp_path)
    assert err.value.path == tmp_path / "hardstate"


def snap(index: int, term: int, data: bytes) -> Snapshot:
    return Snapshot(SnapshotMeta(LogIndex(index), Term(term), ConfState((NodeId("a"),))), data)


def test_snapshot_replacement_is_atomic(tmp_path: Path) -> None:
    with LogStore.open(tmp_path) as s:
        s.save_snapshot(snap(10, 1, b"old" * 1000))
    # A crash while writing the next snapshot leaves a partial temporary file behind.
    partial = b"".join(encode_snapshot(snap(20, 2, b"new" * 1000)))[:1500]
    (tmp_path / "snapshot.tmp").write_bytes(partial)
    with LogStore.open(tmp_path) as s:
        assert s.load_snapshot() == snap(10, 1, b"old" * 1000)
        assert not (tmp_path / "snapshot.tmp").exists()
        s.save_snapshot(snap(20, 2, b"new" * 1000))
        assert s.load_snapshot() == snap(20, 2, b"new" * 1000)
    assert sorted(os.listdir(tmp_path)) == [
        "LOCK",
        "hardstate",
        f"log-{21:020d}.seg",
        "snapshot",
    ]


def test_damaged_snapshot_is_an_error(tmp_path: Path) -> None:
    with LogStore.open(tmp_path) as s:
        s.save_snapshot(snap(10, 1, b"state" * 100))
    garble(tmp_path / "snapshot", 100)
    with pytest.raises(CorruptSnapshotError):
        LogStore.open(tmp_path)


def test_diagnose_reports_damage_without_repairing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from colonymesh.consensus.storage.diagnose import main
    from colonymesh.consensus.types import Entry, EntryKind

    with LogStore.open(tmp_path, segment_bytes_max=4096) as s:
        s.append([Entry(Term(1), LogIndex(i), EntryKind.NORMAL, b"x" * 300) for i in range(1, 30)])
        s.save_snapshot(snap(5, 1, b"s"))
        s.sync()
    seg = tmp_path / f"log-{13:020d}.seg"
    garble(seg, 400)
    before = seg.read_bytes()
    assert main([str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    damaged = next(x for x in report["segments"] if x["file"] == seg.name)
    assert damaged["problem"]["offset"] == 32 + 332  # the second record of the segment
    assert damaged["problem"]["intact_record_follows_at"] == 32 + 2 * 332
    assert report["snapshot"]["index"] == 5
    assert seg.read_bytes() == before  # read-only
    with pytest.raises(CorruptLogError) as err:
        LogStore.open(tmp_path)
    assert (err.value.path, err.value.offset) == (seg, 364)
    assert main([str(tmp_path / "nope")]) == 2


def test_missing_hard_state_next_to_a_log_is_an_error(tmp_path: Path) -> None:
    LogStore.open(tmp_path).close()
    os.unlink(tmp_path / "hardstate")
    with pytest.raises(CorruptHardStateError, match="missing"):
        LogStore.open(tmp_path)  # starting afresh would forget the vote
