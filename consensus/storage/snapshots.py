"""The latest Raft snapshot on disk: one file, replaced atomically.

A snapshot is written to ``snapshot.tmp``, fsynced, renamed over
``snapshot`` and the directory fsynced (``fsutil.write_atomic``), so after a
crash the file holds either the previous snapshot or the new one, whole.
Because of that, a snapshot file that fails its checksum is corruption, not
a crash artefact: :class:`CorruptSnapshotError`.

Layout (little-endian)::

    0  8  magic b"CMSNAP\\x00\\x01"   8  4  version (1)
   12  4  crc32 of bytes 16..end     16  8  index
   24  8  term                       32  4  c = conf length
   36  4  reserved, zero             40  8  d = data length
   48  c  conf: voters, then learners, each as u16 count and (u16 length, UTF-8) ids
   48+c d data
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from colonymesh.consensus.storage.errors import CorruptSnapshotError, StorageUsageError
from colonymesh.consensus.storage.fsutil import read_file, write_atomic
from colonymesh.consensus.storage.hardstate import NODE_ID_BYTES_MAX
from colonymesh.consensus.storage.records import INDEX_MAX, RecordError
from colonymesh.consensus.types import (
    ConfState,
    LogIndex,
    NodeId,
    Snapshot,
    SnapshotMeta,
    Term,
)

MAGIC = b"CMSNAP\x00\x01"
_VERSION = 1
_HEADER = struct.Struct("<8sIIQQIIQ")
MEMBERS_MAX = 4096
_U16 = struct.Struct("<H")


def _encode_ids(ids: tuple[NodeId, ...]) -> bytes:
    if len(ids) > MEMBERS_MAX:
        raise StorageUsageError(f"{len(ids)} members exceed the limit of {MEMBERS_MAX}")
    parts = [_U16.pack(len(ids))]
    for node in ids:
        raw = node.encode("utf-8")
        if len(raw) > NODE_ID_BYTES_MAX:
            raise StorageUsageError(f"node id of {len(raw)} bytes exceeds {NODE_ID_BYTES_MAX}")
        parts += [_U16.pack(len(raw)), raw]
    return b"".join(parts)


def encode_conf(conf: ConfState) -> bytes:
    return _encode_ids(conf.voters) + _encode_ids(conf.learners)


def _decode_ids(buf: bytes, pos: int) -> tuple[tuple[NodeId, ...], int]:
    if pos + 2 > len(buf):
        raise RecordError("conf member count cut short")
    (count,) = _U16.unpack_from(buf, pos)
    pos += 2
    if count > MEMBERS_MAX:
        raise RecordError(f"{count} members exceed the limit")
    ids: list[NodeId] = []
    for _ in range(count):
        if pos + 2 > len(buf):
            raise RecordError("conf member length cut short")
        (n,) = _U16.unpack_from(buf, pos)
        pos += 2
        if n > NODE_ID_BYTES_MAX or pos + n > len(buf):
            raise RecordError(f"conf member of {n} bytes out of range")
        try:
            ids.append(NodeId(buf[pos : pos + n].decode("utf-8")))
        except UnicodeDecodeError:
            raise RecordError("conf member is not UTF-8") from None
        pos += n
    return tuple(ids), pos


def decode_conf(buf: bytes) -> ConfState:
    voters, pos = _decode_ids(buf, 0)
    learners, pos = _decode_ids(buf, pos)
    if pos != len(buf):
        raise RecordError("trailing bytes after conf")
    return ConfState(voters=voters, learners=learners)


def encode_snapshot(snap: Snapshot) -> list[bytes]:
    """The file's bytes as ``[header, conf, data]`` (the data is not copied)."""
    meta = snap.meta
    if not (0 <= meta.index <= INDEX_MAX and 0 <= meta.term <= INDEX_MAX):
        raise StorageUsageError(f"snapshot index or term out of range: {meta}")
    conf = encode_conf(meta.conf)
    tail = _HEADER.pack(MAGIC, _VERSION, 0, meta.index, meta.term, len(conf), 0, len(snap.data))
    crc = zlib.crc32(snap.data, zlib.crc32(conf, zlib.crc32(tail[16:])))
    header = tail[:12] + crc.to_bytes(4, "little") + tail[16:]
    return [header, conf, snap.data]


def decode_snapshot(buf: bytes) -> Snapshot:
    if len(buf) < _HEADER.size:
        raise RecordError("snapshot header cut short")
    magic, version, crc, index, term, conf_len, reserved, data_len = _HEADER.unpack_from(buf)
    if magic != MAGIC:
        raise RecordError("bad snapshot magic")
    if _HEADER.size + conf_len + data_len != len(buf):
        raise RecordError("snapshot length fields disagree with the file size")
    if zlib.crc32(memoryview(buf)[16:]) != crc:
        raise RecordError("snapshot checksum mismatch")
    if version != _VERSION or reserved or index > INDEX_MAX or term > INDEX_MAX:
        raise RecordError("unsupported snapshot version or field out of range")
    conf_end = _HEADER.size + conf_len
    conf = decode_conf(buf[_HEADER.size : conf_end])
    meta = SnapshotMeta(index=LogIndex(index), term=Term(term), conf=conf)
    return Snapshot(meta=meta, data=buf[conf_end:])


def save_snapshot_file(path: Path, snap: Snapshot, *, fsync: bool) -> None:
    write_atomic(path, encode_snapshot(snap), fsync=fsync)


def load_snapshot_file(path: Path) -> Snapshot | None:
    """The snapshot stored at ``path``, or None if there is none."""
    try:
        buf = read_file(path)
    except FileNotFoundError:
        return None
    try:
        return decode_snapshot(buf)
    except RecordError as exc:
        raise CorruptSnapshotError(path, 0, exc.reason) from None
