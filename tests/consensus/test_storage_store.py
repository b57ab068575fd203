"""LogStore API: round trips, suffix overwrite, rollover, compaction, snapshots, restart."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from colonymesh.consensus.storage import (
    LogCompactedError,
    LogStore,
    LogUnavailableError,
    StorageUsageError,
    StoreLockedError,
)
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


def ent(
    index: int, term: int, data: bytes | None = None, kind: EntryKind = EntryKind.NORMAL
) -> Entry:
    return Entry(
        Term(term), LogIndex(index), kind, f"cmd-{index}-{term}".encode() if data is None else data
    )


def run(lo: int, hi: int, term: int, size: int = 0) -> list[Entry]:
    return [ent(i, term, bytes([i % 251]) * size if size else None) for i in range(lo, hi)]


def snap(index: int, term: int, data: bytes = b"state") -> Snapshot:
    conf = ConfState(voters=(NodeId("a"), NodeId("b")), learners=(NodeId("c"),))
    return Snapshot(SnapshotMeta(LogIndex(index), Term(term), conf), data)


def segment_files(d: Path) -> list[str]:
    return sorted(n for n in os.listdir(d) if n.endswith(".seg"))


def test_empty_store(tmp_path: Path) -> None:
    with LogStore.open(tmp_path) as s:
        assert (s.first_index(), s.last_index()) == (1, 0)
        assert s.term(0) == 0
        assert s.entries(1, 1) == []
        assert s.hard_state() == HardState()
        assert s.load_snapshot() is None
        st = s.initial_state()
        assert (st.hard_state, st.snapshot, st.entries) == (HardState(), None, ())
        with pytest.raises(LogUnavailableError):
            s.term(1)


def test_round_trip_and_restart(tmp_path: Path) -> None:
    entries = [
        *run(1, 101, 1),
        ent(101, 2, b"", EntryKind.EMPTY),
        ent(102, 2, b"\x00" * 5000, EntryKind.CONF_CHANGE),
    ]
    with LogStore.open(tmp_path) as s:
        s.append(entries[:50])
        s.append(entries[50:])
        assert s.sync() == 102
        assert s.entries(1, 103) == entries
        assert s.entries(40, 60) == entries[39:59]
        assert [s.term(i) for i in (1, 100, 101, 102)] == [1, 1, 2, 2]
        s.save_hard_state(HardState(Term(2), NodeId("n1"), LogIndex(100)))
        s.sync()
    with LogStore.open(tmp_path) as s:
        st = s.initial_state()
        assert st.entries == tuple(entries)
        assert st.hard_state == HardState(Term(2), NodeId("n1"), LogIndex(100))
        assert s.durable_index() == 102
        s.append([ent(103, 3)])  # appending after a restart continues the same segment
        assert s.entries(102, 104) == [entries[-1], ent(103, 3)]


def test_entries_max_bytes(tmp_path: Path) -> None:
    with LogStore.open(tmp_path, segment_bytes_max=4096) as s:
        s.append(run(1, 51, 1, size=100))  # 132 bytes per record, spread over segments
        assert len(s.entries(1, 51, max_bytes=132 * 10)) == 10
        assert len(s.entries(1, 51, max_bytes=132 * 10 + 131)) == 10
        assert [e.index for e in s.entries(5, 51, max_bytes=1)] == [5]  # at least one
        assert len(s.entries(1, 51, max_bytes=10**9)) == 50
        got = s.entries(20, 51, max_bytes=132 * 25)  # crosses segment boundaries
        assert [e.index for e in got] == list(range(20, 45))


def test_overwrite_suffix(tmp_path: Path) -> None:
    with LogStore.open(tmp_path) as s:
        s.append(run(1, 11, 1))
        s.sync()
        s.append(run(6, 9, 2))  # a new leader's conflicting entries from 6
        assert s.last_index() == 8
        assert [s.term(i) for i in range(1, 9)] == [1] * 5 + [2] * 3
        assert s.durable_index() == 5
        assert s.statistics().truncations == 1
    with LogStore.open(tmp_path) as s:
        assert s.entries(1, 9) == run(1, 6, 1) + run(6, 9, 2)


def test_identical_prefix_is_not_rewritten_and_log_ends_at_batch(tmp_path: Path) -> None:
    with LogStore.open(tmp_path) as s:
        s.append(run(1, 11, 1))
        s.append(run(3, 11, 1))  # a duplicate: nothing changes
        assert s.statistics().truncations == 0
        assert s.last_index() == 10
        s.append(run(3, 6, 1))  # same terms, shorter: the log ends where the batch ends
        assert s.last_index() == 5
        assert s.entries(1, 6) == run(1, 6, 1)


def test_append_contract_violations(tmp_path: Path) -> None:
    with LogStore.open(tmp_path, entry_bytes_max=100) as s:
        s.append(run(1, 4, 2))
        with pytest.raises(StorageUsageError, match="gap"):
            s.append([ent(6, 2)])
        with pytest.raises(StorageUsageError, match="contiguous"):
            s.append([ent(4, 2), ent(6, 2)])
        with pytest.raises(StorageUsageError, match="term"):
            s.append([ent(4, 1)])
        with pytest.raises(StorageUsageError, match="contiguous or term"):
            s.append([ent(4, 3), ent(5, 2)])
        with pytest.raises(StorageUsageError, match="limit"):
            s.append([ent(4, 2, b"x" * 101)])
        with pytest.raises(StorageUsageError, match="must be bytes"):
            s.append([Entry(Term(2), LogIndex(4), EntryKind.NORMAL, bytearray(b"x"))])  # type: ignore[arg-type]
        with pytest.raises(StorageUsageError, match="kind"):
            s.append([Entry(Term(2), LogIndex(4), 9, b"x")])  # type: ignore[arg-type]
        assert s.last_index() == 3  # nothing was written


def test_reads_outside_the_log(tmp_path: Path) -> None:
    with LogStore.open(tmp_path) as s:
        s.append(run(1, 21, 1))
        s.save_snapshot(snap(10, 1))
        assert s.first_index() == 11
        assert s.term(10) == 1
        with pytest.raises(LogCompactedError):
            s.term(9)
        with pytest.raises(LogCompactedError):
            s.entries(10, 12)
        with pytest.raises(LogUnavailableError):
            s.entries(11, 22)
        with pytest.raises(StorageUsageError):
            s.entries(15, 14)


def test_segment_rollover(tmp_path: Path) -> None:
    with LogStore.open(tmp_path, segment_bytes_max=4096) as s:
        for lo in range(1, 301, 30):
            s.append(run(lo, lo + 30, 1, size=200))  # 232-byte records: ~17 per segment
        s.sync()
        files = segment_files(tmp_path)
        assert len(files) == s.statistics().segments >= 17
        assert all(os.path.getsize(tmp_path / f) <= 4096 for f in files)
        assert files[0] == f"log-{1:020d}.seg"
    with LogStore.open(tmp_path, segment_bytes_max=4096) as s:
        assert s.entries(1, 301) == run(1, 301, 1, size=200)


def test_entry_bigger_than_a_segment_gets_its_own(tmp_path: Path) -> None:
    big = ent(2, 1, b"B" * 10_000)
    with LogStore.open(tmp_path, segment_bytes_max=4096) as s:
        s.append([ent(1, 1), big, ent(3, 1)])
        s.sync()
    with LogStore.open(tmp_path, segment_bytes_max=4096) as s:
        assert s.entries(1, 4) == [ent(1, 1), big, ent(3, 1)]
        assert len(segment_files(tmp_path)) == 3


def test_truncation_across_segments(tmp_path: Path) -> None:
    with LogStore.open(tmp_path, segment_bytes_max=4096) as s:
        s.append(run(1, 201, 1, size=100))
        s.sync()
        before = len(segment_files(tmp_path))
        s.append(run(30, 35, 2))
        assert len(segment_files(tmp_path)) < before
        s.append(run(35, 100, 2, size=100))
        s.sync()
    with LogStore.open(tmp_path, segment_bytes_max=4096) as s:
        assert s.entries(1, 100) == run(1, 30, 1, size=100) + run(30, 35, 2) + run(
            35, 100, 2, size=100
        )


def test_truncate_everything(tmp_path: Path) -> None:
    with LogStore.open(tmp_path, segment_bytes_max=4096) as s:
        s.append(run(1, 101, 1, size=100))
        s.append(run(1, 3, 5))
        assert (s.first_index(), s.last_index()) == (1, 2)
    with LogStore.open(tmp_path) as s:
        assert s.entries(1, 3) == run(1, 3, 5)


def test_snapshot_keeps_matching_log_and_frees_covered_segments(tmp_path: Path) -> None:
    with LogStore.open(tmp_path, segment_bytes_max=4096) as s:
        s.append(run(1, 201, 1, size=100))
        s.sync()
        n = len(segment_files(tmp_path))
        with pytest.raises(StorageUsageError):
            s.compact(50)  # no snapshot yet
        s.save_snapshot(snap(150, 1))
        assert (s.first_index(), s.last_index()) == (151, 200)
        assert s.entries(151, 201) == run(151, 201, 1, size=100)
        remaining = segment_files(tmp_path)
        assert len(remaining) < n
        assert int(remaining[0][4:24]) <= 151  # the segment holding 151 stays
        with pytest.raises(StorageUsageError):
            s.compact(151)
        assert s.compact(150) == 0  # save_snapshot compacted already
        s.append(run(201, 210, 2))
        s.sync()
    with LogStore.open(tmp_path, segment_bytes_max=4096) as s:
        st = s.initial_state()
        assert st.snapshot == snap(150, 1)
        assert st.conf == snap(150, 1).meta.conf
        assert st.entries == tuple(run(151, 201, 1, size=100) + run(201, 210, 2))
        assert s.first_index() == 151


def test_compact_frees_segments_left_by_a_snapshot_install_crash(tmp_path: Path) -> None:
    """compact() on its own: the snapshot is durable but its compaction never ran."""
    from colonymesh.consensus.storage.snapshots import save_snapshot_file

    with LogStore.open(tmp_path, segment_bytes_max=4096) as s:
        s.append(run(1, 201, 1, size=100))
        s.sync()
    n = len(segment_files(tmp_path))
    save_snapshot_file(tmp_path / "snapshot", snap(150, 1), fsync=False)
    with LogStore.open(tmp_path, segment_bytes_max=4096) as s:
        # open() already drops segments wholly under the snapshot ...
        assert len(segment_files(tmp_path)) < n
        assert s.compact(150) == 0  # ... so there is nothing left to compact
        assert s.entries(151, 201) == run(151, 201, 1, size=100)


def test_snapshot_from_leader_discards_divergent_log(tmp_path: Path) -> None:
    with LogStore.open(tmp_path, segment_bytes_max=4096) as s:
        s.append(run(1, 101, 1, size=100))
        s.save_snapshot(snap(80, 3))  # term 3 at 80: our log disagrees
        assert (s.first_index(), s.last_index()) == (81, 80)
        assert segment_files(tmp_path) == [f"log-{81:020d}.seg"]
        s.append(run(81, 90, 3))
        s.sync()
    with LogStore.open(tmp_path) as s:
        assert s.initial_state().entries == tuple(run(81, 90, 3))


def test_snapshot_beyond_the_log(tmp_path: Path) -> None:
    with LogStore.open(tmp_path) as s:
        s.append(run(1, 11, 1))
        s.save_snapshot(snap(500, 4))
        assert (s.first_index(), s.last_index(), s.term(500)) == (501, 500, 4)
        with pytest.raises(StorageUsageError, match="older"):
            s.save_snapshot(snap(400, 4))
        s.append(run(501, 503, 4))
        assert s.entries(501, 503) == run(501, 503, 4)
        s.append(run(1, 600, 4))  # entries under the snapshot are skipped
        assert s.last_index() == 599


def test_interrupted_snapshot_install_is_finished_on_open(tmp_path: Path) -> None:
    from colonymesh.consensus.storage.snapshots import save_snapshot_file

    with LogStore.open(tmp_path) as s:
        s.append(run(1, 51, 1))
        s.sync()
    save_snapshot_file(tmp_path / "snapshot", snap(30, 2), fsync=False)  # log not discarded
    with LogStore.open(tmp_path) as s:
        assert (s.first_index(), s.last_index()) == (31, 30)


def test_open_removes_segments_left_by_an_interrupted_compaction(tmp_path: Path) -> None:
    from colonymesh.consensus.storage.snapshots import save_snapshot_file

    with LogStore.open(tmp_path, segment_bytes_max=4096) as s:
        s.append(run(1, 201, 1, size=100))
        s.sync()
    save_snapshot_file(tmp_path / "snapshot", snap(150, 1), fsync=False)
    files = segment_files(tmp_path)
    os.unlink(tmp_path / files[2])  # a hole among covered segments, as a crash may leave
    with LogStore.open(tmp_path, segment_bytes_max=4096) as s:
        assert s.entries(151, 201) == run(151, 201, 1, size=100)
        assert files[0] not in segment_files(tmp_path)


def test_hard_state_latest_wins(tmp_path: Path) -> None:
    with LogStore.open(tmp_path) as s:
        for t in range(1, 20):
            s.save_hard_state(
                HardState(Term(t), NodeId(f"n{t % 3}") if t % 2 else None, LogIndex(t * 2))
            )
            if t % 4 == 0:
                s.sync()
        s.sync()
    with LogStore.open(tmp_path) as s:
        assert s.hard_state() == HardState(Term(19), NodeId("n1"), LogIndex(38))


def test_directory_is_locked(tmp_path: Path) -> None:
    s = LogStore.open(tmp_path)
    with pytest.raises(StoreLockedError):
        LogStore.open(tmp_path)
    s.close()
    s.close()  # idempotent
    with pytest.raises(StorageUsageError):
        s.last_index()
    LogStore.open(tmp_path).close()


def test_reads_run_while_another_thread_appends_and_syncs(tmp_path: Path) -> None:
    with LogStore.open(tmp_path, segment_bytes_max=8192) as s:
        s.append(run(1, 11, 1))
        errors: list[BaseException] = []
        done = threading.Event()

        def writer() -> None:
            try:
                for lo in range(11, 1011, 10):
                    s.append(run(lo, lo + 10, 1, size=50))
                    s.sync()
            except BaseException as exc:
                errors.append(exc)
            finally:
                done.set()

        t = threading.Thread(target=writer)
        t.start()
        reads = 0
        while not done.is_set():
            last = s.last_index()
            got = s.entries(max(1, last - 20), last + 1)
            assert [e.index for e in got] == list(range(max(1, last - 20), last + 1))
            reads += 1
        t.join()
        assert not errors
        assert s.last_index() == 1010
        assert reads > 0


def test_fsync_off_still_round_trips(tmp_path: Path) -> None:
    with LogStore.open(tmp_path, fsync=False, segment_bytes_max=4096) as s:
        s.append(run(1, 101, 1, size=64))
        s.sync()
        assert s.statistics().fsyncs == 0
    with LogStore.open(tmp_path, fsync=False) as s:
        assert s.entries(1, 101) == run(1, 101, 1, size=64)


async def test_trio_driver_group_commit(tmp_path: Path) -> None:
    """The intended driver pattern: a committer task takes every pending proposal, appends
    and syncs them in a worker thread (one fsync for the lot), then acknowledges them."""
    import trio

    store = LogStore.open(tmp_path)
    send, receive = trio.open_memory_channel[bytes](1000)
    acked: list[int] = []

    async def committer() -> None:
        nxt = 1
        async with receive:
            async for first in receive:
                batch = [first]
                while True:
                    try:
                        batch.append(receive.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                ents = [
                    Entry(Term(1), LogIndex(nxt + k), EntryKind.NORMAL, d)
                    for k, d in enumerate(batch)
                ]
                nxt += len(batch)

                def persist(ents: list[Entry] = ents) -> LogIndex:
                    store.append(ents)
                    return store.sync()

                durable = await trio.to_thread.run_sync(persist)
                assert durable == ents[-1].index
                acked.extend(e.index for e in ents)

    async def proposer(k: int) -> None:
        for i in range(50):
            await send.send(b"p%d-%d" % (k, i))
            await trio.sleep(0)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(committer)
        async with send, trio.open_nursery() as proposers:
            for k in range(4):
                proposers.start_soon(proposer, k)

    stats = store.statistics()
    store.close()
    assert acked == list(range(1, 201))
    assert stats.syncs < 200  # proposals were grouped into fewer fsyncs
    with LogStore.open(tmp_path) as s:
        assert s.last_index() == 200


def test_failed_fsync_fails_the_store_until_reopened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from colonymesh.consensus.storage import StoreFailedError

    s = LogStore.open(tmp_path)
    s.append(run(1, 6, 1))
    s.sync()
    s.append(run(6, 9, 1))

    def eio(fd: int) -> None:
        raise OSError(errno.EIO, "simulated I/O error")

    monkeypatch.setattr(os, "fdatasync", eio)
    with pytest.raises(StoreFailedError):
        s.sync()
    monkeypatch.undo()
    # A retry could "succeed" on pages the kernel already dropped: refuse everything.
    with pytest.raises(StoreFailedError):
        s.sync()
    with pytest.raises(StoreFailedError):
        s.append(run(9, 10, 1))
    with pytest.raises(StoreFailedError):
        s.entries(1, 2)
    s.close()
    with LogStore.open(tmp_path) as s:  # recovery reads what is really on disk
        assert s.entries(1, 6) == run(1, 6, 1)
        assert s.durable_index() == s.last_index() >= 5


def test_a_commit_index_beyond_the_durable_log_is_lowered_on_restart(tmp_path: Path) -> None:
    """The hard state's page can reach the disk before the log's fdatasync: after a power
    cut, the commit index may name entries that never became durable (found in review)."""
    with LogStore.open(tmp_path) as s:
        s.append(run(1, 4, 1))
        s.sync()
        # what the disk holds if the hard state of a later sync was written back
        # but entries 4..5 were not
        s.save_hard_state(HardState(Term(1), NodeId("a"), LogIndex(5)))
        s.sync()
    with LogStore.open(tmp_path) as s:
        recovered = s.initial_state()
        assert recovered.hard_state == HardState(Term(1), NodeId("a"), LogIndex(3))
        assert [e.index for e in recovered.entries] == [1, 2, 3]
