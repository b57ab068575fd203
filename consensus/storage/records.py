"""The on-disk byte formats of the Raft log: segment headers and entry records.

Pure functions over bytes, no I/O. Everything is little-endian and fixed-size
where it can be, so encoding is one ``struct.pack`` and decoding one
``unpack_from`` plus one CRC over the record.

Segment file (``log-<first index, 20 digits>.seg``)::

    0   8  magic   b"CMRLOG\\x00\\x01"
    8   4  version (1)
    12  4  reserved, zero
    16  8  first_index  (must equal the index in the file name)
    24  4  crc32 of bytes 0..24
    28  4  reserved, zero
    32     records, back to back

Record (one log entry)::

    0   4  magic   b"\\xc5\\x1dRC"
    4   4  crc32 of bytes 8..32 and of the data
    8   4  data length n
    12  8  index
    20  8  term
    28  4  kind (an EntryKind value)
    32  n  data

The per-record magic lets recovery look for intact records *after* a damaged
one (``find_intact_record``) quickly, to tell a torn tail (nothing intact
follows) from damage in the middle of the log (something intact follows).
"""

from __future__ import annotations

import struct
import zlib
from array import array
from collections.abc import Iterable
from dataclasses import dataclass

from colonymesh.consensus.types import Entry, EntryKind, LogIndex, Term

SEGMENT_MAGIC = b"CMRLOG\x00\x01"
SEGMENT_VERSION = 1
SEGMENT_HEADER = struct.Struct("<8sIIQII")
SEGMENT_HEADER_BYTES = SEGMENT_HEADER.size  # 32

RECORD_MAGIC = b"\xc5\x1dRC"
RECORD_HEADER = struct.Struct("<4sIIQQI")
RECORD_HEADER_BYTES = RECORD_HEADER.size  # 32
# A format limit, not a policy: the store enforces its own, smaller entry cap.
RECORD_DATA_MAX = (1 << 31) - 1
INDEX_MAX = (1 << 63) - 1  # indices and terms are stored as u64 but kept below 2**63

_KINDS = frozenset(int(k) for k in EntryKind)
_TAIL = struct.Struct("<IQQI")  # the CRC-covered header fields: length, index, term, kind


