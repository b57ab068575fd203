"""The durable Raft log: :class:`LogStore`, the only part of ``consensus`` that touches disk.

What it owns, in one directory::

    LOCK                        flock'ed while open (one store per directory)
    hardstate                   term, vote, commit: two checksummed slots (hardstate.py)
    snapshot                    the latest snapshot, replaced atomically (snapshots.py)
    log-<first index>.seg ...   the log: segment files of checksummed records
                                (records.py, segments.py)

How it works. ``append`` encodes a batch of entries into one buffer and
writes it with one ``pwrite`` at the end of the newest segment, rolling over
to a new segment file when ``segment_bytes_max`` would be exceeded. An
in-memory index (record offsets per segment, term runs) answers ``term`` and
locates ``entries`` without reading the disk; reads ``pread`` the byte range
and validate every record. Nothing is fsynced on ``append``: the driver
appends as many batches as it likes, then calls ``sync`` once (group commit).

Durability contract (with ``fsync=True``):

* ``append`` and ``save_hard_state`` are NOT durable when they return.
  ``sync()`` makes everything appended or saved before it durable: it
  fdatasyncs the dirty segment(s), fsyncs the directory if a segment was
  created, then fdatasyncs the hard state. The driver must call ``sync()``
  (and see it return) before it sends any message or acknowledges any
  proposal that depends on those writes — Raft's persist-before-send rule.
  ``sync()`` returns the last index that is now durable.
* After a crash, the log is the durable log plus possibly some of what was
  appended after the last ``sync``, always as a prefix-closed log: a torn
  final record is truncated away on open (and logged). Everything ``sync``ed
  survives; damage that a crash cannot explain (a bad record followed by
  intact ones) raises :class:`CorruptLogError` naming file and offset; it is
  never silently dropped.
* ``save_snapshot``, ``compact`` and a conflicting ``append`` (one that
  truncates a suffix) are durable when they return: they fsync the files and
  the directory themselves, in an order that leaves a consistent state at
  every crash point (see each method).
* ``open()`` makes what it recovered durable before returning (a crashed
  process may have left unsynced writes in the page cache only; a restarted
  node will vouch for them), so after ``open()``, ``durable_index() ==
  last_index()``.
* A failed write or fsync raises :class:`StoreFailedError` and the store
  refuses all further use: retrying an fsync after the kernel dropped the
  dirty pages can falsely succeed. Reopening recovers from the disk.
* With ``fsync=False`` (tests, benchmarks of the upper layers) nothing is
  ever fsynced and a machine crash may lose anything; a process crash still
  loses nothing written, as the page cache survives it.

Invariants: indices in the log are contiguous from ``first_index()`` to
``last_index()``; terms never decrease; ``first_index() == snapshot index
+ 1`` (1 with no snapshot); every segment but the newest is fsynced before
the next one receives a byte, so only the newest can have a torn tail.

Driving it from a Raft ``Ready``: ``save_snapshot(rd.snapshot)`` if any,
``append(rd.entries)``, ``save_hard_state(rd.hard_state)`` if any, then, if
``rd.must_sync``, one ``sync()`` — possibly for several Readys at once — before
sending ``rd.messages`` (unless ``rd.send_while_persisting``: a leader's
messages may go out while this runs) and before ``advance``. A Ready that only
moves the commit index needs no ``sync``: the next one makes it durable. On restart, ``initial_state()`` gives the ``RaftNode`` its
hard state, snapshot and entries.

Threads. All methods are thread-safe. Mutators (``append``, ``sync``,
``save_*``, ``compact``, ``close``) are serialised; readers (``entries``,
``term``, ``first_index``, ``last_index``) never wait for an fsync, so a trio
driver may run ``append`` + ``sync`` in ``trio.to_thread.run_sync`` while its
own thread keeps reading entries to send to followers.
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType

from colonymesh.consensus.storage.batch import validate_batch
from colonymesh.consensus.storage.errors import (
    CorruptHardStateError,
    LogCompactedError,
    LogUnavailableError,
    StorageUsageError,
    StoreFailedError,
    StoreLockedError,
)
from colonymesh.consensus.storage.fsutil import fsync_dir
from colonymesh.consensus.storage.hardstate import HardStateFile
from colonymesh.consensus.storage.records import (
    RECORD_DATA_MAX,
    encode_record_list,
)
from colonymesh.consensus.storage.recovery import (
    create_segment,
    discard_segments,
    recover_log,
)
from colonymesh.consensus.storage.segments import Segment, parse_segment_name
from colonymesh.consensus.storage.snapshots import load_snapshot_file, save_snapshot_file
from colonymesh.consensus.storage.terms import TermRuns
from colonymesh.consensus.types import (
    ConfState,
    Entry,
    HardState,
    LogIndex,
    Snapshot,
    SnapshotMeta,
    Term,
)

log = logging.getLogger("colonymesh.consensus.storage")

SEGMENT_BYTES_MAX_DEFAULT = 64 * 1024 * 1024
ENTRY_BYTES_MAX_DEFAULT = 64 * 1024 * 1024
HARD_STATE_FILE = "hardstate"
SNAPSHOT_FILE = "snapshot"
LOCK_FILE = "LOCK"


def _check_hard_state_present(directory: Path) -> None:
    """A log without its hard state would forget its vote: refuse, never start afresh.

    ``open`` creates the hard state (durably) before anything else, so a
    missing file next to segments or a snapshot means it was lost.
    """
    if (directory / HARD_STATE_FILE).exists():
        return
    others = [n for n in os.listdir(directory) if n == SNAPSHOT_FILE or parse_segment_name(n)]
    if others:
        raise CorruptHardStateError(
            directory / HARD_STATE_FILE, 0, f"missing, but {sorted(others)[0]} exists"
        )


@dataclass(frozen=True, slots=True)
class RecoveredState:
    """What a Raft node needs to restart: feed these to ``RaftNode(...)``.

    ``entries`` are all entries after the snapshot (``first_index()`` to
    ``last_index()``); ``conf`` is the snapshot's configuration (empty
    without a snapshot) — conf changes in ``entries`` still apply on top.
    """

    hard_state: HardState
    snapshot: Snapshot | None
    conf: ConfState
    entries: tuple[Entry, ...]


@dataclass(frozen=True, slots=True)
class StoreStatistics:
    first_index: int
    last_index: int
    durable_index: int
    segments: int
    entries_appended: int
    bytes_appended: int
    syncs: int
    fsyncs: int
    truncations: int


class LogStore:
    """A Raft log, hard state and snapshot in one directory. Open with :meth:`open`."""

    def __init__(
        self,
        directory: Path,
        *,
        segment_bytes_max: int,
        entry_bytes_max: int,
        fsync: bool,
        lock_fd: int,
        hard_state: HardStateFile,
    ) -> None:
        self._dir = directory
        self._segment_bytes_max = segment_bytes_max
        self._entry_bytes_max = entry_bytes_max
        self._fsync = fsync
        self._lock_fd = lock_fd
        self._hs = hard_state
        self._lock = threading.Lock()  # guards the in-memory index; held briefly
        self._write_lock = threading.Lock()  # serialises mutators, held across fsyncs
        self._closed = False
        self._failure: OSError | None = None
        self._snap_meta: SnapshotMeta | None = None
        self._segments: list[Segment] = []
        self._firsts: list[int] = []  # first index of each segment, for bisect
        self._base_index = 0  # the snapshot's index: entries at or below it are gone
        self._base_term = 0
        self._last_index = 0
        self._terms = TermRuns()
        self._dirty: list[Segment] = []  # segments written since the last sync
        self._dir_dirty = False  # a segment was created since the last directory fsync
        self._durable_index = 0
        self._stats = {"entries": 0, "bytes": 0, "syncs": 0, "fsyncs": 0, "truncations": 0}

    # ----------------------------------------------------------------- opening

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        *,
        segment_bytes_max: int = SEGMENT_BYTES_MAX_DEFAULT,
        entry_bytes_max: int = ENTRY_BYTES_MAX_DEFAULT,
        fsync: bool = True,
    ) -> LogStore:
        """Open (creating if needed) the store in ``directory`` and recover it."""
        if segment_bytes_max < 4096:
            raise StorageUsageError("segment_bytes_max must be at least 4096")
        if not 0 <= entry_bytes_max <= RECORD_DATA_MAX:
            raise StorageUsageError(f"entry_bytes_max must be within 0..{RECORD_DATA_MAX}")
        path = Path(directory)
        if not path.is_dir():
            path.mkdir(parents=True)
            if fsync:
                fsync_dir(path.parent)  # the new directory's own entry
        lock_fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise StoreLockedError(f"{path} is in use by another open LogStore") from None
        try:
            for leftover in (HARD_STATE_FILE + ".tmp", SNAPSHOT_FILE + ".tmp"):
                (path / leftover).unlink(missing_ok=True)
            _check_hard_state_present(path)
            hs = HardStateFile.open(path / HARD_STATE_FILE, fsync=fsync)
            store = cls(
                path,
                segment_bytes_max=segment_bytes_max,
                entry_bytes_max=entry_bytes_max,
                fsync=fsync,
                lock_fd=lock_fd,
                hard_state=hs,
            )
        except BaseException:
            os.close(lock_fd)
            raise
        try:
            store._recover()
        except BaseException:
            store._close_files()
            raise
        return store

    def _recover(self) -> None:
        snap = load_snapshot_file(self._dir / SNAPSHOT_FILE)
        if snap is not None:
            self._snap_meta = snap.meta
            self._base_index, self._base_term = snap.meta.index, snap.meta.term
        rec = recover_log(self._dir, self._snap_meta, fsync=self._fsync)
        self._segments = rec.segments
        self._firsts = [seg.first_index for seg in rec.segments]
        self._terms = rec.terms
        self._last_index = self._durable_index = rec.last_index
        if self._fsync:
            # What a crashed process wrote but never synced may still sit in the
            # page cache only. It is part of the log now (a restarted node will
            # vouch for it), so make it durable before reporting it as such.
            for seg in self._segments:
                seg.sync()
            fsync_dir(self._dir)
        log.info(
            "opened log store %s: entries %d..%d in %d segment(s), snapshot at %d",
            self._dir,
            self._base_index + 1,
            self._last_index,
            len(self._segments),
            self._base_index,
        )

    # ------------------------------------------------------------------ reads

    def first_index(self) -> LogIndex:
        with self._lock:
            self._check_open()
            return LogIndex(self._base_index + 1)

    def last_index(self) -> LogIndex:
        with self._lock:
            self._check_open()
            return LogIndex(self._last_index)

    def durable_index(self) -> LogIndex:
        """The last index known to be on stable storage (the last ``sync``)."""
        with self._lock:
            return LogIndex(self._durable_index)

    def term(self, index: int) -> Term:
        """Term of the entry at ``index``; the snapshot's term for the snapshot index."""
        with self._lock:
            self._check_open()
            if index == self._base_index:
                return Term(self._base_term)
            if index < self._base_index:
                raise LogCompactedError(index, self._base_index + 1)
            if index > self._last_index:
                raise LogUnavailableError(index, self._last_index)
            return Term(self._term_in_runs(index))

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries ``lo..hi-1``; with ``max_bytes``, as many as fit (at least one).

        An entry's size is its record size, 32 bytes plus its data.
        """
        with self._lock:
            self._check_open()
            if lo > hi:
                raise StorageUsageError(f"entries({lo}, {hi}): lo > hi")
            if lo <= self._base_index:
                raise LogCompactedError(lo, self._base_index + 1)
            if hi > self._last_index + 1:
                raise LogUnavailableError(hi - 1, self._last_index)
            out: list[Entry] = []
            budget = max_bytes
            idx = lo
            k = bisect.bisect_right(self._firsts, lo) - 1
            while idx < hi:
                seg = self._segments[k]
                end = min(hi, seg.last_index + 1)
                stop = end
                if budget is not None:
                    stop = idx
                    while stop < end:
                        size = seg.bytes_between(stop, stop + 1)
                        if size > budget and (out or stop > idx):
                            break
                        budget -= size
                        stop += 1
                out.extend(seg.read(idx, stop))
                if stop < end:
                    break
                idx = stop
                k += 1
            return out

    def load_snapshot(self) -> Snapshot | None:
        """The latest saved snapshot, read and validated from disk."""
        with self._write_lock:
            self._check_open()
            return load_snapshot_file(self._dir / SNAPSHOT_FILE)

    def hard_state(self) -> HardState:
        """The latest hard state saved (durable once ``sync`` returned)."""
        with self._write_lock:
            return self._hs.state

    def initial_state(self) -> RecoveredState:
        """Everything a Raft node needs to restart from this store."""
        snap = self.load_snapshot()
        with self._write_lock:
            first, last = self._base_index + 1, self._last_index
        ents = tuple(self.entries(first, last + 1)) if last >= first else ()
        conf = snap.meta.conf if snap is not None else ConfState()
        state = self.hard_state()
        # The hard state's page may reach the disk before the log's fdatasync does;
        # after a power cut its commit index can then name entries that never became
        # durable here. Those were never acknowledged by this node, and a commit
        # index is only what a node knows so far: lower it and learn it again.
        durable = max(last, snap.meta.index if snap is not None else 0, self._base_index)
        if state.commit > durable:
            log.warning(
                "hard state commit %d is beyond the durable log (last index %d) in %s: "
                "lowered after a crash",
                state.commit,
                durable,
                self._dir,
            )
            state = replace(state, commit=LogIndex(durable))
        return RecoveredState(state, snap, conf, ents)

    def statistics(self) -> StoreStatistics:
        with self._lock:
            s = self._stats
            return StoreStatistics(
                first_index=self._base_index + 1,
                last_index=self._last_index,
                durable_index=self._durable_index,
                segments=len(self._segments),
                entries_appended=s["entries"],
                bytes_appended=s["bytes"],
                syncs=s["syncs"],
                fsyncs=s["fsyncs"],
                truncations=s["truncations"],
            )

    # ---------------------------------------------------------------- writes

    def append(self, entries: Sequence[Entry]) -> None:
        """Make the log ``log[:entries[0].index] + entries`` (not durable until ``sync``).

        Entries must have consecutive indices, start at most at
        ``last_index() + 1``, and never lower the term. Entries at or below the
        snapshot are ignored; a prefix identical to what is stored (same index
        and term, Raft's log matching) is not rewritten; a differing suffix is
        truncated first (durably, see :meth:`_truncate`).
        """
        if not entries:
            return
        validate_batch(entries, self._entry_bytes_max)
        with self._mutation():
            if entries[-1].index <= self._base_index:
                return  # all covered by the snapshot
            skip = max(0, self._base_index + 1 - entries[0].index)
            while (
                skip < len(entries)
                and entries[skip].index <= self._last_index
                and self._term_in_runs(entries[skip].index) == entries[skip].term
            ):
                skip += 1
            if skip == len(entries):
                end = entries[-1].index + 1
                if end <= self._last_index:  # the log must end where the batch ends
                    self._truncate(end)
                return
            todo = entries[skip:]
            first = todo[0].index
            if first > self._last_index + 1:
                raise StorageUsageError(
                    f"append at {first} leaves a gap after last index {self._last_index}"
                )
            prev = (
                self._base_term if first - 1 == self._base_index else self._term_in_runs(first - 1)
            )
            if todo[0].term < prev:
                raise StorageUsageError(f"entry {first} has term {todo[0].term} < {prev}")
            if first <= self._last_index:
                self._truncate(first)
            self._write(todo)

    def _write(self, entries: Sequence[Entry]) -> None:
        records = encode_record_list(entries)
        seg = self._segments[-1]
        i, n = 0, len(records)
        while i < n:
            if len(seg) and seg.size + len(records[i]) > self._segment_bytes_max:
                seg = self._roll_over(entries[i].index)
            room = self._segment_bytes_max - seg.size
            j, rel, used = i, [], 0
            while j < n and (j == i or used + len(records[j]) <= room):
                rel.append(used)
                used += len(records[j])
                j += 1
            buf = records[i] if j == i + 1 else b"".join(records[i:j])
            with self._lock:
                seg.append(buf, rel)
                if entries[i].term == entries[j - 1].term:  # terms never fall in a batch
                    self._terms.note(entries[i].index, entries[i].term)
                else:
                    for e in entries[i:j]:
                        self._terms.note(e.index, e.term)
                self._last_index = entries[j - 1].index
                self._stats["entries"] += j - i
                self._stats["bytes"] += len(buf)
            if not self._dirty or self._dirty[-1] is not seg:
                self._dirty.append(seg)
            i = j

    def _roll_over(self, first_index: int) -> Segment:
        """Seal the newest segment and start the next one.

        Sealing fsyncs the old segment and, if it is new itself, the
        directory, so after a crash only the newest segment can be torn or
        missing: never one in the middle of the chain.
        """
        old = self._segments[-1]
        if self._fsync:
            if old in self._dirty:
                old.sync()
                self._stats["fsyncs"] += 1
            if self._dir_dirty:
                fsync_dir(self._dir)
                self._stats["fsyncs"] += 1
        self._dir_dirty = False
        self._dirty = [s for s in self._dirty if s is not old]
        seg = Segment.create(self._dir, first_index)
        self._dir_dirty = True
        with self._lock:
            self._add_segment(seg)
        log.debug("log segment %s started", seg.path.name)
        return seg

    def sync(self) -> LogIndex:
        """Make everything appended and saved so far durable; return the durable last index."""
        with self._mutation():
            target = self._last_index
            if self._fsync:
                for seg in self._dirty:
                    seg.sync()
                if self._dir_dirty:
                    fsync_dir(self._dir)
                self._stats["fsyncs"] += len(self._dirty) + self._dir_dirty + self._hs.dirty
            self._hs.sync(fsync=self._fsync)
            self._dirty.clear()
            self._dir_dirty = False
            with self._lock:
                self._durable_index = target
                self._stats["syncs"] += 1
            return LogIndex(target)

    def save_hard_state(self, state: HardState) -> None:
        """Record the hard state; durable when the next ``sync`` returns."""
        with self._mutation():
            self._hs.save(state)

    def _truncate(self, index: int) -> None:
        """Durably drop entries ``index..``: newest segments first, each unlink made durable.

        A crash part-way leaves a prefix of the old log, never a gap.
        """
        with self._lock:
            while len(self._segments) > 1 and self._segments[-1].first_index >= index:
                seg = self._segments.pop()
                self._firsts.pop()
                self._dirty = [s for s in self._dirty if s is not seg]
                seg.close()
                seg.path.unlink()
                if self._fsync:
                    fsync_dir(self._dir)
                    self._dir_dirty = False  # every directory change so far is durable
            seg = self._segments[-1]
            seg.truncate_from(index)
            self._terms.truncate_from(index)
            self._last_index = index - 1
            self._durable_index = min(self._durable_index, index - 1)
            self._stats["truncations"] += 1
        if self._fsync:
            seg.sync()  # the shorter size is durable before new records land on it
        log.info("log truncated from index %d in %s", index, self._dir)

    def save_snapshot(self, snap: Snapshot) -> None:
        """Durably store ``snap``; entries at or below its index are dropped.

        The snapshot file is replaced atomically first. If the log holds the
        snapshot's last entry (same index and term), the entries after it are
        kept (Raft §7) and the segments wholly covered are deleted
        (:meth:`compact`); otherwise the whole log is discarded, newest
        segment first, and a crash part-way is finished on the next open.
        """
        meta = snap.meta
        with self._mutation():
            if meta.index < self._base_index:
                raise StorageUsageError(
                    f"snapshot at {meta.index} is older than the stored one at {self._base_index}"
                )
            keep = meta.index == self._base_index and meta.term == self._base_term
            if not keep and self._base_index < meta.index <= self._last_index:
                keep = self._term_in_runs(meta.index) == meta.term
            save_snapshot_file(self._dir / SNAPSHOT_FILE, snap, fsync=self._fsync)
            with self._lock:
                self._snap_meta = meta
                self._base_index, self._base_term = meta.index, meta.term
                self._last_index = max(self._last_index, meta.index)
                if not keep:
                    self._discard_all_segments()
                    self._start_fresh_segment()  # fsyncs the directory
                    self._dir_dirty = not self._fsync
                # The snapshot itself is durable: so is everything it covers.
                self._durable_index = max(self._durable_index, meta.index)
            log.info(
                "snapshot saved at index %d term %d (log %s)",
                meta.index,
                meta.term,
                "kept" if keep else "discarded",
            )
            if keep:
                self._compact(meta.index)

    def compact(self, upto_index: int) -> int:
        """Delete whole segments holding only entries at or below ``upto_index``.

        ``upto_index`` may not pass the snapshot (those entries are logically
        gone already; this frees the disk). The newest segment always stays.
        Returns the number of segments deleted.
        """
        with self._mutation():
            if upto_index > self._base_index:
                raise StorageUsageError(
                    f"cannot compact to {upto_index}, past the snapshot at {self._base_index}"
                )
            return self._compact(upto_index)

    def _compact(self, upto_index: int) -> int:
        victims = 0
        while (
            victims < len(self._segments) - 1 and self._segments[victims].last_index <= upto_index
        ):
            victims += 1
        if not victims:
            return 0
        with self._lock:
            gone = self._segments[:victims]
            del self._segments[:victims], self._firsts[:victims]
            self._dirty = [s for s in self._dirty if s not in gone]
            self._terms.trim_before(self._segments[0].first_index)
        for seg in gone:  # oldest first: a crash leaves a suffix (or holes open() removes)
            seg.close()
            seg.path.unlink()
        if self._fsync:
            fsync_dir(self._dir)
            self._dir_dirty = False
        log.info("compacted %d segment(s) up to index %d", victims, upto_index)
        return victims

    # ---------------------------------------------------------------- closing

    def close(self) -> None:
        """Close every file. Does not sync: call ``sync`` first for durability."""
        with self._write_lock, self._lock:
            if self._closed:
                return
            self._closed = True
            self._close_files()

    def _close_files(self) -> None:
        for seg in self._segments:
            seg.close()
        self._hs.close()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = -1

    def __enter__(self) -> LogStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---------------------------------------------------------------- helpers

    def _check_open(self) -> None:
        if self._closed:
            raise StorageUsageError("the log store is closed")
        if self._failure is not None:
            raise StoreFailedError(
                f"an earlier write or fsync failed ({self._failure}); reopen the store"
            )

    @contextlib.contextmanager
    def _mutation(self) -> Iterator[None]:
        """Serialise a mutator; an OSError inside it fails the store for good."""
        with self._write_lock:
            self._check_open()
            try:
                yield
            except OSError as exc:
                self._failure = exc
                log.error("log store %s failed, refusing further use: %s", self._dir, exc)
                raise StoreFailedError(f"{self._dir}: {exc}; reopen the store") from exc

    def _add_segment(self, seg: Segment) -> None:
        self._segments.append(seg)
        self._firsts.append(seg.first_index)

    def _term_in_runs(self, index: int) -> int:
        term = self._terms.lookup(index)
        if term is None:
            raise LogCompactedError(index, self._base_index + 1)
        return term

    def _discard_all_segments(self) -> None:
        discard_segments(self._segments, self._dir, fsync=self._fsync)
        self._firsts.clear()
        self._dirty.clear()
        self._terms.clear()

    def _start_fresh_segment(self) -> None:
        self._add_segment(create_segment(self._dir, self._base_index + 1, fsync=self._fsync))
        self._last_index = self._base_index
        self._durable_index = self._base_index
