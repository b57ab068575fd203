"""Length-prefixed frames on a byte stream: an unsigned varint, then that many bytes.

The prefix is libp2p's usual ``unsigned-varint`` framing. The cap is checked
on the prefix, before a byte of the body is buffered, so a peer announcing a
huge frame costs us nothing. :func:`split_frame` is the pure decoder (fuzzed
in the tests); :func:`receive_frame` drives it over a trio stream.
"""

from __future__ import annotations

import trio

from colonymesh.node.errors import FrameTooLarge, MalformedFrame
from colonymesh.node.peer.errors import StreamEnded
from colonymesh.node.transport import errors as transport_errors
from colonymesh.node.transport.varint import decode_uvarint, encode_uvarint

_RECEIVE_BYTES = 65536


def encode_frame(payload: bytes, frame_bytes_max: int) -> bytes:
    if len(payload) > frame_bytes_max:
        raise FrameTooLarge(f"frame of {len(payload)} bytes exceeds the cap of {frame_bytes_max}")
    return encode_uvarint(len(payload)) + payload


def split_frame(buffer: bytes, frame_bytes_max: int) -> tuple[bytes, bytes] | None:
    """``(frame, rest)`` once ``buffer`` holds a whole frame, ``None`` if it needs more.

    Raises :class:`FrameTooLarge` or :class:`MalformedFrame` (both ``WireError``).
    """
    try:
        decoded = decode_uvarint(buffer, 0, frame_bytes_max)
    except transport_errors.FrameTooLarge:
        raise FrameTooLarge(f"frame announced above the cap of {frame_bytes_max} bytes") from None
    except transport_errors.MalformedMessage as error:
        raise MalformedFrame(f"bad frame length prefix: {error}") from None
    if decoded is None:
        return None
    length, offset = decoded
    if len(buffer) - offset < length:
        return None
    return buffer[offset : offset + length], buffer[offset + length :]


async def send_frame(stream: trio.abc.SendStream, payload: bytes, frame_bytes_max: int) -> None:
    await stream.send_all(encode_frame(payload, frame_bytes_max))


async def receive_frame(stream: trio.abc.ReceiveStream, frame_bytes_max: int) -> bytes:
    """One whole frame; bytes after it are a protocol error (one frame per direction)."""
    buffer = b""
    while True:
        split = split_frame(buffer, frame_bytes_max)
        if split is not None:
            frame, rest = split
            if rest:
                raise MalformedFrame("bytes after the frame")
            return frame
        chunk = await stream.receive_some(_RECEIVE_BYTES)
        if not chunk:
            raise StreamEnded(f"stream ended after {len(buffer)} bytes, mid-frame")
        buffer += chunk
