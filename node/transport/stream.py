"""One yamux stream as a trio stream: ``send_all``, ``receive_some``, ``send_eof``, ``aclose``.

The driver side of a stream. Bytes from the network wait in a deque of
chunks bounded by the stream's receive window (the yamux core refuses a peer
that overruns it); credit goes back to the peer as :meth:`receive_some`
hands bytes to the application, so a slow reader slows its writer and no
byte is ever dropped. A writer whose send window is empty parks until the
peer grants more — it is never reset for being slow.

Errors follow trio: :class:`trio.ClosedResourceError` for use after our own
``aclose``, :class:`trio.BrokenResourceError` (as :class:`StreamReset`) when
the peer reset the stream or the connection died, :class:`trio.BusyResourceError`
for two concurrent senders or receivers.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

import trio

from colonymesh.node.transport.errors import FrameTooLarge, LocalProtocolError

if TYPE_CHECKING:
    from colonymesh.node.transport.connection import Connection

RECEIVE_BYTES_DEFAULT = 65536


class StreamReset(trio.BrokenResourceError):
    """The peer reset the stream, or its connection closed."""


class MuxedStream(trio.abc.HalfCloseableStream):
    """A bidirectional byte stream multiplexed over a :class:`Connection`."""

    def __init__(self, connection: Connection, stream_id: int) -> None:
        self.connection = connection
        self.stream_id = stream_id
        self.protocol: str | None = None
        self._chunks: deque[bytes | memoryview] = deque()
        self._buffered = 0
        self._credit_debt = 0  # bytes put back by negotiation, already credited
        self._eof = False
        self._reset = False
        self._reset_reason = "stream reset by peer"
        self._send_closed = False
        self._closed = False
        self._readable = trio.lowlevel.ParkingLot()
        self._writable = trio.lowlevel.ParkingLot()
        self._sending = False
        self._receiving = False

    def __repr__(self) -> str:
        return f"<MuxedStream {self.stream_id} {self.protocol} to {self.connection.remote_peer_id}>"

    # --- fed by the connection's reader ------------------------------------

    def _on_data(self, data: bytes | memoryview) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        self._readable.unpark_all()

    def _on_eof(self) -> None:
        self._eof = True
        self._readable.unpark_all()

    def _on_reset(self, reason: str = "stream reset by peer") -> None:
        self._reset = True
        self._reset_reason = reason
        self._chunks.clear()
        self._buffered = 0
        self._readable.unpark_all()
        self._writable.unpark_all()

    def _on_window(self) -> None:
        self._writable.unpark_all()

    def _unread(self, data: bytes | memoryview) -> None:
        """Put bytes read past a negotiation back in front; they were credited already."""
        if data:
            self._chunks.appendleft(data)
            self._buffered += len(data)
            self._credit_debt += len(data)

    # --- the trio stream interface -------------------------------------------

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        self._sending = True
        try:
            await self._send_all(data)
        finally:
            self._sending = False

    async def _send_all(self, data: bytes | bytearray | memoryview) -> None:
        connection = self.connection
        mux = connection.mux
        view = memoryview(data)
        total = len(view)
        offset = 0
        if total == 0:
            self._check_sendable()
            await trio.lowlevel.checkpoint()
            return
        await trio.lowlevel.checkpoint_if_cancelled()
        while offset < total:
            self._check_sendable()
            try:
                taken = mux.send_data(self.stream_id, view[offset:] if offset else view)
            except LocalProtocolError:
                raise StreamReset(self._reset_reason) from None
            if taken == 0:
                await self._writable.park()
                continue
            offset += taken
            await connection.flush()

    def _check_sendable(self) -> None:
        if self._closed or self._send_closed:
            raise trio.ClosedResourceError("stream closed for sending")
        if self._reset:
            raise StreamReset(self._reset_reason)

    async def wait_send_all_might_not_block(self) -> None:
        while not self._reset and not self._send_closed and self._send_window() == 0:
            await self._writable.park()
        await trio.lowlevel.checkpoint()

    def _send_window(self) -> int:
        try:
            return self.connection.mux.send_window(self.stream_id)
        except LocalProtocolError:
            return 0

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if max_bytes is not None and max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving on this stream")
        self._receiving = True
        try:
            return await self._receive_some(max_bytes or RECEIVE_BYTES_DEFAULT)
        finally:
            self._receiving = False

    async def _receive_some(self, max_bytes: int) -> bytes:
        parked = False
        while not self._chunks:
            if self._closed:
                raise trio.ClosedResourceError("stream closed")
            if self._reset:
                raise StreamReset(self._reset_reason)
            if self._eof:
                await trio.lowlevel.checkpoint()
                return b""
            await self._readable.park()
            parked = True
        if self._closed:
            raise trio.ClosedResourceError("stream closed")
        chunks = self._chunks
        chunk = chunks.popleft()
        if len(chunk) > max_bytes:
            chunks.appendleft(chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        elif chunks and len(chunk) + len(chunks[0]) <= max_bytes:
            # Hand over several frames at once: one copy is cheaper than a
            # scheduler pass per 64 KiB frame.
            parts = [chunk]
            room = max_bytes - len(chunk)
            while chunks and len(chunks[0]) <= room:
                room -= len(chunks[0])
                parts.append(chunks.popleft())
            chunk = b"".join(parts)
        if type(chunk) is not bytes:
            chunk = bytes(chunk)
        count = len(chunk)
        self._buffered -= count
        credit = count
        if self._credit_debt:
            repaid = min(self._credit_debt, credit)
            self._credit_debt -= repaid
            credit -= repaid
        if credit:
            self.connection.consumed(self.stream_id, credit)
        if not parked:
            await trio.lowlevel.checkpoint()
        return chunk

    async def send_eof(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("stream closed")
        if not self._send_closed:
            self._send_closed = True
            self.connection.mux.close_stream(self.stream_id)
            await self.connection.flush()
        else:
            await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        """Close both directions: FIN to the peer; more data from it gets a reset."""
        if not self._closed:
            self._closed = True
            self._send_closed = True
            self.connection.mux.abandon_stream(self.stream_id)
            self.connection.stream_finished(self)
            self._readable.unpark_all()
            self._writable.unpark_all()
            self.connection.wake_writer()
        await trio.lowlevel.checkpoint()

    async def reset(self) -> None:
        """Abort the stream in both directions (yamux RST)."""
        if not self._closed:
            self._closed = True
            self.connection.mux.reset_stream(self.stream_id)
            self.connection.stream_finished(self)
            self._on_reset("stream reset locally")
            self.connection.wake_writer()
        await trio.lowlevel.checkpoint()

    # --- helpers ------------------------------------------------------------

    async def receive_exactly(self, count: int) -> bytes:
        """Exactly ``count`` bytes; :class:`StreamReset` if the stream ends first."""
        parts: list[bytes] = []
        missing = count
        while missing:
            chunk = await self.receive_some(missing)
            if not chunk:
                raise StreamReset(f"stream ended {missing} bytes short")
            parts.append(chunk)
            missing -= len(chunk)
        return b"".join(parts)

    async def receive_until_eof(self, bytes_max: int) -> bytes:
        """Everything up to the peer's FIN; :class:`FrameTooLarge` past ``bytes_max``."""
        parts: list[bytes] = []
        total = 0
        while True:
            chunk = await self.receive_some()
            if not chunk:
                return b"".join(parts)
            total += len(chunk)
            if total > bytes_max:
                raise FrameTooLarge(f"message exceeds {bytes_max} bytes")
            parts.append(chunk)
