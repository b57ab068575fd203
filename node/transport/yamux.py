"""Yamux: many flow-controlled streams over one secured connection.

Owns the session state of one connection: stream ids and states, send and
receive windows, keepalive pings and GoAway — everything in the yamux
specification (hashicorp/yamux ``spec.md``) except the bytes' buffering,
which the driver keeps per stream.

How it works: every frame has a 12-byte header (version 0, type, flags,
stream id, length). ``receive_data`` parses whole frames and returns events;
calls such as :meth:`YamuxSession.open_stream` and
:meth:`YamuxSession.send_data` append frames to the outbound buffer that
:meth:`YamuxSession.data_to_send` hands over. The dialer of the connection
(the client) opens odd stream ids, the listener even ones.

Flow control blocks, it never resets: :meth:`send_data` accepts at most the
stream's send window and returns how much it took; the driver parks the
writer until a :class:`WindowIncreased` event. Our receive window starts at
the spec's 256 KiB and is raised to ``stream_window_bytes`` when a stream
opens, as long as the session's windows stay within
``session_window_bytes`` (later streams keep 256 KiB, so a peer that opens
many streams and an application that reads none bound the memory at
``session_window_bytes`` plus 256 KiB per extra stream); credit returns to the peer as the application consumes
(:meth:`consumed`), in window updates of at least half the window, so the
bytes buffered per stream never exceed the window.

Invariants: the peer never has more credit than the stream's window;
data beyond the window, a bad header, a SYN on a live or wrong-parity id, or
a frame for a stream that never existed is a :class:`RemoteProtocolError`
(the session sends GoAway(protocol error) first). Streams above
``streams_max`` are refused with RST, not an error. Ids are never reused.

Contract for the driver: feed every decrypted byte in order; after every
call send ``data_to_send()``; call :meth:`handle_timer` at
:meth:`next_deadline`; report consumption with :meth:`consumed`; after an
exception from the core, send what is pending and close the connection.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from colonymesh.node.transport.errors import (
    FrameTooLarge,
    LocalProtocolError,
    MalformedMessage,
    RemoteProtocolError,
    SessionClosed,
    StreamLimitReached,
    TransportError,
)

PROTOCOL_ID = "/yamux/1.0.0"
VERSION = 0
HEADER = struct.Struct(">BBHII")
HEADER_BYTES = 12
INITIAL_WINDOW_BYTES = 256 * 1024
WINDOW_MAX = (1 << 32) - 1
STREAM_ID_MAX = (1 << 32) - 1


class FrameType(enum.IntEnum):
    DATA = 0
    WINDOW_UPDATE = 1
    PING = 2
    GO_AWAY = 3


class GoAwayCode(enum.IntEnum):
    NORMAL = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2


FLAG_SYN = 0x1
FLAG_ACK = 0x2
FLAG_FIN = 0x4
FLAG_RST = 0x8
_FLAGS_ALL = FLAG_SYN | FLAG_ACK | FLAG_FIN | FLAG_RST
_TYPES_BY_VALUE = {t.value: t for t in FrameType}


class KeepaliveTimeout(TransportError):
    """The peer did not answer a keepalive ping in time."""


@dataclass(frozen=True, slots=True)
class YamuxConfig:
    # Large enough that a peer descheduled for a few milliseconds does not stall a
    # bulk sender (measured: 1 MiB stalls on a loaded 2-core box, see bench/transport.py).
    stream_window_bytes: int = 4 * 1024 * 1024
    session_window_bytes: int = 32 * 1024 * 1024
    frame_payload_bytes_max: int = 65519 - HEADER_BYTES  # one Noise frame per data frame
    streams_max: int = 256
    keepalive_interval_s: float | None = 30.0
    keepalive_timeout_s: float = 15.0

    def __post_init__(self) -> None:
        if not INITIAL_WINDOW_BYTES <= self.stream_window_bytes <= WINDOW_MAX:
            raise ValueError("stream_window_bytes must be within [256 KiB, 2**32)")
        if self.session_window_bytes < self.stream_window_bytes:
            raise ValueError("session_window_bytes must hold at least one stream window")
        if self.frame_payload_bytes_max < 1 or self.streams_max < 1:
            raise ValueError("frame and stream caps must be positive")


# --- events -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamOpened:
    """The remote opened a stream (already acknowledged)."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class DataReceived:
    """Payload bytes; a view into the (immutable) input when that was ``bytes``."""

    stream_id: int
    data: bytes | memoryview


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The remote half-closed the stream (FIN): no more data will come."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamWasReset:
    stream_id: int


