"""A minimal, strict protobuf codec for dag-pb nodes and UnixFS Data messages.

Owns the two message families IPFS files are made of, written from the
specs (ipld/specs dag-pb, ipfs/specs UNIXFS):

    message PBLink { optional bytes Hash = 1; optional string Name = 2; optional uint64 Tsize = 3; }
    message PBNode { repeated PBLink Links = 2; optional bytes Data = 1; }
    message Data   { required Type Type = 1; optional bytes Data = 2;
                     optional uint64 filesize = 3; repeated uint64 blocksizes = 4;
                     optional uint64 hashType = 5; optional uint64 fanout = 6;
                     optional uint32 mode = 7; optional UnixTime mtime = 8; }
    message UnixTime { required int64 Seconds = 1; optional fixed32 FractionalNanoseconds = 2; }

Encoding is canonical dag-pb: a node writes its Links (sorted by the caller)
before its Data, a link writes Hash, Name, Tsize in that order, and absent
optional fields are omitted (an empty-string Name is present, as IPFS's
importers write it for file links).

Decoding is strict and total: input is size-capped first, varints must be
minimal, unknown fields, wrong wire types, duplicated singular fields,
out-of-order link fields and trailing garbage raise `ProtobufError`; a link
Hash must be a valid CID (`CidError`). Nothing else escapes. Pure functions,
no I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from colonymesh.fs.cid import Cid, decode_cid_bytes
from colonymesh.fs.errors import CidError, ProtobufError

BLOCK_BYTES_MAX: Final = 2 * 1024 * 1024  # IPFS's largest block exchanged over bitswap
LINKS_MAX: Final = 65_536
NAME_BYTES_MAX: Final = 4096

_WT_VARINT: Final = 0
_WT_I64: Final = 1
_WT_LEN: Final = 2
_WT_I32: Final = 5
_U64_MAX: Final = (1 << 64) - 1


# --- wire level -------------------------------------------------------------


def _put_varint(out: bytearray, value: int) -> None:
    if value < 0 or value > _U64_MAX:
        raise ProtobufError(f"varint out of range: {value}")
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _put_key(out: bytearray, number: int, wire_type: int) -> None:
    _put_varint(out, (number << 3) | wire_type)


def _put_bytes(out: bytearray, number: int, value: bytes) -> None:
    _put_key(out, number, _WT_LEN)
    _put_varint(out, len(value))
    out += value


def _put_uint(out: bytearray, number: int, value: int) -> None:
    _put_key(out, number, _WT_VARINT)
    _put_varint(out, value)


def _get_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for i in range(10):
        if pos + i >= len(data):
            raise ProtobufError("truncated varint")
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if byte == 0 and i > 0:
                raise ProtobufError("non-minimal varint")
            if value > _U64_MAX:
                raise ProtobufError("varint exceeds 64 bits")
            return value, pos + i + 1
    raise ProtobufError("varint longer than 10 bytes")


@dataclass(frozen=True, slots=True)
class _Field:
    number: int
    wire_type: int
    value: int | bytes


def _fields(data: bytes) -> Iterator[_Field]:
    """Yield the raw fields of one message; wire types other than varint/len/i32 are refused."""
    pos = 0
    while pos < len(data):
        key, pos = _get_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise ProtobufError("field number 0")
        if wire_type == _WT_VARINT:
            value, pos = _get_varint(data, pos)
            yield _Field(number, wire_type, value)
        elif wire_type == _WT_LEN:
            length, pos = _get_varint(data, pos)
            end = pos + length
            if end > len(data):
                raise ProtobufError("length-delimited field runs past the end")
            yield _Field(number, wire_type, data[pos:end])
            pos = end
        elif wire_type == _WT_I32:
            if pos + 4 > len(data):
                raise ProtobufError("truncated fixed32")
            yield _Field(number, wire_type, int.from_bytes(data[pos : pos + 4], "little"))
            pos += 4
        else:
            raise ProtobufError(f"unsupported wire type {wire_type} (field {number})")


def _expect_bytes(f: _Field, name: str) -> bytes:
    if f.wire_type != _WT_LEN or not isinstance(f.value, bytes):
        raise ProtobufError(f"{name}: expected length-delimited")
    return f.value


def _expect_uint(f: _Field, name: str) -> int:
    if f.wire_type != _WT_VARINT or not isinstance(f.value, int):
        raise ProtobufError(f"{name}: expected varint")
    return f.value


# --- dag-pb -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PBLink:
    """A named, sized link to another block. `name=None` means the field is absent."""

    cid: Cid
    name: str | None = None
    tsize: int | None = None


@dataclass(frozen=True, slots=True)
class PBNode:
    """A dag-pb node: opaque `data` (UnixFS Data for files) plus ordered links."""

    links: tuple[PBLink, ...] = ()
    data: bytes | None = None


def encode_pbnode(node: PBNode) -> bytes:
    out = bytearray()
    for link in node.links:
        body = bytearray()
        _put_bytes(body, 1, link.cid.to_bytes())
        if link.name is not None:
            _put_bytes(body, 2, link.name.encode("utf-8"))
        if link.tsize is not None:
            _put_uint(body, 3, link.tsize)
        _put_bytes(out, 2, bytes(body))
    if node.data is not None:
        _put_bytes(out, 1, node.data)
    return bytes(out)


def _decode_pblink(data: bytes) -> PBLink:
    cid: Cid | None = None
    name: str | None = None
    tsize: int | None = None
    last = 0
    for f in _fields(data):
        if f.number <= last:
            raise ProtobufError("PBLink fields duplicated or out of order")
        last = f.number
        if f.number == 1:
            raw = _expect_bytes(f, "PBLink.Hash")
            try:
                cid, end = decode_cid_bytes(raw, 0)
            except (CidError, IndexError) as exc:
                raise ProtobufError(f"PBLink.Hash is not a CID: {exc}") from exc
            if end != len(raw):
                raise ProtobufError("PBLink.Hash has trailing bytes")
        elif f.number == 2:
            raw = _expect_bytes(f, "PBLink.Name")
            if len(raw) > NAME_BYTES_MAX:
                raise ProtobufError("PBLink.Name too long")
            try:
                name = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ProtobufError("PBLink.Name is not UTF-8") from exc
        elif f.number == 3:
            tsize = _expect_uint(f, "PBLink.Tsize")
        else:
            raise ProtobufError(f"unknown PBLink field {f.number}")
    if cid is None:
        raise ProtobufError("PBLink without Hash")
    return PBLink(cid, name, tsize)


def decode_pbnode(data: bytes) -> PBNode:
    """Strictly decode a dag-pb block."""
    if len(data) > BLOCK_BYTES_MAX:
        raise ProtobufError(f"block of {len(data)} bytes exceeds {BLOCK_BYTES_MAX}")
    links: list[PBLink] = []
    node_data: bytes | None = None
    for f in _fields(bytes(data)):
        if f.number == 2:
            if node_data is not None:
                raise ProtobufError("PBNode.Links after Data")
            if len(links) >= LINKS_MAX:
                raise ProtobufError("too many links")
            links.append(_decode_pblink(_expect_bytes(f, "PBNode.Links")))
        elif f.number == 1:
            if node_data is not None:
                raise ProtobufError("duplicate PBNode.Data")
            node_data = _expect_bytes(f, "PBNode.Data")
        else:
            raise ProtobufError(f"unknown PBNode field {f.number}")
    return PBNode(tuple(links), node_data)


# --- UnixFS Data ------------------------------------------------------------


class DataType(enum.IntEnum):
    RAW = 0
    DIRECTORY = 1
    FILE = 2
    METADATA = 3
    SYMLINK = 4
    HAMT_SHARD = 5


@dataclass(frozen=True, slots=True)
class UnixTime:
    seconds: int
    nanos: int | None = None


@dataclass(frozen=True, slots=True)
class UnixFsData:
    """The UnixFS `Data` message carried in PBNode.Data."""

    type: DataType
    data: bytes | None = None
    filesize: int | None = None
    blocksizes: tuple[int, ...] = field(default=())
    hash_type: int | None = None
    fanout: int | None = None
    mode: int | None = None
    mtime: UnixTime | None = None


def encode_unixfs(msg: UnixFsData) -> bytes:
    out = bytearray()
    _put_uint(out, 1, int(msg.type))
    if msg.data is not None:
        _put_bytes(out, 2, msg.data)
    if msg.filesize is not None:
        _put_uint(out, 3, msg.filesize)
    for size in msg.blocksizes:
        _put_uint(out, 4, size)
    if msg.hash_type is not None:
        _put_uint(out, 5, msg.hash_type)
    if msg.fanout is not None:
        _put_uint(out, 6, msg.fanout)
    if msg.mode is not None:
        _put_uint(out, 7, msg.mode)
    if msg.mtime is not None:
        body = bytearray()
        _put_uint(body, 1, msg.mtime.seconds & _U64_MAX)
        if msg.mtime.nanos is not None:
            _put_key(body, 2, _WT_I32)
            body += msg.mtime.nanos.to_bytes(4, "little")
        _put_bytes(out, 8, bytes(body))
    return bytes(out)


def _decode_unixtime(data: bytes) -> UnixTime:
    seconds: int | None = None
    nanos: int | None = None
    for f in _fields(data):
        if f.number == 1 and seconds is None:
            raw = _expect_uint(f, "UnixTime.Seconds")
            seconds = raw - (1 << 64) if raw >= 1 << 63 else raw
        elif f.number == 2 and nanos is None and f.wire_type == _WT_I32:
            if not isinstance(f.value, int) or not 0 < f.value < 1_000_000_000:
                raise ProtobufError("UnixTime.FractionalNanoseconds out of range")
            nanos = f.value
        else:
            raise ProtobufError(f"unexpected UnixTime field {f.number}")
    if seconds is None:
        raise ProtobufError("UnixTime without Seconds")
    return UnixTime(seconds, nanos)


def decode_unixfs(data: bytes) -> UnixFsData:
    """Strictly decode a UnixFS Data message (blocksizes packed or not)."""
    if len(data) > BLOCK_BYTES_MAX:
        raise ProtobufError("UnixFS Data too large")
    values: dict[int, int | bytes | UnixTime] = {}
    blocksizes: list[int] = []
    for f in _fields(bytes(data)):
        if f.number == 4:
            if f.wire_type == _WT_LEN:
                packed = _expect_bytes(f, "blocksizes")
                pos = 0
                while pos < len(packed):
                    size, pos = _get_varint(packed, pos)
                    blocksizes.append(size)
            else:
                blocksizes.append(_expect_uint(f, "blocksizes"))
            if len(blocksizes) > LINKS_MAX:
                raise ProtobufError("too many blocksizes")
            continue
        if f.number in values:
            raise ProtobufError(f"duplicate UnixFS field {f.number}")
        if f.number in (1, 3, 5, 6, 7):
            values[f.number] = _expect_uint(f, f"UnixFS field {f.number}")
        elif f.number == 2:
            values[2] = _expect_bytes(f, "UnixFS Data")
        elif f.number == 8:
            values[8] = _decode_unixtime(_expect_bytes(f, "UnixFS mtime"))
        else:
            raise ProtobufError(f"unknown UnixFS field {f.number}")
    raw_type = values.get(1)
    if not isinstance(raw_type, int):
        raise ProtobufError("UnixFS Data without Type")
    try:
        data_type = DataType(raw_type)
    except ValueError as exc:
        raise ProtobufError(f"unknown UnixFS type {raw_type}") from exc
    mode = values.get(7)
    mtime = values.get(8)
    if isinstance(mode, int) and mode > 0xFFFFFFFF:
        raise ProtobufError("UnixFS mode exceeds uint32")
    return UnixFsData(
        type=data_type,
        data=_opt_bytes(values.get(2)),
        filesize=_opt_int(values.get(3)),
        blocksizes=tuple(blocksizes),
        hash_type=_opt_int(values.get(5)),
        fanout=_opt_int(values.get(6)),
        mode=_opt_int(mode),
        mtime=mtime if isinstance(mtime, UnixTime) else None,
    )


def _opt_int(value: int | bytes | UnixTime | None) -> int | None:
    return value if isinstance(value, int) else None


def _opt_bytes(value: int | bytes | UnixTime | None) -> bytes | None:
    return value if isinstance(value, bytes) else None
