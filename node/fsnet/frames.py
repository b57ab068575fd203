"""Length-prefixed frames of ``/colonymesh/fs/1.0.0`` on a trio stream, without quadratic copies.

A frame is ``varint(len) payload``; the cap is checked on the prefix, before
a byte of the body is buffered. `FrameReader` keeps one ``bytearray`` and
slices whole frames out of it, so a 1 MiB block costs one copy out of the
receive buffer, however many reads it arrived in.
"""

from __future__ import annotations

import trio

from colonymesh.fs.exchange.messages import MESSAGE_BYTES_MAX
from colonymesh.node.errors import FrameTooLarge, MalformedFrame
from colonymesh.node.transport.varint import encode_uvarint

FRAME_BYTES_MAX = MESSAGE_BYTES_MAX
_RECEIVE_BYTES = 1024 * 1024


def frame_prefix(length: int) -> bytes:
    if length > FRAME_BYTES_MAX:
        raise FrameTooLarge(f"frame of {length} bytes exceeds the cap of {FRAME_BYTES_MAX}")
    return encode_uvarint(length)


def parse_prefix(buffer: bytes | bytearray, frame_bytes_max: int) -> tuple[int, int] | None:
    """``(length, header bytes)`` of the frame at the start of `buffer`, or None if incomplete."""
    value = 0
    for index in range(min(len(buffer), 10)):
        byte = buffer[index]
        value |= (byte & 0x7F) << (7 * index)
        if value > frame_bytes_max:
            raise FrameTooLarge(f"frame announced above the cap of {frame_bytes_max} bytes")
        if not byte & 0x80:
            if byte == 0 and index > 0:
                raise MalformedFrame("non-minimal frame length")
            return value, index + 1
    if len(buffer) >= 10:
        raise MalformedFrame("frame length prefix too long")
    return None


class FrameReader:
    """Reads whole frames from `stream`; `None` at a clean end of stream."""

    def __init__(self, stream: trio.abc.ReceiveStream, frame_bytes_max: int = FRAME_BYTES_MAX):
        self._stream = stream
        self._max = frame_bytes_max
        self._buffer = bytearray()

    async def read(self) -> bytes | None:
        while True:
            parsed = parse_prefix(self._buffer, self._max)
            if parsed is not None:
                length, head = parsed
                end = head + length
                if len(self._buffer) >= end:
                    with memoryview(self._buffer) as view:
                        frame = bytes(view[head:end])  # one copy, not slice-then-copy
                    del self._buffer[:end]
                    return frame
                want = end - len(self._buffer)
            else:
                want = 16
            chunk = await self._stream.receive_some(max(want, _RECEIVE_BYTES))
            if not chunk:
                if self._buffer:
                    raise MalformedFrame(f"stream ended mid-frame ({len(self._buffer)} bytes)")
                return None
            self._buffer += chunk
