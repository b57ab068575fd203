"""A tiny strict protobuf (proto2/proto3 wire format) codec for libp2p's messages.

Only what libp2p's small messages need: varint (wire type 0) and
length-delimited (wire type 2) fields are produced; fixed 64/32-bit fields
(types 1, 5) are skipped when decoding; groups (3, 4) and anything else are
refused. Decoding returns the fields in wire order; a schema step
(:func:`expect`) then checks field types and multiplicity, so unknown fields
are ignored (protobuf's rule) while malformed ones are errors. Pure; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from colonymesh.node.transport.errors import FrameTooLarge, MalformedMessage
from colonymesh.node.transport.varint import decode_uvarint, encode_uvarint

WIRE_VARINT = 0
WIRE_FIXED64 = 1
WIRE_BYTES = 2
WIRE_FIXED32 = 5
_FIELD_NUMBER_MAX = (1 << 29) - 1


@dataclass(frozen=True, slots=True)
class Field:
    number: int
    wire_type: int
    value: int | bytes


def encode_varint_field(number: int, value: int) -> bytes:
    return encode_uvarint(number << 3 | WIRE_VARINT) + encode_uvarint(value)


def encode_bytes_field(number: int, value: bytes) -> bytes:
    return encode_uvarint(number << 3 | WIRE_BYTES) + encode_uvarint(len(value)) + value


def encode_message(fields: Iterable[tuple[int, int | bytes | str]]) -> bytes:
    """Encode ``(number, value)`` pairs: ints as varints, bytes/str as length-delimited."""
    out = bytearray()
    for number, value in fields:
        if isinstance(value, int):
            out += encode_varint_field(number, value)
        elif isinstance(value, str):
            out += encode_bytes_field(number, value.encode())
        else:
            out += encode_bytes_field(number, value)
    return bytes(out)


def decode_message(data: bytes, *, fields_max: int = 1024) -> list[Field]:
    """All fields of ``data`` in wire order; typed errors for anything malformed."""
    fields: list[Field] = []
    position = 0
    end = len(data)
    while position < end:
        if len(fields) >= fields_max:
            raise FrameTooLarge(f"protobuf message has more than {fields_max} fields")
        key = _varint(data, position)
        tag, position = key
        number, wire_type = tag >> 3, tag & 7
        if number == 0 or number > _FIELD_NUMBER_MAX:
            raise MalformedMessage(f"protobuf field number {number} out of range")
        if wire_type == WIRE_VARINT:
            value, position = _varint(data, position)
            fields.append(Field(number, wire_type, value))
        elif wire_type == WIRE_BYTES:
            length, position = _varint(data, position)
            if length > end - position:
                raise MalformedMessage("protobuf field runs past the end of the message")
            fields.append(Field(number, wire_type, bytes(data[position : position + length])))
            position += length
        elif wire_type in (WIRE_FIXED64, WIRE_FIXED32):
            width = 8 if wire_type == WIRE_FIXED64 else 4
            if width > end - position:
                raise MalformedMessage("protobuf fixed field runs past the end")
            fields.append(
                Field(
                    number, wire_type, int.from_bytes(data[position : position + width], "little")
                )
            )
            position += width
        else:
            raise MalformedMessage(f"protobuf wire type {wire_type} is not supported")
    return fields


def _varint(data: bytes, position: int) -> tuple[int, int]:
    decoded = decode_uvarint(data, position)
    if decoded is None:
        raise MalformedMessage("protobuf varint truncated")
    return decoded


def single_bytes(fields: list[Field], number: int) -> bytes | None:
    """The one length-delimited field ``number``; the last wins (protobuf's rule)."""
    found: bytes | None = None
    for field in fields:
        if field.number == number:
            if not isinstance(field.value, bytes) or field.wire_type != WIRE_BYTES:
                raise MalformedMessage(f"protobuf field {number} must be length-delimited")
            found = field.value
    return found


def repeated_bytes(fields: list[Field], number: int) -> list[bytes]:
    out: list[bytes] = []
    for field in fields:
        if field.number == number:
            if not isinstance(field.value, bytes) or field.wire_type != WIRE_BYTES:
                raise MalformedMessage(f"protobuf field {number} must be length-delimited")
            out.append(field.value)
    return out


def single_varint(fields: list[Field], number: int) -> int | None:
    found: int | None = None
    for field in fields:
        if field.number == number:
            if not isinstance(field.value, int) or field.wire_type != WIRE_VARINT:
                raise MalformedMessage(f"protobuf field {number} must be a varint")
            found = field.value
    return found


def as_text(value: bytes, what: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedMessage(f"{what} is not UTF-8") from None
