"""The canonical wire and on-disk encoding: strict, size-capped CBOR.

Everything colonymesh signs or stores is canonical CBOR (RFC 8949 §4.2.1), so
that one value has exactly one encoding and a signature over it is stable.
:func:`decode` is the only way bytes from outside become Python values. It
refuses, with :class:`MalformedFrame`, anything that is not the canonical
encoding of plain data: trailing bytes, indefinite lengths, duplicate map keys,
tags, floats that are not shortest form, nesting deeper than a bound. It never
raises anything else, whatever the input.
"""

from __future__ import annotations

import io
from typing import Any

import cbor2

from colonymesh.node.errors import FrameTooLarge, MalformedFrame

FRAME_BYTES_MAX_DEFAULT = 4 * 1024 * 1024
DEPTH_MAX = 16
_PLAIN_SCALARS = (int, str, bytes, bool, float, type(None))


def encode(value: Any) -> bytes:
    """The canonical CBOR encoding of plain data (ints, str, bytes, lists, maps)."""
    return cbor2.dumps(value, canonical=True)


def decode(
    data: bytes, *, frame_bytes_max: int = FRAME_BYTES_MAX_DEFAULT, canonical: bool = True
) -> Any:
    """Decode one canonical CBOR item that fills ``data`` exactly.

    ``canonical=False`` is for unsigned frames on hot paths (Raft) whose
    caller checks the exact type of every value it reads: it skips the
    re-encoding check and the plain-data walk; every other rule still holds.
    """
    if len(data) > frame_bytes_max:
        raise FrameTooLarge(f"frame of {len(data)} bytes exceeds the cap of {frame_bytes_max}")
    stream = io.BytesIO(data)
    try:
        decoder = cbor2.CBORDecoder(
            stream,
            tag_hook=_refuse_tag,
            max_depth=DEPTH_MAX,
            allow_indefinite=False,
            allow_duplicate_keys=False,
        )
        value = decoder.decode()
    except MalformedFrame:
        raise
    except Exception as error:  # cbor2 raises several types on hostile input
        raise MalformedFrame(f"not well-formed CBOR: {error}") from None
    if stream.tell() != len(data):
        raise MalformedFrame(f"{len(data) - stream.tell()} trailing bytes after the CBOR item")
    if not canonical:
        return value
    _require_plain(value, 0)
    try:
        reencoded = encode(value)
    except Exception as error:
        raise MalformedFrame(f"unencodable value: {error}") from None
    if reencoded != data:
        raise MalformedFrame("CBOR is well-formed but not in canonical form")
    return value


def _refuse_tag(decoder: Any, tag: Any) -> Any:
    raise MalformedFrame(f"CBOR tag {getattr(tag, 'tag', '?')} is not allowed")


def _require_plain(value: Any, depth: int) -> None:
    if depth > DEPTH_MAX:
        raise MalformedFrame("CBOR nesting too deep")
    if isinstance(value, _PLAIN_SCALARS):
        return
    if isinstance(value, list):
        for item in value:
            _require_plain(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise MalformedFrame("map keys must be text or integers")
            _require_plain(item, depth + 1)
        return
    raise MalformedFrame(f"CBOR value of type {type(value).__name__} is not plain data")
