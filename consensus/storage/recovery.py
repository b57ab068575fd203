"""Opening a log directory after a clean stop or a crash: segments and snapshot reconciled.

``recover_log`` lists the segment files, loads each (``load_segment`` applies
the torn-tail / corruption rules), checks that they chain without gaps, and
reconciles them with the snapshot:

* segments lying wholly at or below the snapshot are deleted (a compaction
  interrupted between unlinks may have left them, even with holes);
* if the log does not hold the snapshot's last entry (same index and term)
  and does not start right after it, a snapshot install was interrupted
  after the snapshot became durable: the old log is discarded, as Raft §7
  says it must be;
* a log starting after index 1 with no snapshot, or after the snapshot's
  index + 1, has lost entries: :class:`CorruptLogError`.

It always returns at least one segment (a fresh, empty one if needed).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from colonymesh.consensus.storage.errors import CorruptLogError
from colonymesh.consensus.storage.fsutil import fsync_dir
from colonymesh.consensus.storage.segments import Segment, load_segment, parse_segment_name
from colonymesh.consensus.storage.terms import TermRuns
from colonymesh.consensus.types import SnapshotMeta

log = logging.getLogger("colonymesh.consensus.storage")


@dataclass(slots=True)
class RecoveredLog:
    segments: list[Segment] = field(default_factory=list)
    terms: TermRuns = field(default_factory=TermRuns)
    last_index: int = 0


def recover_log(directory: Path, snap: SnapshotMeta | None, *, fsync: bool) -> RecoveredLog:
    base = snap.index if snap is not None else 0
    found = sorted(
        (first, directory / name)
        for name in os.listdir(directory)
        if (first := parse_segment_name(name)) is not None
    )
    found = _drop_covered(found, base, fsync=fsync)
    out = RecoveredLog()
    try:
        _load_chain(out, found, fsync=fsync)
        if not _matches_snapshot(out, snap, directory):
            log.warning(
                "log in %s does not hold the snapshot's last entry (%d, term %d): "
                "finishing an interrupted snapshot install by discarding it",
                directory,
                base,
                snap.term if snap else 0,
            )
            discard_segments(out.segments, directory, fsync=fsync)
            out.terms.clear()
        if not out.segments:
            out.segments.append(create_segment(directory, base + 1, fsync=fsync))
            out.last_index = base
        out.last_index = max(out.last_index, base)
    except BaseException:
        for seg in out.segments:
            seg.close()
        raise
    return out


def _drop_covered(
    found: list[tuple[int, Path]], base: int, *, fsync: bool
) -> list[tuple[int, Path]]:
    """Delete segments whose successor starts at or before ``base + 1``."""
    keep_from = 0
    for k in range(len(found) - 1):
        if found[k + 1][0] <= base + 1:
            keep_from = k + 1
    for _first, path in found[:keep_from]:
        log.info("removing segment %s, covered by the snapshot at %d", path, base)
        path.unlink()
    if keep_from and fsync:
        fsync_dir(found[0][1].parent)
    return found[keep_from:]


def _load_chain(out: RecoveredLog, found: list[tuple[int, Path]], *, fsync: bool) -> None:
    prev_term = 0
    removed = False
    for k, (first, path) in enumerate(found):
        loaded = load_segment(
            path, first, newest=k == len(found) - 1, prev_term=prev_term, fsync=fsync
        )
        if loaded is None:
            path.unlink()
            removed = True
            continue
        seg = loaded.segment
        if out.segments and first != out.last_index + 1:
            seg.close()
            raise CorruptLogError(
                path,
                0,
                f"starts at index {first} but the log before it ends at {out.last_index}: "
                "a segment is missing or cut short",
            )
        out.segments.append(seg)
        for i, term in enumerate(loaded.terms):
            out.terms.note(first + i, term)
            prev_term = term
        out.last_index = seg.last_index
    if removed and fsync:
        fsync_dir(found[0][1].parent)


def _matches_snapshot(out: RecoveredLog, snap: SnapshotMeta | None, directory: Path) -> bool:
    if not out.segments:
        return True
    head = out.segments[0]
    if snap is None:
        if head.first_index != 1:
            raise CorruptLogError(head.path, 0, "the log starts after index 1 but no snapshot")
        return True
    if head.first_index > snap.index + 1:
        raise CorruptLogError(
            head.path, 0, f"the log starts at {head.first_index}, after snapshot {snap.index} + 1"
        )
    if head.first_index == snap.index + 1:
        return True
    return snap.index <= out.last_index and out.terms.lookup(snap.index) == snap.term


def create_segment(directory: Path, first_index: int, *, fsync: bool) -> Segment:
    """A new empty segment whose directory entry is durable."""
    seg = Segment.create(directory, first_index)
    if fsync:
        seg.sync()
        fsync_dir(directory)
    return seg


def discard_segments(segments: list[Segment], directory: Path, *, fsync: bool) -> None:
    """Delete every segment, newest first, each unlink durable before the next.

    A crash part-way leaves a prefix of the old log, which ``recover_log``
    recognises and discards again.
    """
    while segments:
        seg = segments.pop()
        seg.close()
        seg.path.unlink()
        if fsync:
            fsync_dir(directory)
