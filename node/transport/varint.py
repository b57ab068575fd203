"""Unsigned LEB128 varints (multiformats ``unsigned-varint``), strict.

Decoding rejects non-minimal encodings and values above a caller's cap, so a
peer cannot smuggle two encodings of one value or announce a 2**63-byte frame.
Pure functions; no I/O.
"""

from __future__ import annotations

from colonymesh.node.transport.errors import FrameTooLarge, MalformedMessage

VARINT_BYTES_MAX = 9  # multiformats caps unsigned varints at 63 bits / 9 bytes


def encode_uvarint(value: int) -> bytes:
    """The minimal LEB128 encoding of ``value`` (0 <= value < 2**63)."""
    if value < 0 or value >= 1 << 63:
        raise ValueError(f"varint out of range: {value}")
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_uvarint(
    data: bytes | bytearray | memoryview, offset: int = 0, value_max: int = (1 << 63) - 1
) -> tuple[int, int] | None:
    """``(value, next_offset)``, or ``None`` when ``data`` ends mid-varint.

    Raises :class:`MalformedMessage` for a non-minimal or over-long encoding
    and :class:`FrameTooLarge` when the value exceeds ``value_max``.
    """
    value = 0
    shift = 0
    position = offset
    end = len(data)
    while position < end:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if byte == 0 and position - offset > 1:
                raise MalformedMessage("non-minimal varint")
            if value > value_max:
                raise FrameTooLarge(f"varint {value} exceeds cap {value_max}")
            return value, position
        shift += 7
        if position - offset >= VARINT_BYTES_MAX:
            raise MalformedMessage("varint longer than 9 bytes")
        if value > value_max:
            # Already too large before the last byte: fail early, no waiting for more.
            raise FrameTooLarge(f"varint exceeds cap {value_max}")
    return None


def length_prefixed(payload: bytes) -> bytes:
    """``payload`` preceded by its varint length."""
    return encode_uvarint(len(payload)) + payload
