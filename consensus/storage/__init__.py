"""Durable storage for the Raft log: segment files, hard state, snapshots.

The only part of ``colonymesh.consensus`` that touches the disk. See
:mod:`colonymesh.consensus.storage.store` for the durability contract.
"""

from colonymesh.consensus.storage.errors import (
    CorruptHardStateError,
    CorruptionError,
    CorruptLogError,
    CorruptSnapshotError,
    LogCompactedError,
    LogUnavailableError,
    StorageError,
    StorageUsageError,
    StoreFailedError,
    StoreLockedError,
)
from colonymesh.consensus.storage.store import LogStore, RecoveredState, StoreStatistics

__all__ = [
    "CorruptHardStateError",
    "CorruptLogError",
    "CorruptSnapshotError",
    "CorruptionError",
    "LogCompactedError",
    "LogStore",
    "LogUnavailableError",
    "RecoveredState",
    "StorageError",
    "StorageUsageError",
    "StoreFailedError",
    "StoreLockedError",
    "StoreStatistics",
]
