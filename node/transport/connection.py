"""A secured, multiplexed connection: the trio driver of the yamux core.

Owns one upgraded TCP connection (Noise ciphers + yamux session) and its
nursery: a reader task (socket → Noise → yamux → streams), a writer task
for what the core produces by itself (window updates, ping answers, RSTs),
a timer task (keepalive) and one task per inbound stream. Nothing outlives
the connection; a failure closes this connection only, logged with its
typed cause.

Writes from the application are sealed and sent inline by whichever task
flushes first (no task hop on the latency path); the reader never writes to
the socket, except to stop reading a peer that provokes answers faster than
it reads them, so two peers both blocked writing cannot deadlock. A write
that cannot finish at once is shielded from the caller's cancellation (half
a Noise frame would corrupt the connection) and bounded by
``write_timeout_s`` instead.

After the upgrade the socket's descriptor is read (``os.readv`` into one
reused buffer) and written (``os.write``) directly, parking on
``wait_readable``/``wait_writable`` only when it would block. Measured on
loopback, trio's ``SocketStream`` adds a scheduler pass to every call;
dropping them took the 32-byte round trip from 3.2x to 1.7x a raw trio
socket (``bench/transport.py``). The descriptor is never touched once
closed (its number may already belong to another socket).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Sequence

import trio

from colonymesh.node.identity import peer_id_of
from colonymesh.node.transport import multistream, yamux
from colonymesh.node.transport.config import TransportConfig
from colonymesh.node.transport.errors import (
    LocalProtocolError,
    NegotiationFailed,
    RemoteProtocolError,
    SessionClosed,
    TransportError,
)
from colonymesh.node.transport.noise import NoiseReceiver, NoiseSender
from colonymesh.node.transport.stream import MuxedStream

log = logging.getLogger("colonymesh.node.transport")
_NETWORK_ERRORS = (TransportError, trio.BrokenResourceError, trio.ClosedResourceError, OSError)

StreamHandler = Callable[[MuxedStream], Awaitable[None]]
HandlerLookup = Callable[[str], "StreamHandler | None"]
ProtocolList = Callable[[], Sequence[str]]


class Connection:
    """One upgraded connection to one remote peer."""

    def __init__(
        self,
        raw: trio.SocketStream,
        *,
        sender: NoiseSender,
        receiver: NoiseReceiver,
        remote_public_key: bytes,
        is_initiator: bool,
        config: TransportConfig,
        protocols: ProtocolList,
        handler_for: HandlerLookup,
        remote_addr: str,
        local_addr: str,
    ) -> None:
        self._raw = raw
        self._sender = sender
        self._receiver = receiver
        self.remote_public_key = remote_public_key
        self.remote_peer_id = peer_id_of(remote_public_key)
        self.is_initiator = is_initiator
        self.remote_addr = remote_addr
        self.local_addr = local_addr
        self.config = config
        self.mux = yamux.YamuxSession(
            is_client=is_initiator, now=trio.current_time(), config=config.yamux
        )
        self._protocols = protocols
        self._handler_for = handler_for
        self._streams: dict[int, MuxedStream] = {}
        # trio sets TCP_NODELAY already; say so explicitly, latency depends on it.
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._fd = raw.socket.fileno()
        self._fd_open = True
        self._flushing = False
        self._flushed = trio.lowlevel.ParkingLot()
        self._writer_lot = trio.lowlevel.ParkingLot()
        self._pings: dict[int, trio.Event] = {}
        self._ping_rtts: dict[int, float] = {}
        self._nursery: trio.Nursery | None = None
        self._closed = trio.Event()
        self.close_reason: str | None = None
        self.bytes_sent = 0
        self.bytes_received = 0

    def __repr__(self) -> str:
        return f"<Connection to {self.remote_peer_id} at {self.remote_addr}>"

    @property
    def is_closed(self) -> bool:
        return self._closed.is_set()

    @property
    def going_away(self) -> bool:
        """True once either side said GoAway: no new streams; reuse another connection."""
        return self.is_closed or self.mux.local_went_away or self.mux.remote_went_away

    async def wait_closed(self) -> None:
        await self._closed.wait()

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    def go_away(self) -> None:
        """Tell the peer no new streams will be accepted; streams open now carry on."""
        if not self.going_away:
            self.mux.go_away(yamux.GoAwayCode.NORMAL)
            self.wake_writer()

    def statistics(self) -> dict[str, int | str | bool]:
        return {
            "peer_id": self.remote_peer_id,
            "streams": len(self._streams),
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "closed": self.is_closed,
        }

    # --- lifetime -----------------------------------------------------------

    async def run(
        self, unconsumed: bytes, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve the connection until it closes; never raises for network trouble."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._guard, self._reader, unconsumed)
                nursery.start_soon(self._guard, self._writer, b"")
                nursery.start_soon(self._guard, self._timer, b"")
                task_status.started()
        finally:
            await self._shutdown()

    async def _guard(self, task: Callable[[bytes], Awaitable[None]], argument: bytes) -> None:
        """Run a core task; any network failure ends the whole connection, logged once."""
        try:
            await task(argument)
        except (
            TransportError,
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            OSError,
        ) as error:
            first = self.close_reason is None
            self._set_reason(f"{type(error).__name__}: {error}")
            if first:
                level = logging.WARNING if isinstance(error, RemoteProtocolError) else logging.INFO
                log.log(
                    level,
                    "connection to %s at %s closed: %s",
                    self.remote_peer_id,
                    self.remote_addr,
                    self.close_reason,
                )
        self._fail()

    def _set_reason(self, reason: str) -> None:
        if self.close_reason is None:
            self.close_reason = reason

    async def _shutdown(self) -> None:
        self._closed.set()
        for stream in list(self._streams.values()):
            stream._on_reset(f"connection closed ({self.close_reason or 'closed'})")
        self._streams.clear()
        for event in self._pings.values():
            event.set()
        with trio.CancelScope(shield=True):
            if self.mux.has_output and not self._flushing:  # a last GoAway, best effort
                with contextlib.suppress(OSError, TransportError):
                    os.write(self._fd, self._sender.seal(self.mux.data_to_send()))
            # From here the descriptor number may be reused by another socket:
            # nothing may write to it again (checked before every write).
            self._fd_open = False
            await self._raw.aclose()

    async def aclose(self) -> None:
        """Say GoAway, close the socket and every stream."""
        if self._closed.is_set():
            return
        self._set_reason("closed locally")
        self.mux.go_away(yamux.GoAwayCode.NORMAL)
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()
        await self._closed.wait()

    # --- tasks ----------------------------------------------------------------

    async def _reader(self, unconsumed: bytes) -> None:
        if unconsumed:  # plaintext that arrived behind the muxer negotiation
            self._feed_plaintext(unconsumed)
        receive_bytes = self.config.receive_bytes
        fd = self._fd
        wait_readable = trio.lowlevel.wait_readable
        # One reused read buffer: a fresh 256 KiB object per read costs page faults.
        buffer = bytearray(receive_bytes)
        buffers = [buffer]
        view = memoryview(buffer)
        while True:
            # Read the descriptor directly and park only when it is empty: one
            # scheduler pass per wake-up instead of trio's two (see the module doc).
            try:
                count = os.readv(fd, buffers)
            except BlockingIOError:
                await wait_readable(fd)
                continue
            except OSError as error:
                raise trio.BrokenResourceError(f"socket connection broken: {error}") from error
            if not count:
                self._set_reason("remote closed the connection")
                raise trio.BrokenResourceError("remote closed the connection")
            self.bytes_received += count
            self._feed(view[:count])
            if self.mux.provoked_output_bytes > self.config.control_backlog_bytes:
                # The peer makes us answer (pings, RSTs) faster than it reads the
                # answers: stop reading it until they are on the socket.
                await self.flush()
            if count == receive_bytes:  # more is likely waiting: let others run first
                await trio.lowlevel.checkpoint()

    def _feed(self, data: memoryview) -> None:
        now = trio.current_time()
        for plaintext in self._receiver.receive_data(data):
            for event in self.mux.receive_data(plaintext, now):
                self._dispatch(event)
        if self.mux.has_output:
            self._writer_lot.unpark_all()

    def _feed_plaintext(self, plaintext: bytes) -> None:
        for event in self.mux.receive_data(plaintext, trio.current_time()):
            self._dispatch(event)
        if self.mux.has_output:
            self._writer_lot.unpark_all()

    def _dispatch(self, event: yamux.Event) -> None:
        match event:
            case yamux.DataReceived(stream_id, data):
                stream = self._streams.get(stream_id)
                if stream is not None:
                    stream._on_data(data)
                else:  # the application closed it meanwhile: give the credit back
                    self.mux.consumed(stream_id, len(data))
            case yamux.WindowIncreased(stream_id):
                stream = self._streams.get(stream_id)
                if stream is not None:
                    stream._on_window()
            case yamux.StreamOpened(stream_id):
                stream = MuxedStream(self, stream_id)
                self._streams[stream_id] = stream
                if self._nursery is None:
                    raise LocalProtocolError("stream opened before the connection ran")
                self._nursery.start_soon(self._serve_inbound, stream)
            case yamux.StreamEnded(stream_id):
                stream = self._streams.get(stream_id)
                if stream is not None:
                    stream._on_eof()
            case yamux.StreamWasReset(stream_id):
                stream = self._streams.pop(stream_id, None)
                if stream is not None:
                    stream._on_reset()
            case yamux.GoAwayReceived(code):
                log.info("peer %s is going away (code %d)", self.remote_peer_id, code)
            case yamux.PingAnswered(opaque, rtt_s):
                self._ping_rtts[opaque] = rtt_s
                ping_event = self._pings.pop(opaque, None)
                if ping_event is not None:
                    ping_event.set()
            case _:
                raise LocalProtocolError(f"unhandled yamux event {event!r}")

    async def _writer(self, _: bytes) -> None:
        while True:
            if not self.mux.has_output:
                await self._writer_lot.park()
            await self.flush()

    async def _timer(self, _: bytes) -> None:
        while True:
            deadline = self.mux.next_deadline()
            if deadline is None:
                await trio.sleep_forever()
            else:
                await trio.sleep_until(deadline)
            self.mux.handle_timer(trio.current_time())
            if self.mux.has_output:
                self._writer_lot.unpark_all()

    # --- used by streams ------------------------------------------------------

    async def flush(self) -> None:
        """Seal and send everything the core has queued; return once it is on the socket.

        One task flushes at a time and loops until the core is empty; others
        wait for it. Writing tries the socket first and parks only on a full
        buffer, so a flush that fits costs no scheduler pass. It is no
        checkpoint either: :meth:`MuxedStream.send_all` checks cancellation.
        """
        if self._flushing:
            await self._flushed.park()
            return
        self._flushing = True
        try:
            while self.mux.has_output:
                if not self._fd_open:
                    raise trio.BrokenResourceError("connection closed")
                sealed = self._sender.seal(self.mux.data_to_send())
                self.bytes_sent += len(sealed)
                try:
                    written = os.write(self._fd, sealed)
                except BlockingIOError:
                    written = 0
                except OSError as error:
                    self._fail()
                    raise trio.BrokenResourceError(f"socket connection broken: {error}") from error
                if written < len(sealed):
                    await self._write_rest(memoryview(sealed)[written:])
        finally:
            self._flushing = False
            self._flushed.unpark_all()

    async def _write_rest(self, rest: memoryview) -> None:
        # Shielded: a cancelled caller must not leave half a Noise frame on the wire.
        with trio.move_on_after(self.config.write_timeout_s) as scope:
            scope.shield = True
            while rest:
                try:
                    await trio.lowlevel.wait_writable(self._fd)
                except trio.ClosedResourceError:
                    raise trio.BrokenResourceError("connection closed") from None
                if not self._fd_open:
                    raise trio.BrokenResourceError("connection closed")
                try:
                    written = os.write(self._fd, rest)
                except BlockingIOError:
                    continue
                except OSError as error:
                    self._fail()
                    raise trio.BrokenResourceError(f"socket connection broken: {error}") from error
                rest = rest[written:]
        if scope.cancelled_caught:
            self._set_reason("peer stopped reading (write timeout)")
            self._fail()
            raise trio.BrokenResourceError("write timeout: peer stopped reading")

    def _fail(self) -> None:
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def wake_writer(self) -> None:
        if self.mux.has_output:
            self._writer_lot.unpark_all()

    def consumed(self, stream_id: int, count: int) -> None:
        self.mux.consumed(stream_id, count)
        if self.mux.has_output:
            self._writer_lot.unpark_all()

    def stream_finished(self, stream: MuxedStream) -> None:
        self._streams.pop(stream.stream_id, None)

    # --- streams --------------------------------------------------------------

    async def open_stream(self, protocols: Sequence[str]) -> MuxedStream:
        """A new stream speaking the first of ``protocols`` the peer accepts."""
        if self.is_closed:
            raise SessionClosed(f"connection to {self.remote_peer_id} is closed")
        stream_id = self.mux.open_stream()
        stream = MuxedStream(self, stream_id)
        self._streams[stream_id] = stream
        try:
            with trio.fail_after(self.config.negotiate_timeout_s):
                await self._negotiate(
                    stream, multistream.Negotiation(multistream.Role.DIALER, protocols)
                )
        except BaseException:
            await stream.reset()
            raise
        return stream

    async def _negotiate(self, stream: MuxedStream, negotiation: multistream.Negotiation) -> None:
        while True:
            out = negotiation.data_to_send()
            if out:
                await stream.send_all(out)
            chunk = await stream.receive_some()
            if not chunk:
                raise NegotiationFailed("stream closed during protocol negotiation")
            agreed = negotiation.receive_data(chunk)
            if agreed is not None:
                out = negotiation.data_to_send()
                if out:
                    await stream.send_all(out)
                stream.protocol = agreed.protocol
                stream._unread(agreed.unconsumed)
                return

    async def _serve_inbound(self, stream: MuxedStream) -> None:
        try:
            try:
                with trio.fail_after(self.config.negotiate_timeout_s):
                    await self._negotiate(
                        stream,
                        multistream.Negotiation(multistream.Role.LISTENER, self._protocols()),
                    )
            except (TransportError, trio.TooSlowError, trio.BrokenResourceError) as error:
                log.info(
                    "stream %d from %s: negotiation failed: %s",
                    stream.stream_id,
                    self.remote_peer_id,
                    error,
                )
                await stream.reset()
                return
            handler = self._handler_for(stream.protocol or "")
            if handler is None:  # removed while negotiating
                await stream.reset()
                return
            await handler(stream)
        except (TransportError, trio.BrokenResourceError, trio.ClosedResourceError) as error:
            log.info(
                "stream %d (%s) from %s ended: %s",
                stream.stream_id,
                stream.protocol,
                self.remote_peer_id,
                error,
            )
            await stream.reset()
        except Exception:
            log.exception("handler for %s from %s failed", stream.protocol, self.remote_peer_id)
            await stream.reset()
        else:
            await stream.aclose()

    async def ping(self, timeout_s: float = 10.0) -> float:
        """A yamux-level ping; the round-trip time in seconds."""
        opaque = self.mux.ping(trio.current_time())
        event = trio.Event()
        self._pings[opaque] = event
        await self.flush()
        with trio.fail_after(timeout_s):
            await event.wait()
        if opaque not in self._ping_rtts:
            raise SessionClosed("connection closed during ping")
        return self._ping_rtts.pop(opaque)