class RecordError(Exception):
    """A record or header failed validation; ``reason`` says how."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def encode_segment_header(first_index: int) -> bytes:
    head = struct.pack("<8sIIQ", SEGMENT_MAGIC, SEGMENT_VERSION, 0, first_index)
    return head + struct.pack("<II", zlib.crc32(head), 0)


def decode_segment_header(buf: bytes | memoryview) -> int:
    """Return the first index a segment header declares; raise RecordError if invalid."""
    if len(buf) < SEGMENT_HEADER_BYTES:
        raise RecordError(f"segment header is {len(buf)} bytes, needs {SEGMENT_HEADER_BYTES}")
    magic, version, reserved, first_index, crc, reserved2 = SEGMENT_HEADER.unpack_from(buf, 0)
    if magic != SEGMENT_MAGIC:
        raise RecordError("bad segment magic")
    if crc != zlib.crc32(bytes(buf[:24])):
        raise RecordError("segment header checksum mismatch")
    if version != SEGMENT_VERSION:
        raise RecordError(f"unsupported segment version {version}")
    if reserved or reserved2:
        raise RecordError("segment header reserved bytes are not zero")
    if not 1 <= first_index <= INDEX_MAX:
        raise RecordError(f"segment first index {first_index} out of range")
    return int(first_index)


def encode_record(entry: Entry) -> bytes:
    data = entry.data
    tail = _TAIL.pack(len(data), entry.index, entry.term, int(entry.kind))
    crc = zlib.crc32(data, zlib.crc32(tail))
    return RECORD_MAGIC + crc.to_bytes(4, "little") + tail + data


def encode_record_list(entries: Iterable[Entry]) -> list[bytes]:
    """``[encode_record(e) for e in entries]``, with the lookups hoisted (the hot path)."""
    pack, crc32, magic, out = _TAIL.pack, zlib.crc32, RECORD_MAGIC, []
    for e in entries:
        data = e.data
        tail = pack(len(data), e.index, e.term, e.kind)
        out.append(b"".join((magic, crc32(data, crc32(tail)).to_bytes(4, "little"), tail, data)))
    return out


def encode_records(entries: Iterable[Entry]) -> bytes:
    return b"".join(encode_record_list(entries))


def record_size(entry: Entry) -> int:
    return RECORD_HEADER_BYTES + len(entry.data)


def check_record(buf: bytes | memoryview, offset: int) -> tuple[int, int, int, int]:
    """Validate the record at ``offset`` of ``buf`` (which ends where the file ends).

    Returns ``(end, index, term, kind)``; raises :class:`RecordError` with the reason.
    """
    size = len(buf)
    if offset + RECORD_HEADER_BYTES > size:
        raise RecordError(f"record header cut short ({size - offset} bytes left)")
    magic, crc, length, index, term, kind = RECORD_HEADER.unpack_from(buf, offset)
    if magic != RECORD_MAGIC:
        raise RecordError("bad record magic")
    if length > RECORD_DATA_MAX:
        raise RecordError(f"record length {length} exceeds the format limit")
    end = offset + RECORD_HEADER_BYTES + length
    if end > size:
        raise RecordError(f"record of {length} data bytes cut short at {size - offset} bytes")
    if zlib.crc32(buf[offset + 8 : end]) != crc:
        raise RecordError("record checksum mismatch")
    # Below: the checksum matched, so these are writer bugs, not disk damage.
    if kind not in _KINDS:
        raise RecordError(f"unknown entry kind {kind}")
    if not (1 <= index <= INDEX_MAX and term <= INDEX_MAX):
        raise RecordError(f"index {index} or term {term} out of range")
    return end, index, term, kind


def decode_record(buf: bytes | memoryview, offset: int) -> tuple[Entry, int]:
    """Decode the record at ``offset``; return the entry and the offset after it."""
    end, index, term, kind = check_record(buf, offset)
    data = bytes(buf[offset + RECORD_HEADER_BYTES : end])
    return Entry(Term(term), LogIndex(index), EntryKind(kind), data), end


_KIND_BY_VALUE = {int(k): k for k in EntryKind}


def decode_run(buf: bytes, first_index: int, count: int) -> list[Entry]:
    """Decode ``count`` back-to-back records from ``buf``, expecting consecutive indices.

    The read path's tight loop: same checks as :func:`check_record`, no copies
    but the entries' data. Raises :class:`RecordError` with ``offset`` set.
    """
    view = memoryview(buf)
    unpack, crc32, magic = RECORD_HEADER.unpack_from, zlib.crc32, RECORD_MAGIC
    kinds, size, hdr = _KIND_BY_VALUE, len(buf), RECORD_HEADER_BYTES
    out: list[Entry] = []
    pos = 0
    for index in range(first_index, first_index + count):
        if pos + hdr > size:
            raise RecordError(f"record header cut short at offset {pos}")
        m, crc, length, idx, term, kind = unpack(buf, pos)
        end = pos + hdr + length
        if m != magic or end > size or crc32(view[pos + 8 : end]) != crc:
            raise RecordError(f"damaged record at offset {pos}")
        if idx != index or kind not in kinds:
            raise RecordError(f"record at offset {pos} has index {idx}, kind {kind}")
        out.append(Entry(Term(term), LogIndex(idx), kinds[kind], bytes(view[pos + hdr : end])))
        pos = end
    return out


@dataclass(slots=True)
class ScanResult:
    """What a sequential scan of a segment's records found.

    ``offsets[i]``/``terms[i]`` describe the i-th intact record (index
    ``first_index + i``); ``end`` is where the intact prefix ends; ``error``
    is ``(offset, reason)`` for the first record that failed, or None if the
    scan reached the end of the buffer cleanly.
    """

    offsets: array[int]
    terms: array[int]
    end: int
    error: tuple[int, str] | None
    # A record whose checksum matched but that breaks the log's own rules
    # (wrong index, falling term): no crash produces that, so it is corruption.
    fatal: bool = False


def scan_records(
    buf: bytes | memoryview, start: int, first_index: int, prev_term: int = 0
) -> ScanResult:
    """Walk records from ``start``, expecting indices ``first_index, first_index+1, ...``."""
    offsets: array[int] = array("Q")
    terms: array[int] = array("Q")
    pos = start
    expected = first_index
    last_term = prev_term
    size = len(buf)
    while pos < size:
        try:
            end, index, term, _kind = check_record(buf, pos)
        except RecordError as exc:
            return ScanResult(offsets, terms, pos, (pos, exc.reason))
        if index != expected:
            return ScanResult(
                offsets, terms, pos, (pos, f"index {index} where {expected} was due"), True
            )
        if term < last_term:
            return ScanResult(
                offsets, terms, pos, (pos, f"term {term} after term {last_term}"), True
            )
        offsets.append(pos)
        terms.append(term)
        last_term = term
        expected += 1
        pos = end
    return ScanResult(offsets, terms, pos, None)


def find_intact_record(buf: bytes | memoryview, start: int, min_index: int) -> int | None:
    """Offset of the first intact record at or after ``start`` with index >= ``min_index``.

    Used after a damaged record to decide whether the damage is a torn tail
    (nothing intact follows) or corruption in the middle (something does).
    The index bound keeps a record image that happens to sit inside some
    older entry's data from counting.
    """
    data = bytes(buf) if isinstance(buf, memoryview) else buf
    pos = data.find(RECORD_MAGIC, start)
    while pos != -1:
        try:
            _end, index, _term, _kind = check_record(data, pos)
        except RecordError:
            pass
        else:
            if index >= min_index:
                return pos
        pos = data.find(RECORD_MAGIC, pos + 1)
    return None
