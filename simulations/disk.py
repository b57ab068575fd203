"""The simulated disk of one node: an append-only record log that survives crashes.

What it owns: the records a node's driver persisted and the simulator
acknowledged (synced). The records are opaque to the simulator; each
adapter decides what a record is (a Raft hard state, a log entry, a
snapshot...) and rebuilds its core from them when the node restarts, like a
write-ahead log replayed at boot.

Faults: a *torn* write models a crash while a batch is being written and
before its fsync returned. A random prefix of that batch survives (records
are whole or absent: a checksum per record drops a partial one, as the real
store does) and the write is never acknowledged, so the driver sent nothing
and applied nothing on the strength of it. Everything acknowledged earlier
survives, always.

Compaction: ``rewrite`` replaces the whole content atomically (the
write-new-file-then-rename pattern), for adapters that snapshot and drop
old records.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence


class SimDisk:
    """Durable records of one node; survives crashes and restarts of that node."""

    __slots__ = ("records", "syncs", "torn_writes")

    def __init__(self) -> None:
        self.records: list[object] = []
        self.syncs = 0
        self.torn_writes = 0

    def append_synced(self, batch: Iterable[object]) -> None:
        """Write a batch and fsync it: on return it survives any crash."""
        self.records.extend(batch)
        self.syncs += 1

    def append_torn(self, batch: Sequence[object], rng: random.Random) -> int:
        """A crash cut this write before its fsync: keep a random prefix; return its length."""
        keep = rng.randrange(len(batch) + 1) if batch else 0
        self.records.extend(batch[:keep])
        self.torn_writes += 1
        return keep

    def rewrite(self, records: Iterable[object]) -> None:
        """Atomically replace the content (compaction); durable on return."""
        self.records = list(records)
        self.syncs += 1
