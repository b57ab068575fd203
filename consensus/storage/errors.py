"""Errors raised by the durable Raft log store, split by blame.

* :class:`CorruptionError` and its subclasses: what is on disk cannot be
  trusted (a checksum failed where a crash cannot explain it). They name the
  file and the byte offset so an operator can look; the store never drops
  data silently to get past them.
* :class:`LogCompactedError`, :class:`LogUnavailableError`: a read asked for
  entries the store no longer holds (behind the snapshot) or does not hold yet.
  The Raft core expects these (send a snapshot instead; wait).
* :class:`StorageUsageError`: the caller broke the API contract (a gap in
  appended indices, decreasing terms, a stale snapshot, a closed store).
* :class:`StoreFailedError`: the disk failed a write or an fsync; the store
  is unusable until reopened (which recovers from what really is on disk).
"""

from __future__ import annotations

from pathlib import Path


class StorageError(Exception):
    """Base of every error the log store raises."""


class CorruptionError(StorageError):
    """Bytes on disk fail validation in a way a crash cannot explain."""

    def __init__(self, path: Path, offset: int, reason: str) -> None:
        super().__init__(f"{path}: corrupt at byte offset {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason


class CorruptLogError(CorruptionError):
    """A log segment is damaged before its tail (or a sealed segment is damaged)."""


class CorruptHardStateError(CorruptionError):
    """Neither copy of the hard state validates."""


class CorruptSnapshotError(CorruptionError):
    """The snapshot file (installed by an atomic rename) does not validate."""


class LogCompactedError(StorageError):
    """The requested index lies at or behind the snapshot; its entries are gone."""

    def __init__(self, index: int, first_index: int) -> None:
        super().__init__(f"index {index} is compacted (first index is {first_index})")
        self.index = index
        self.first_index = first_index


class LogUnavailableError(StorageError):
    """The requested index lies beyond the last entry stored."""

    def __init__(self, index: int, last_index: int) -> None:
        super().__init__(f"index {index} is not in the log yet (last index is {last_index})")
        self.index = index
        self.last_index = last_index


class StorageUsageError(StorageError, ValueError):
    """The caller broke the store's API contract; nothing was written."""


class StoreFailedError(StorageError):
    """A write or fsync failed; the store refuses all further use until reopened.

    After a failed fsync the kernel may have dropped the dirty pages and a
    retry can report success for data that never reached the disk, so the
    only safe course is to stop and recover from what is on disk.
    """


class StoreLockedError(StorageError):
    """Another process (or another open store) holds this directory."""