@dataclass(frozen=True, slots=True)
class WindowIncreased:
    """The stream's send window grew: a parked writer may continue."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class GoAwayReceived:
    code: int


@dataclass(frozen=True, slots=True)
class PingAnswered:
    opaque: int
    rtt_s: float


Event = (
    StreamOpened
    | DataReceived
    | StreamEnded
    | StreamWasReset
    | WindowIncreased
    | GoAwayReceived
    | PingAnswered
)


class _Stream:
    __slots__ = (
        "abandoned",
        "local_fin",
        "recv_pending",
        "recv_window",
        "remote_fin",
        "send_window",
        "window",
    )

    def __init__(self, recv_window: int) -> None:
        self.window = recv_window  # the size credit is topped up to
        self.send_window = INITIAL_WINDOW_BYTES
        self.recv_window = recv_window
        self.recv_pending = 0
        self.local_fin = False
        self.remote_fin = False
        self.abandoned = False


class _Output:
    """Outbound bytes in one reused allocation.

    Measured: a fresh 256 KiB bytearray per flush costs ~100 page faults
    (~100 us), as much as sealing it. :meth:`take` hands out a view that stays
    valid until the next append, which the driver's flush honours.
    """

    __slots__ = ("_buffer", "_length")

    def __init__(self) -> None:
        self._buffer = bytearray(4096)
        self._length = 0

    def __iadd__(self, data: bytes | bytearray | memoryview) -> _Output:
        end = self._length + len(data)
        if end > len(self._buffer):
            # A new buffer, never a resize: a view handed out earlier may still be alive.
            grown = bytearray(max(end, 2 * len(self._buffer)))
            grown[: self._length] = memoryview(self._buffer)[: self._length]
            self._buffer = grown
        self._buffer[self._length : end] = data
        self._length = end
        return self

    def __bool__(self) -> bool:
        return self._length > 0

    def __len__(self) -> int:
        return self._length

    def take(self) -> memoryview:
        view = memoryview(self._buffer)[: self._length]
        self._length = 0
        return view


def encode_header(frame_type: FrameType, flags: int, stream_id: int, length: int) -> bytes:
    return HEADER.pack(VERSION, frame_type, flags, stream_id, length)


class YamuxSession:
    """The yamux state of one connection, for the client or the server side."""

    def __init__(self, *, is_client: bool, now: float, config: YamuxConfig | None = None) -> None:
        self.config = config or YamuxConfig()
        self.is_client = is_client
        self._streams: dict[int, _Stream] = {}
        self._windows_total = 0
        self._provoked = 0
        self._zero_copy = False
        self._next_id = 1 if is_client else 2
        self._highest_remote_id = 0
        self._out = _Output()
        self._buffer = bytearray()
        self._pending_header: tuple[int, int, int, int] | None = None
        self.local_went_away = False
        self.remote_went_away = False
        self._ping_opaque = 0
        self._ping_sent_at: float | None = None
        self._keepalive_opaque = 0
        self._user_pings: dict[int, float] = {}
        interval = self.config.keepalive_interval_s
        self._next_keepalive = None if interval is None else now + interval

    # --- outbound ---------------------------------------------------------

    def data_to_send(self) -> memoryview:
        """Everything queued for the peer; valid until the next call into the session."""
        self._provoked = 0
        return self._out.take()

    @property
    def has_output(self) -> bool:
        return bool(self._out)

    @property
    def provoked_output_bytes(self) -> int:
        """Answers the peer forced on us (ping ACKs, refusals) not yet taken.

        Data is bounded by send windows; these are bounded only by how fast we
        read, so the driver stops reading when they pile up.
        """
        return self._provoked

    @property
    def stream_count(self) -> int:
        return len(self._streams)

    def open_stream(self) -> int:
        if self.local_went_away or self.remote_went_away:
            raise SessionClosed("session is going away; no new streams")
        if len(self._streams) >= self.config.streams_max:
            raise StreamLimitReached(f"at most {self.config.streams_max} streams")
        stream_id = self._next_id
        if stream_id > STREAM_ID_MAX:
            raise SessionClosed("stream ids exhausted; reconnect")
        self._next_id += 2
        stream = self._new_stream(stream_id)
        delta = stream.window - INITIAL_WINDOW_BYTES
        self._out += encode_header(FrameType.WINDOW_UPDATE, FLAG_SYN, stream_id, delta)
        return stream_id

    def send_window(self, stream_id: int) -> int:
        return self._live(stream_id).send_window

    def send_data(self, stream_id: int, data: bytes | bytearray | memoryview) -> int:
        """Queue as much of ``data`` as the send window allows; return that count."""
        stream = self._live(stream_id)
        if stream.local_fin:
            raise LocalProtocolError(f"stream {stream_id} is closed for writing")
        count = min(len(data), stream.send_window)
        if count == 0:
            return 0
        stream.send_window -= count
        view = memoryview(data)
        step = self.config.frame_payload_bytes_max
        out = self._out
        pack = HEADER.pack
        for start in range(0, count, step):
            end = min(start + step, count)
            out += pack(VERSION, FrameType.DATA, 0, stream_id, end - start)
            out += view[start:end]
        return count

    def close_stream(self, stream_id: int) -> None:
        """Half-close: send FIN. Idempotent."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.local_fin:
            return
        stream.local_fin = True
        self._out += encode_header(FrameType.WINDOW_UPDATE, FLAG_FIN, stream_id, 0)
        self._forget_if_done(stream_id, stream)

    def abandon_stream(self, stream_id: int) -> None:
        """We will read no more: close for writing, and reset if the peer sends more data."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        stream.abandoned = True
        self.close_stream(stream_id)

    def reset_stream(self, stream_id: int) -> None:
        if self._forget(stream_id) is not None:
            self._out += encode_header(FrameType.WINDOW_UPDATE, FLAG_RST, stream_id, 0)

    def consumed(self, stream_id: int, count: int) -> None:
        """The application took ``count`` bytes: return credit once it is worth a frame."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.remote_fin:
            return
        stream.recv_pending += count
        if stream.recv_pending >= stream.window // 2:
            delta = stream.recv_pending
            stream.recv_pending = 0
            stream.recv_window += delta
            self._out += encode_header(FrameType.WINDOW_UPDATE, 0, stream_id, delta)

    def go_away(self, code: GoAwayCode = GoAwayCode.NORMAL) -> None:
        if not self.local_went_away:
            self.local_went_away = True
            self._out += encode_header(FrameType.GO_AWAY, 0, 0, code)

    def ping(self, now: float) -> int:
        """Send a ping; its :class:`PingAnswered` carries the round-trip time."""
        opaque = self._new_opaque()
        self._user_pings[opaque] = now
        self._out += encode_header(FrameType.PING, FLAG_SYN, 0, opaque)
        return opaque

    def _new_opaque(self) -> int:
        self._ping_opaque = (self._ping_opaque + 1) & 0xFFFFFFFF
        return self._ping_opaque

    # --- timers -------------------------------------------------------------

    def next_deadline(self) -> float | None:
        if self._ping_sent_at is not None:
            return self._ping_sent_at + self.config.keepalive_timeout_s
        return self._next_keepalive

    def handle_timer(self, now: float) -> None:
        if self._ping_sent_at is not None:
            if now >= self._ping_sent_at + self.config.keepalive_timeout_s:
                raise KeepaliveTimeout("keepalive ping unanswered")
            return
        interval = self.config.keepalive_interval_s
        if (
            interval is not None
            and self._next_keepalive is not None
            and now >= self._next_keepalive
        ):
            self._ping_sent_at = now
            self._keepalive_opaque = self._new_opaque()
            self._out += encode_header(FrameType.PING, FLAG_SYN, 0, self._keepalive_opaque)
            self._next_keepalive = now + interval

    # --- inbound ------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview, now: float) -> list[Event]:
        """Parse every whole frame; protocol violations raise after queueing GoAway."""
        try:
            return self._receive(data, now)
        except RemoteProtocolError:
            self.go_away(GoAwayCode.PROTOCOL_ERROR)
            raise

    def _receive(self, data: bytes | bytearray | memoryview, now: float) -> list[Event]:
        events: list[Event] = []
        if self._buffer:
            self._buffer += data
            source: bytes | bytearray | memoryview = self._buffer
        else:
            source = data
        view = memoryview(source)
        # Payloads may be views into the input only if nobody can mutate it.
        self._zero_copy = type(source) is bytes
        end = len(view)
        position = 0
        try:
            while True:
                header = self._pending_header
                if header is None:
                    if end - position < HEADER_BYTES:
                        break
                    header = self._parse_header(view, position)
                    position += HEADER_BYTES
                frame_type, flags, stream_id, length = header
                if frame_type == FrameType.DATA:
                    if end - position < length:
                        self._pending_header = header
                        break
                    self._pending_header = None
                    self._on_data(events, flags, stream_id, view[position : position + length])
                    position += length
                else:
                    self._on_control(events, frame_type, flags, stream_id, length, now)
        finally:
            view.release()
            if source is self._buffer:
                del self._buffer[:position]
            elif position < end:
                self._buffer += memoryview(source)[position:]
        return events

    def _parse_header(self, view: memoryview, position: int) -> tuple[int, int, int, int]:
        version, frame_type, flags, stream_id, length = HEADER.unpack_from(view, position)
        if version != VERSION:
            raise MalformedMessage(f"yamux version {version}")
        if frame_type not in _TYPES_BY_VALUE:
            raise MalformedMessage(f"yamux frame type {frame_type}")
        if flags & ~_FLAGS_ALL:
            raise MalformedMessage(f"yamux flags {flags:#x}")
        if frame_type in (FrameType.DATA, FrameType.WINDOW_UPDATE):
            if stream_id == 0:
                raise MalformedMessage("yamux stream frame on stream 0")
            if flags & FLAG_SYN and flags & FLAG_ACK:
                raise MalformedMessage("yamux frame with both SYN and ACK")
        elif stream_id != 0:
            raise MalformedMessage("yamux ping/go-away on a stream id")
        if frame_type == FrameType.DATA:
            stream = self._streams.get(stream_id)
            window = stream.recv_window if stream is not None else self.config.stream_window_bytes
            if length > window:
                raise FrameTooLarge(
                    f"yamux data frame of {length} bytes exceeds the window {window}"
                )
        return frame_type, flags, stream_id, length

    def _is_remote_id(self, stream_id: int) -> bool:
        return (stream_id % 2 == 0) == self.is_client

    def _stream_for(self, events: list[Event], flags: int, stream_id: int) -> _Stream | None:
        """The stream a frame addresses, opening it on SYN; ``None`` when it is to be ignored."""
        stream = self._streams.get(stream_id)
        if flags & FLAG_SYN:
            if stream is not None or not self._is_remote_id(stream_id):
                raise RemoteProtocolError(f"yamux SYN on live or local stream id {stream_id}")
            if stream_id <= self._highest_remote_id:
                raise RemoteProtocolError(f"yamux stream id {stream_id} reused")
            self._highest_remote_id = stream_id
            if (
                len(self._streams) >= self.config.streams_max
                or self.local_went_away
                or self.remote_went_away
            ):
                self._out += encode_header(FrameType.WINDOW_UPDATE, FLAG_RST, stream_id, 0)
                self._provoked += HEADER_BYTES
                return None
            stream = self._new_stream(stream_id)
            delta = stream.window - INITIAL_WINDOW_BYTES
            self._out += encode_header(FrameType.WINDOW_UPDATE, FLAG_ACK, stream_id, delta)
            events.append(StreamOpened(stream_id))
            return stream
        if stream is None:
            known = (
                stream_id <= self._highest_remote_id
                if self._is_remote_id(stream_id)
                else stream_id < self._next_id
            )
            if not known:
                raise RemoteProtocolError(f"yamux frame for unknown stream {stream_id}")
            return None  # a stream we already closed or reset: late frames are harmless
        if flags & FLAG_ACK and self._is_remote_id(stream_id):
            raise RemoteProtocolError(f"yamux ACK on the remote's own stream {stream_id}")
        return stream

    def _on_data(
        self, events: list[Event], flags: int, stream_id: int, payload: memoryview
    ) -> None:
        stream = self._stream_for(events, flags, stream_id)
        if stream is not None and payload:
            if stream.remote_fin:
                raise RemoteProtocolError(f"yamux data after FIN on stream {stream_id}")
            if len(payload) > stream.recv_window:
                raise RemoteProtocolError(f"yamux stream {stream_id} overran its receive window")
            stream.recv_window -= len(payload)
            if stream.abandoned:
                self.reset_stream(stream_id)
                return
            events.append(DataReceived(stream_id, payload if self._zero_copy else bytes(payload)))
        if stream is not None:
            self._on_flags(events, flags, stream_id, stream)

    def _on_control(
        self,
        events: list[Event],
        frame_type: int,
        flags: int,
        stream_id: int,
        length: int,
        now: float,
    ) -> None:
        if frame_type == FrameType.WINDOW_UPDATE:
            stream = self._stream_for(events, flags, stream_id)
            if stream is None:
                return
            if length:
                if stream.send_window + length > WINDOW_MAX:
                    raise RemoteProtocolError(f"yamux window overflow on stream {stream_id}")
                stream.send_window += length
                if not stream.local_fin:
                    events.append(WindowIncreased(stream_id))
            self._on_flags(events, flags, stream_id, stream)
        elif frame_type == FrameType.PING:
            self._on_ping(events, flags, length, now)
        else:
            self.remote_went_away = True
            events.append(GoAwayReceived(length))

    def _on_ping(self, events: list[Event], flags: int, opaque: int, now: float) -> None:
        if flags == FLAG_SYN:
            self._out += encode_header(FrameType.PING, FLAG_ACK, 0, opaque)
            self._provoked += HEADER_BYTES
        elif flags == FLAG_ACK:
            if self._ping_sent_at is not None and opaque == self._keepalive_opaque:
                events.append(PingAnswered(opaque, now - self._ping_sent_at))
                self._ping_sent_at = None
            elif opaque in self._user_pings:
                events.append(PingAnswered(opaque, now - self._user_pings.pop(opaque)))
        else:
            raise MalformedMessage(f"yamux ping with flags {flags:#x}")

    def _on_flags(self, events: list[Event], flags: int, stream_id: int, stream: _Stream) -> None:
        if flags & FLAG_RST:
            self._forget(stream_id)
            events.append(StreamWasReset(stream_id))
            return
        if flags & FLAG_FIN and not stream.remote_fin:
            stream.remote_fin = True
            events.append(StreamEnded(stream_id))
            self._forget_if_done(stream_id, stream)

    def _forget_if_done(self, stream_id: int, stream: _Stream) -> None:
        if stream.local_fin and stream.remote_fin:
            self._forget(stream_id)

    def _new_stream(self, stream_id: int) -> _Stream:
        window = self.config.stream_window_bytes
        if self._windows_total + window > self.config.session_window_bytes:
            window = INITIAL_WINDOW_BYTES
        self._windows_total += window
        stream = _Stream(window)
        self._streams[stream_id] = stream
        return stream

    def _forget(self, stream_id: int) -> _Stream | None:
        stream = self._streams.pop(stream_id, None)
        if stream is not None:
            self._windows_total -= stream.window
        return stream

    def _live(self, stream_id: int) -> _Stream:
        stream = self._streams.get(stream_id)
        if stream is None:
            raise LocalProtocolError(f"stream {stream_id} is closed or reset")
        return stream
