"""Checking an ``append`` batch against the store's contract before a byte is written.

One tight loop over the batch (this is the hot path); the slow explanation
is built only when something is wrong.
"""

from __future__ import annotations

from collections.abc import Sequence

from colonymesh.consensus.storage.errors import StorageUsageError
from colonymesh.consensus.storage.records import INDEX_MAX
from colonymesh.consensus.types import Entry, EntryKind

_KINDS = frozenset(EntryKind)


def validate_batch(entries: Sequence[Entry], entry_bytes_max: int) -> None:
    """Raise :class:`StorageUsageError` unless ``entries`` (non-empty) are appendable.

    Appendable: data is ``bytes`` within ``entry_bytes_max``, the kind is an
    :class:`EntryKind`, indices are consecutive and in range, terms never fall.
    """
    expect: int = entries[0].index
    term: int = entries[0].term
    for e in entries:
        data = e.data
        if (
            type(data) is not bytes
            or len(data) > entry_bytes_max
            or e.index != expect
            or e.term < term
            or e.kind not in _KINDS
        ):
            raise StorageUsageError(_explain(e, expect, term, entry_bytes_max))
        expect, term = expect + 1, e.term
    if not (entries[0].index >= 1 and expect - 1 <= INDEX_MAX and entries[0].term >= 0):
        raise StorageUsageError(f"entry indices or terms out of range from {entries[0]}")
    if term > INDEX_MAX:
        raise StorageUsageError(f"term {term} out of range")


def _explain(e: Entry, expect: int, term: int, entry_bytes_max: int) -> str:
    if not isinstance(e.data, bytes):
        return f"entry {e.index}: data must be bytes"
    if len(e.data) > entry_bytes_max:
        return f"entry {e.index} has {len(e.data)} bytes, limit {entry_bytes_max}"
    if e.kind not in _KINDS:
        return f"entry {e.index}: unknown kind {e.kind!r}"
    return f"batch not contiguous or term falls: {e.index}/{e.term} where {expect}/>={term}"
