"""Term of every stored index in a few bytes: the log's terms as runs.

Raft terms change rarely (once per election), so the log's terms compress
to a list of ``(first index of run, term)``. Lookups are a bisect; appends,
suffix truncation and prefix trimming are list operations at the ends.
"""

from __future__ import annotations

import bisect


class TermRuns:
    __slots__ = ("_starts", "_terms")

    def __init__(self) -> None:
        self._starts: list[int] = []  # _terms[k] holds from _starts[k] to _starts[k+1]-1
        self._terms: list[int] = []

    def __len__(self) -> int:
        return len(self._starts)

    def note(self, index: int, term: int) -> None:
        """Record that ``index`` (the next index after the last noted) has ``term``."""
        if not self._terms or self._terms[-1] != term:
            self._starts.append(index)
            self._terms.append(term)

    def lookup(self, index: int) -> int | None:
        """The term of ``index``, or None if ``index`` precedes every run.

        The caller keeps ``index`` at or below the last index noted.
        """
        k = bisect.bisect_right(self._starts, index) - 1
        return self._terms[k] if k >= 0 else None

    def truncate_from(self, index: int) -> None:
        """Forget ``index`` and everything after it."""
        k = bisect.bisect_left(self._starts, index)
        del self._starts[k:], self._terms[k:]

    def trim_before(self, index: int) -> None:
        """Drop runs that end before ``index`` (the run holding it stays)."""
        k = bisect.bisect_right(self._starts, index) - 1
        if k > 0:
            del self._starts[:k], self._terms[:k]

    def clear(self) -> None:
        self._starts.clear()
        self._terms.clear()
