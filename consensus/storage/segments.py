"""One segment file of the Raft log: append, truncate, read, and recover on open.

A segment holds the records of a contiguous run of indices, starting at the
index in its name. Only the newest segment is written to; the store seals a
segment (fsyncs it) before it writes the first byte of the next, so after a
crash only the newest segment can have a torn tail.

Recovery rules (``load_segment``):

* A sealed segment must validate completely; any damage is
  :class:`CorruptLogError`.
* In the newest segment, the first record that fails validation is a *torn
  tail* if no intact record with a later index follows it anywhere in the
  file: the file is truncated there (and fsynced) and a warning logged.
  A write cut short, or a final record with a bad checksum, looks like this.
* If an intact record does follow, the damage is in the middle of the log and
  may hide acknowledged entries: :class:`CorruptLogError` naming the file and
  the offset of the first damaged record. A record whose checksum matches but
  whose index or term breaks the log's order is corruption too.
* A newest segment whose header is damaged and that holds no intact record is
  the remains of a crash during creation: it is discarded.

One case is ambiguous by nature: if the disk wrote the pages of an *unsynced*
batch out of order and lost an early one, an intact record can follow a hole.
We cannot tell that from bit rot under a synced record, so we refuse to open
rather than guess: a false alarm costs an operator's look (or rebuilding
this replica from its peers); a wrong guess could drop acknowledged entries.

The in-memory index is one array of record offsets; reads are ``pread`` of a
byte range followed by strict decoding of each record.
"""

from __future__ import annotations

import logging
import os
import re
from array import array
from dataclasses import dataclass
from pathlib import Path

from colonymesh.consensus.storage.errors import CorruptLogError
from colonymesh.consensus.storage.fsutil import pread_exact, pwrite_all, read_file
from colonymesh.consensus.storage.records import (
    SEGMENT_HEADER_BYTES,
    RecordError,
    decode_run,
    decode_segment_header,
    encode_segment_header,
    find_intact_record,
    scan_records,
)
from colonymesh.consensus.types import Entry

log = logging.getLogger("colonymesh.consensus.storage")

_NAME = re.compile(r"^log-(\d{20})\.seg$")


def segment_name(first_index: int) -> str:
    return f"log-{first_index:020d}.seg"


def parse_segment_name(name: str) -> int | None:
    m = _NAME.match(name)
    return int(m.group(1)) if m else None


class Segment:
    """An open segment file and the offsets of its records."""

    __slots__ = ("fd", "first_index", "offsets", "path", "size")

    def __init__(self, path: Path, fd: int, first_index: int, offsets: array[int], size: int):
        self.path = path
        self.fd = fd
        self.first_index = first_index
        self.offsets = offsets  # offsets[i] is where the record of first_index + i starts
        self.size = size  # end of the last record: where the next one goes

    @classmethod
    def create(cls, directory: Path, first_index: int) -> Segment:
        """Create a new, empty segment (the caller makes the directory entry durable)."""
        path = directory / segment_name(first_index)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            pwrite_all(fd, encode_segment_header(first_index), 0)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd, first_index, array("Q"), SEGMENT_HEADER_BYTES)

    @property
    def last_index(self) -> int:
        """Index of the last record; ``first_index - 1`` when empty."""
        return self.first_index + len(self.offsets) - 1

    def __len__(self) -> int:
        return len(self.offsets)

    def record_end(self, index: int) -> int:
        """Byte offset just past the record of ``index``."""
        i = index - self.first_index + 1
        return self.offsets[i] if i < len(self.offsets) else self.size

    def bytes_between(self, lo: int, hi: int) -> int:
        """On-disk bytes of the records ``lo..hi-1`` (all in this segment)."""
        return self.record_end(hi - 1) - self.offsets[lo - self.first_index]

    def append(self, buf: bytes, rel_offsets: list[int]) -> None:
        """Write encoded records at the end; ``rel_offsets`` are their starts within ``buf``."""
        base = self.size
        pwrite_all(self.fd, buf, base)
        self.offsets.extend([base + r for r in rel_offsets])
        self.size = base + len(buf)

    def truncate_from(self, index: int) -> None:
        """Drop the records of ``index`` and after (the caller fsyncs)."""
        i = index - self.first_index
        if not 0 <= i <= len(self.offsets):
            raise ValueError(f"{index} is outside segment {self.path.name}")
        if i == len(self.offsets):
            return
        new_size = self.offsets[i]
        os.ftruncate(self.fd, new_size)
        del self.offsets[i:]
        self.size = new_size

    def read(self, lo: int, hi: int) -> list[Entry]:
        """Decode entries ``lo..hi-1`` (all in this segment), validating every record."""
        start = self.offsets[lo - self.first_index]
        end = self.record_end(hi - 1)
        try:
            buf = pread_exact(self.fd, end - start, start)
        except EOFError as exc:
            raise CorruptLogError(self.path, start, str(exc)) from None
        try:
            return decode_run(buf, lo, hi - lo)
        except RecordError as exc:
            raise CorruptLogError(self.path, start, exc.reason) from None

    def sync(self) -> None:
        os.fdatasync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@dataclass(slots=True)
class LoadedSegment:
    segment: Segment
    terms: array[int]  # terms[i] is the term of the record of first_index + i


def load_segment(
    path: Path, first_index: int, *, newest: bool, prev_term: int, fsync: bool
) -> LoadedSegment | None:
    """Open and validate a segment file; return None if it is a discardable torn creation.

    ``prev_term`` is the last term of the previous segment (terms never fall).
    Raises :class:`CorruptLogError` per the rules in the module docstring.
    """
    buf = read_file(path)
    try:
        declared = decode_segment_header(buf)
    except RecordError as exc:
        if newest and find_intact_record(buf, 0, first_index) is None:
            log.warning("discarding segment %s torn during creation (%s)", path, exc.reason)
            return None
        raise CorruptLogError(path, 0, exc.reason) from None
    if declared != first_index:
        raise CorruptLogError(path, 0, f"header says first index {declared}, name says otherwise")
    scan = scan_records(buf, SEGMENT_HEADER_BYTES, first_index, prev_term)
    if scan.error is not None:
        offset, reason = scan.error
        if scan.fatal or not newest:
            raise CorruptLogError(path, offset, reason)
        due = first_index + len(scan.offsets)
        follower = find_intact_record(buf, offset + 1, due)
        if follower is not None:
            raise CorruptLogError(
                path, offset, f"{reason}; an intact record follows at offset {follower}"
            )
        log.warning(
            "truncating torn tail of %s at offset %d (%s): %d bytes dropped",
            path,
            offset,
            reason,
            len(buf) - offset,
        )
    fd = os.open(path, os.O_RDWR)
    try:
        if scan.end != len(buf):
            os.ftruncate(fd, scan.end)
            if fsync:
                os.fdatasync(fd)
    except BaseException:
        os.close(fd)
        raise
    return LoadedSegment(Segment(path, fd, first_index, scan.offsets, scan.end), scan.terms)
