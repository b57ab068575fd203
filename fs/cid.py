"""Content identifiers: unsigned varints, multihash, multibase and CIDs.

Owns the IPFS identifier formats we speak, written from the multiformats
specs (github.com/multiformats/{unsigned-varint,multihash,multibase,cid}):

* unsigned varint: LEB128, at most 9 bytes, minimal encoding only;
* multihash: ``varint(code) varint(len) digest``; we hash with sha2-256
  (0x12) and parse any code so foreign CIDs are readable;
* multibase: base32 lower-case without padding (prefix ``b``, the CIDv1
  default) and base58btc (prefix ``z``, and the bare form of CIDv0);
* CID: v1 is ``varint(1) varint(codec) multihash``; v0 is a bare sha2-256
  multihash of a dag-pb block, written in base58btc (``Qm...``).

Invariants: every decoder is strict and total over `bytes`/`str` -- it
returns a value or raises `CidError`, nothing else; a decoded value
re-encodes to exactly the input (non-canonical varints or base encodings are
rejected, so one CID has one spelling); inputs are size-capped before any
work is done. Pure functions, no I/O.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Final

from colonymesh.fs.errors import CidError, UnsupportedError

CODEC_RAW: Final = 0x55
CODEC_DAG_PB: Final = 0x70
MH_IDENTITY: Final = 0x00
MH_SHA2_256: Final = 0x12
SHA2_256_LEN: Final = 32

VARINT_BYTES_MAX: Final = 9
DIGEST_BYTES_MAX: Final = 64
CID_BYTES_MAX: Final = 2 * VARINT_BYTES_MAX + VARINT_BYTES_MAX * 2 + DIGEST_BYTES_MAX
CID_STR_MAX: Final = 2 * CID_BYTES_MAX

_B58_ALPHABET: Final = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX: Final = {c: i for i, c in enumerate(_B58_ALPHABET)}
_B32_ALPHABET: Final = frozenset("abcdefghijklmnopqrstuvwxyz234567")


def encode_varint(value: int) -> bytes:
    """Encode a non-negative int as a multiformats unsigned varint."""
    if value < 0 or value >= 1 << (7 * VARINT_BYTES_MAX):
        raise CidError(f"varint out of range: {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(data: bytes, offset: int = 0) -> tuple[int, int]:
    """Decode one unsigned varint at `offset`; return (value, next offset)."""
    value = 0
    for i in range(VARINT_BYTES_MAX):
        pos = offset + i
        if pos >= len(data):
            raise CidError("truncated varint")
        byte = data[pos]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if byte == 0 and i > 0:
                raise CidError("non-minimal varint")
            return value, pos + 1
    raise CidError("varint longer than 9 bytes")


@dataclass(frozen=True, slots=True)
class Multihash:
    """A self-describing digest: hash function code and digest bytes."""

    code: int
    digest: bytes

    def to_bytes(self) -> bytes:
        return encode_varint(self.code) + encode_varint(len(self.digest)) + self.digest

    @classmethod
    def sha2_256(cls, data: bytes | bytearray | memoryview) -> Multihash:
        return cls(MH_SHA2_256, hashlib.sha256(data).digest())

    def verify(self, data: bytes | bytearray | memoryview) -> bool:
        """True if `data` hashes to this digest. Raises `UnsupportedError` for unknown codes."""
        if self.code == MH_SHA2_256:
            return hashlib.sha256(data).digest() == self.digest
        if self.code == MH_IDENTITY:
            return bytes(data) == self.digest
        raise UnsupportedError(f"unsupported multihash code 0x{self.code:x}")


def decode_multihash(data: bytes, offset: int = 0) -> tuple[Multihash, int]:
    """Decode a multihash at `offset`; return (multihash, next offset)."""
    code, pos = decode_varint(data, offset)
    length, pos = decode_varint(data, pos)
    if length > DIGEST_BYTES_MAX:
        raise CidError(f"digest of {length} bytes exceeds {DIGEST_BYTES_MAX}")
    if code == MH_SHA2_256 and length != SHA2_256_LEN:
        raise CidError(f"sha2-256 digest must be 32 bytes, got {length}")
    end = pos + length
    if end > len(data):
        raise CidError("truncated multihash digest")
    return Multihash(code, bytes(data[pos:end])), end


def b32_encode(data: bytes) -> str:
    """RFC 4648 base32, lower-case, no padding (multibase 'b' body)."""
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def b32_decode(text: str) -> bytes:
    if not set(text) <= _B32_ALPHABET:
        raise CidError("invalid base32 character")
    if len(text) % 8 in (1, 3, 6):
        raise CidError("impossible base32 length")
    padded = text.upper() + "=" * (-len(text) % 8)
    data = base64.b32decode(padded)
    if b32_encode(data) != text:
        # Non-zero trailing bits: another spelling of the same bytes.
        raise CidError("non-canonical base32")
    return data


def b58_encode(data: bytes) -> str:
    """base58btc (Bitcoin alphabet), leading zero bytes as '1'."""
    zeros = len(data) - len(data.lstrip(b"\0"))
    number = int.from_bytes(data, "big")
    chars: list[str] = []
    while number:
        number, rem = divmod(number, 58)
        chars.append(_B58_ALPHABET[rem])
    return "1" * zeros + "".join(reversed(chars))


def b58_decode(text: str) -> bytes:
    number = 0
    for ch in text:
        digit = _B58_INDEX.get(ch)
        if digit is None:
            raise CidError("invalid base58 character")
        number = number * 58 + digit
    zeros = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * zeros + body


@dataclass(frozen=True, slots=True)
class Cid:
    """An IPFS content identifier (v0 or v1)."""

    version: int
    codec: int
    multihash: Multihash

    def __post_init__(self) -> None:
        if self.version == 0:
            if self.codec != CODEC_DAG_PB or self.multihash.code != MH_SHA2_256:
                raise CidError("CIDv0 is only dag-pb over sha2-256")
        elif self.version != 1:
            raise CidError(f"unsupported CID version {self.version}")

    @classmethod
    def of(cls, codec: int, block: bytes | bytearray | memoryview) -> Cid:
        """The CIDv1 (sha2-256) of `block` under `codec`."""
        return cls(1, codec, Multihash.sha2_256(block))

    def to_bytes(self) -> bytes:
        if self.version == 0:
            return self.multihash.to_bytes()
        return encode_varint(1) + encode_varint(self.codec) + self.multihash.to_bytes()

    def encode(self) -> str:
        """Canonical text: base32 'b...' for v1, base58btc 'Qm...' for v0."""
        if self.version == 0:
            return b58_encode(self.to_bytes())
        return "b" + b32_encode(self.to_bytes())

    def to_v1(self) -> Cid:
        return Cid(1, self.codec, self.multihash)

    def verify(self, block: bytes | bytearray | memoryview) -> bool:
        """True if `block` is the content this CID names."""
        return self.multihash.verify(block)

    def __str__(self) -> str:
        return self.encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Cid:
        """Decode a binary CID; the whole of `data` must be consumed."""
        cid, end = decode_cid_bytes(data, 0)
        if end != len(data):
            raise CidError("trailing bytes after CID")
        return cid

    @classmethod
    def parse(cls, text: str) -> Cid:
        """Decode a CID string (v0 'Qm...', v1 multibase 'b...' or 'z...')."""
        if not isinstance(text, str):
            raise CidError("CID text must be a str")
        if not text or len(text) > CID_STR_MAX:
            raise CidError("CID text empty or too long")
        if len(text) == 46 and text.startswith("Qm"):
            data = b58_decode(text)
            if b58_encode(data) != text:
                raise CidError("non-canonical base58")
        elif text[0] == "b":
            data = b32_decode(text[1:])
        elif text[0] == "z":
            data = b58_decode(text[1:])
            if b58_encode(data) != text[1:]:
                raise CidError("non-canonical base58")
        else:
            raise CidError(f"unsupported multibase prefix {text[0]!r}")
        cid = cls.from_bytes(data)
        if cid.version == 0 and not text.startswith("Qm"):
            raise CidError("CIDv0 must be written as a bare base58btc string")
        return cid


def decode_cid_bytes(data: bytes, offset: int) -> tuple[Cid, int]:
    """Decode a binary CID starting at `offset`; return (cid, next offset)."""
    if data[offset : offset + 2] == bytes((MH_SHA2_256, SHA2_256_LEN)):
        multihash, end = decode_multihash(data, offset)
        return Cid(0, CODEC_DAG_PB, multihash), end
    version, pos = decode_varint(data, offset)
    if version != 1:
        raise CidError(f"unsupported CID version {version}")
    codec, pos = decode_varint(data, pos)
    multihash, end = decode_multihash(data, pos)
    return Cid(1, codec, multihash), end
