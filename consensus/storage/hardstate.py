"""The Raft hard state (term, vote, commit) on disk: two checksummed slots.

Raft requires ``term`` and ``voted_for`` to be durable before a node answers
a message (Figure 2). Rewriting a file by rename costs two fsyncs per change
(the file, then the directory); this file costs one. It holds two fixed
4 KiB slots; each write goes, with a higher sequence number, into the slot
that does *not* hold the last durable state, and ``sync()`` makes it durable
with one ``fdatasync``. Until then every further write reuses the same
non-durable slot, so a torn write can only ever damage a slot whose
contents were never acknowledged. On open, the valid slot with the higher
sequence number wins. The file is created once, by an atomic rename, with
a valid first slot, so it never exists without a valid slot.

Slot layout (little-endian)::

    0  4  magic b"CMHS"       4  4  crc32 of bytes 8..40+n
    8  2  version (1)        10  2  flags (bit 0: voted_for is set)
   12  2  n = vote length    14  2  reserved, zero
   16  8  sequence           24  8  term
   32  8  commit             40  n  voted_for, UTF-8
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

from colonymesh.consensus.storage.errors import CorruptHardStateError, StorageUsageError
from colonymesh.consensus.storage.fsutil import pwrite_all, read_file, write_atomic
from colonymesh.consensus.storage.records import INDEX_MAX, RecordError
from colonymesh.consensus.types import HardState, LogIndex, NodeId, Term

SLOT_BYTES = 4096
NODE_ID_BYTES_MAX = 1024
_MAGIC = b"CMHS"
_VERSION = 1
_SLOT = struct.Struct("<4sIHHHHQQQ")
_FLAG_VOTED = 1


def encode_slot(state: HardState, seq: int) -> bytes:
    vote = b"" if state.voted_for is None else state.voted_for.encode("utf-8")
    if len(vote) > NODE_ID_BYTES_MAX:
        raise StorageUsageError(f"voted_for is {len(vote)} bytes, limit {NODE_ID_BYTES_MAX}")
    if not (0 <= state.term <= INDEX_MAX and 0 <= state.commit <= INDEX_MAX):
        raise StorageUsageError(f"term or commit out of range in {state}")
    flags = 0 if state.voted_for is None else _FLAG_VOTED
    body = _SLOT.pack(b"", 0, _VERSION, flags, len(vote), 0, seq, state.term, state.commit)[8:]
    body += vote
    return _MAGIC + zlib.crc32(body).to_bytes(4, "little") + body


def decode_slot(buf: bytes) -> tuple[HardState, int]:
    """Return ``(state, sequence)``; raise RecordError if the slot is not valid."""
    if len(buf) < _SLOT.size:
        raise RecordError("hard state slot cut short")
    magic, crc, version, flags, vote_len, reserved, seq, term, commit = _SLOT.unpack_from(buf)
    if magic != _MAGIC:
        raise RecordError("bad hard state magic")
    if vote_len > NODE_ID_BYTES_MAX or _SLOT.size + vote_len > len(buf):
        raise RecordError(f"vote length {vote_len} out of range")
    end = _SLOT.size + vote_len
    if zlib.crc32(buf[8:end]) != crc:
        raise RecordError("hard state checksum mismatch")
    if version != _VERSION or reserved or flags & ~_FLAG_VOTED:
        raise RecordError("unsupported hard state version or flags")
    if term > INDEX_MAX or commit > INDEX_MAX or seq == 0:
        raise RecordError("hard state field out of range")
    if not flags & _FLAG_VOTED and vote_len:
        raise RecordError("vote bytes without the voted flag")
    try:
        vote = buf[_SLOT.size : end].decode("utf-8") if flags & _FLAG_VOTED else None
    except UnicodeDecodeError:
        raise RecordError("voted_for is not UTF-8") from None
    voted = None if vote is None else NodeId(vote)
    return HardState(Term(term), voted, LogIndex(commit)), seq


class HardStateFile:
    """The open hard state file; see the module docstring for the protocol."""

    __slots__ = ("_durable_slot", "_fd", "_path", "_pending_slot", "_seq", "state")

    def __init__(self, path: Path, fd: int, state: HardState, slot: int, seq: int) -> None:
        self._path = path
        self._fd = fd
        self.state = state  # the latest state written (durable after sync())
        self._durable_slot = slot
        self._pending_slot: int | None = None  # slot written since the last sync
        self._seq = seq

    @classmethod
    def open(cls, path: Path, *, fsync: bool) -> HardStateFile:
        if not path.exists():
            initial = encode_slot(HardState(), 1).ljust(2 * SLOT_BYTES, b"\0")
            write_atomic(path, initial, fsync=fsync)
        buf = read_file(path)
        best: tuple[HardState, int, int] | None = None
        reasons: list[str] = []
        for slot in (0, 1):
            try:
                state, seq = decode_slot(buf[slot * SLOT_BYTES : (slot + 1) * SLOT_BYTES])
            except RecordError as exc:
                reasons.append(f"slot {slot}: {exc.reason}")
                continue
            if best is None or seq > best[2]:
                best = (state, slot, seq)
        if best is None:
            raise CorruptHardStateError(path, 0, "; ".join(reasons))
        fd = os.open(path, os.O_RDWR)
        if fsync:
            # The winning slot may be a write a crashed process never synced:
            # make it durable before the other slot, the old durable one, is reused.
            os.fdatasync(fd)
        return cls(path, fd, best[0], best[1], best[2])

    @property
    def dirty(self) -> bool:
        return self._pending_slot is not None

    def save(self, state: HardState) -> None:
        """Write ``state`` into the non-durable slot; durable after :meth:`sync`."""
        if state == self.state:
            return
        buf = encode_slot(state, self._seq + 1)
        slot = 1 - self._durable_slot
        pwrite_all(self._fd, buf, slot * SLOT_BYTES)
        self._seq += 1
        self._pending_slot = slot
        self.state = state

    def sync(self, *, fsync: bool) -> None:
        if self._pending_slot is None:
            return
        if fsync:
            os.fdatasync(self._fd)
        self._durable_slot = self._pending_slot
        self._pending_slot = None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
