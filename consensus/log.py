"""The in-memory Raft log of one core: snapshot boundary, entries, unstable tail.

What it owns: every entry after the latest snapshot (``snapshot_index``), the
commit index, which suffix has not yet been handed to the driver for
persisting (``unstable_from``), and how far the driver has confirmed the log
durable (``stable_index``: every entry at or below it is on disk exactly as
held here; a leader counts itself in a quorum only up to it). The core keeps the whole post-snapshot log in
memory; the application bounds it by calling ``compact``. Storage is only
ever written through a :class:`~colonymesh.consensus.ready.Ready`.

How it works: entries sit in a Python list at position ``index -
snapshot_index - 1``, so a term lookup is O(1) and appending is amortised
O(1). Terms never decrease along a log, so "the largest index at or below
``i`` whose term is at most ``t``" (the fast back-off search) is a binary
search, never a scan.

Invariants (raise :class:`RaftInvariantError` if broken):
* entries are contiguous, start at ``snapshot_index + 1`` and have
  non-decreasing terms, none below ``snapshot_term``;
* ``snapshot_index <= committed <= last_index``;
* ``stable_index < unstable_from``: nothing not yet handed out is stable;
* a committed entry is never truncated.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

from colonymesh.consensus.errors import RaftInvariantError
from colonymesh.consensus.types import Entry, LogIndex, Term

ENTRY_OVERHEAD_BYTES = 24  # rough per-entry framing cost for byte budgets


def entry_bytes(entry: Entry) -> int:
    return len(entry.data) + ENTRY_OVERHEAD_BYTES


def _entry_term(entry: Entry) -> int:
    return entry.term


class RaftLog:
    __slots__ = (
        "_entries",
        "committed",
        "snapshot_index",
        "snapshot_term",
        "stable_index",
        "unstable_from",
    )

    def __init__(
        self,
        snapshot_index: LogIndex,
        snapshot_term: Term,
        entries: Sequence[Entry],
        committed: LogIndex,
    ) -> None:
        self.snapshot_index = snapshot_index
        self.snapshot_term = snapshot_term
        self._entries: list[Entry] = []
        # Entries handed over at construction are already durable.
        start = 0
        while start < len(entries) and entries[start].index <= snapshot_index:
            start += 1
        self._check_chain(snapshot_index, snapshot_term, entries[start:])
        self._entries.extend(entries[start:])
        self.unstable_from = LogIndex(self.last_index() + 1)
        self.stable_index = self.last_index()
        self.committed = max(committed, snapshot_index)
        if self.committed > self.last_index():
            raise RaftInvariantError(
                f"commit {self.committed} beyond last index {self.last_index()}"
            )

    @staticmethod
    def _check_chain(index: int, term: int, entries: Sequence[Entry]) -> None:
        for entry in entries:
            if entry.index != index + 1 or entry.term < term:
                raise RaftInvariantError(f"log not contiguous at index {entry.index}")
            index, term = entry.index, entry.term

    # -- queries ---------------------------------------------------------------

    def first_index(self) -> LogIndex:
        return LogIndex(self.snapshot_index + 1)

    def last_index(self) -> LogIndex:
        return LogIndex(self.snapshot_index + len(self._entries))

    def last_term(self) -> Term:
        return self._entries[-1].term if self._entries else self.snapshot_term

    def term(self, index: int) -> Term | None:
        """The term of the entry at ``index``; None if compacted away or absent."""
        if index == self.snapshot_index:
            return self.snapshot_term
        pos = index - self.snapshot_index - 1
        if pos < 0 or pos >= len(self._entries):
            return None
        return self._entries[pos].term

    def match_term(self, index: int, term: int) -> bool:
        return self.term(index) == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft §5.4.1: is a candidate's log at least as up-to-date as ours?"""
        our_term = self.last_term()
        return last_term > our_term or (last_term == our_term and last_index >= self.last_index())

    def entry(self, index: int) -> Entry:
        pos = index - self.snapshot_index - 1
        if pos < 0 or pos >= len(self._entries):
            raise RaftInvariantError(f"no entry at index {index}")
        return self._entries[pos]

    def slice(
        self, lo: int, hi: int, max_count: int | None = None, max_bytes: int | None = None
    ) -> list[Entry]:
        """Entries with ``lo <= index < hi``, at most ``max_count`` of them and (after
        the first) at most ``max_bytes`` in total."""
        base = self.snapshot_index + 1
        if lo < base:
            raise RaftInvariantError(f"slice from {lo} reaches into the snapshot")
        hi = min(hi, self.last_index() + 1)
        if max_count is not None:
            hi = min(hi, lo + max_count)
        if hi <= lo:
            return []
        out = self._entries[lo - base : hi - base]
        if max_bytes is not None:
            total = 0
            for k, entry in enumerate(out):
                total += entry_bytes(entry)
                if total > max_bytes and k > 0:
                    return out[:k]
        return out

    def find_conflict_by_term(self, index: int, term: int) -> tuple[LogIndex, Term]:
        """The largest ``i <= index`` whose term is at most ``term`` (and that term).

        Binary search: terms never decrease along the log. Below the snapshot
        the answer is the snapshot boundary itself.
        """
        index = min(index, self.last_index())
        if index <= self.snapshot_index:
            return self.snapshot_index, self.snapshot_term
        hi = index - self.snapshot_index  # search positions [0, hi)
        pos = bisect_right(self._entries, term, 0, hi, key=_entry_term)
        if pos == 0:
            return self.snapshot_index, self.snapshot_term
        found = self._entries[pos - 1]
        return found.index, found.term

    def unstable_entries(self) -> list[Entry]:
        return self.slice(self.unstable_from, self.last_index() + 1)

    # -- mutations -------------------------------------------------------------

    def append(self, entry: Entry) -> None:
        """Leader-side append of one new entry at ``last_index + 1``."""
        if entry.index != self.last_index() + 1 or entry.term < self.last_term():
            raise RaftInvariantError(f"append of {entry.index} after {self.last_index()}")
        self._entries.append(entry)

    def append_after(self, prev_index: int, entries: Sequence[Entry]) -> LogIndex | None:
        """Follower-side append (§5.3): keep matching entries, truncate at the first
        conflict, append the rest. Returns the first index written, or None if
        every entry was already present. The caller checked ``prev_index`` matches."""
        base = self.snapshot_index + 1
        last = self.last_index()
        k = 0
        n = len(entries)
        # Skip the prefix we already hold with the same term (idempotent redelivery).
        while k < n:
            index = prev_index + 1 + k
            if index > last:
                break
            if index >= base and self._entries[index - base].term != entries[k].term:
                break
            k += 1
        if k == n:
            return None
        first = prev_index + 1 + k
        if first <= last:
            if first <= self.committed:
                raise RaftInvariantError(f"truncating committed entry {first}")
            del self._entries[first - base :]
            if first < self.unstable_from:
                self.unstable_from = LogIndex(first)
            # What is on disk from ``first`` on is no longer what we hold.
            self.stable_index = LogIndex(min(self.stable_index, first - 1))
        self._entries.extend(entries[k:])
        return LogIndex(first)

    def commit_to(self, index: int) -> bool:
        if index <= self.committed:
            return False
        if index > self.last_index():
            raise RaftInvariantError(f"commit {index} beyond last index {self.last_index()}")
        self.committed = LogIndex(index)
        return True

    def mark_handed_out(self) -> None:
        self.unstable_from = LogIndex(self.last_index() + 1)

    def mark_unstable_from(self, index: int) -> None:
        """Entries from ``index`` on are not durable (a fresh node's bootstrap)."""
        self.unstable_from = LogIndex(index)
        self.stable_index = LogIndex(min(self.stable_index, index - 1))

    def mark_stable(self, index: int) -> None:
        """The driver made the log durable up to ``index`` (as handed out then).

        Clamped below ``unstable_from``: if a conflicting append replaced part
        of what was persisted meanwhile, the replacement is not durable yet."""
        bound = min(index, self.unstable_from - 1, self.last_index())
        if bound > self.stable_index:
            self.stable_index = LogIndex(bound)

    def compact(self, index: int) -> None:
        """Drop entries up to ``index`` (which must be held) after a local snapshot."""
        term = self.term(index)
        if term is None or index > self.committed:
            raise RaftInvariantError(f"cannot compact to {index}")
        del self._entries[: index - self.snapshot_index]
        self.snapshot_index = LogIndex(index)
        self.snapshot_term = term

    def restore(self, index: LogIndex, term: Term) -> None:
        """Replace the whole log by a snapshot boundary (InstallSnapshot, §7)."""
        if index <= self.committed:
            raise RaftInvariantError(f"restore to {index} at or below commit {self.committed}")
        self._entries.clear()
        # Only what was committed (and so is covered by the snapshot) stays vouched for.
        self.stable_index = LogIndex(min(self.stable_index, self.committed))
        self.snapshot_index = index
        self.snapshot_term = term
        self.committed = index
        self.unstable_from = LogIndex(index + 1)
