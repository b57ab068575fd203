"""The chunk-exchange wire messages and their strict binary codec.

Owns the bytes of ``/colonymesh/fs/1.0.0`` payloads (the driver adds the
varint length prefix). One message is one type byte and a body::

    0x01 WANT_BLOCKS   varint(n) n*(varint(len) cid)     send me these blocks
    0x02 CANCEL        varint(n) n*(varint(len) cid)     forget these wants
    0x03 BLOCK         varint(len) cid  data...           one block (data to the end)
    0x04 DONT_HAVE     varint(n) n*(varint(len) cid)     I hold none of these
    0x05 WANT_HAVES    varint(n) n*(varint(len) cid)     do you hold these?
    0x06 HAVES         varint(n) n*(varint(len) cid)     I hold these

A binary layout rather than CBOR because a BLOCK carries up to a MiB and is
the hot path: decoding it is one slice, no per-field allocation.

Invariants: `decode` is total over `bytes` -- a message or `ExchangeDecodeError`,
nothing else; caps (`CIDS_PER_MESSAGE_MAX`, `BLOCK_DATA_BYTES_MAX`) are checked
before any work; a decoded message re-encodes to exactly its input (no
trailing bytes, canonical varints, canonical CIDs). Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from colonymesh.fs.cid import CID_BYTES_MAX, Cid, decode_varint, encode_varint
from colonymesh.fs.errors import CidError, FsDecodeError

BLOCK_DATA_BYTES_MAX: Final = 1024 * 1024
CIDS_PER_MESSAGE_MAX: Final = 1024
MESSAGE_BYTES_MAX: Final = BLOCK_DATA_BYTES_MAX + 2 * CID_BYTES_MAX + 16

T_WANT_BLOCKS: Final = 0x01
T_CANCEL: Final = 0x02
T_BLOCK: Final = 0x03
T_DONT_HAVE: Final = 0x04
T_WANT_HAVES: Final = 0x05
T_HAVES: Final = 0x06


class ExchangeDecodeError(FsDecodeError):
    """A chunk-exchange message that is malformed or over a cap (blame: the peer)."""


@dataclass(frozen=True, slots=True)
class WantBlocks:
    cids: tuple[Cid, ...]


@dataclass(frozen=True, slots=True)
class Cancel:
    cids: tuple[Cid, ...]


@dataclass(frozen=True, slots=True)
class BlockMessage:
    cid: Cid
    data: bytes


@dataclass(frozen=True, slots=True)
class DontHave:
    cids: tuple[Cid, ...]


@dataclass(frozen=True, slots=True)
class WantHaves:
    cids: tuple[Cid, ...]


@dataclass(frozen=True, slots=True)
class Haves:
    cids: tuple[Cid, ...]


Message = WantBlocks | Cancel | BlockMessage | DontHave | WantHaves | Haves
CidListMessage = WantBlocks | Cancel | DontHave | WantHaves | Haves

_LIST_TYPES: Final[dict[int, type[CidListMessage]]] = {
    T_WANT_BLOCKS: WantBlocks,
    T_CANCEL: Cancel,
    T_DONT_HAVE: DontHave,
    T_WANT_HAVES: WantHaves,
    T_HAVES: Haves,
}
_LIST_CODES: Final[dict[type[CidListMessage], int]] = {v: k for k, v in _LIST_TYPES.items()}


def _put_cid(out: bytearray, cid: Cid) -> None:
    raw = cid.to_bytes()
    out += encode_varint(len(raw))
    out += raw


def encode(message: Message) -> bytes:
    """The payload bytes of `message`. Raises `ExchangeDecodeError` if it breaks a cap."""
    if isinstance(message, BlockMessage):
        if len(message.data) > BLOCK_DATA_BYTES_MAX:
            raise ExchangeDecodeError(f"block of {len(message.data)} bytes exceeds the cap")
        head = bytearray((T_BLOCK,))
        _put_cid(head, message.cid)
        return bytes(head) + message.data
    if len(message.cids) > CIDS_PER_MESSAGE_MAX:
        raise ExchangeDecodeError(f"{len(message.cids)} CIDs exceed {CIDS_PER_MESSAGE_MAX}")
    out = bytearray((_LIST_CODES[type(message)],))
    out += encode_varint(len(message.cids))
    for cid in message.cids:
        _put_cid(out, cid)
    return bytes(out)


def block_header(cid: Cid) -> bytes:
    """The bytes of a BLOCK message before its data (lets the driver avoid one copy)."""
    head = bytearray((T_BLOCK,))
    _put_cid(head, cid)
    return bytes(head)


def _get_varint(data: bytes, pos: int) -> tuple[int, int]:
    try:
        return decode_varint(data, pos)
    except CidError as error:
        raise ExchangeDecodeError(f"bad varint: {error}") from None


def _get_cid(data: bytes, pos: int) -> tuple[Cid, int]:
    length, pos = _get_varint(data, pos)
    if length == 0 or length > CID_BYTES_MAX or pos + length > len(data):
        raise ExchangeDecodeError(f"bad CID length {length}")
    raw = data[pos : pos + length]
    try:
        cid = Cid.from_bytes(raw)
    except CidError as error:
        raise ExchangeDecodeError(f"bad CID: {error}") from None
    if cid.to_bytes() != raw:
        raise ExchangeDecodeError("non-canonical CID")
    return cid, pos + length


def decode(data: bytes) -> Message:
    """Decode one payload strictly; raises `ExchangeDecodeError` on anything else."""
    if not isinstance(data, bytes):
        raise ExchangeDecodeError("payload must be bytes")
    if not data:
        raise ExchangeDecodeError("empty message")
    if len(data) > MESSAGE_BYTES_MAX:
        raise ExchangeDecodeError(f"message of {len(data)} bytes exceeds {MESSAGE_BYTES_MAX}")
    kind = data[0]
    if kind == T_BLOCK:
        cid, pos = _get_cid(data, 1)
        if len(data) - pos > BLOCK_DATA_BYTES_MAX:
            raise ExchangeDecodeError("block data exceeds the cap")
        return BlockMessage(cid, data[pos:])
    cls = _LIST_TYPES.get(kind)
    if cls is None:
        raise ExchangeDecodeError(f"unknown message type 0x{kind:02x}")
    count, pos = _get_varint(data, 1)
    if count > CIDS_PER_MESSAGE_MAX:
        raise ExchangeDecodeError(f"{count} CIDs exceed {CIDS_PER_MESSAGE_MAX}")
    cids: list[Cid] = []
    for _ in range(count):
        cid, pos = _get_cid(data, pos)
        cids.append(cid)
    if pos != len(data):
        raise ExchangeDecodeError("trailing bytes after the CID list")
    return cls(tuple(cids))
