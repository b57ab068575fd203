"""Request/response and one-way messages of signed envelopes, one stream each.

Wire format. A request opens a stream speaking :data:`REQUEST_PROTOCOL` and
sends one length-prefixed frame (:mod:`colonymesh.node.peer.framing`): a
signed envelope. The answer is one frame whose first byte is a status:
``0`` and a signed envelope, or ``1`` and the canonical CBOR of
``[code, message]``. A one-way message speaks :data:`SEND_PROTOCOL`: one
frame, then the sender closes. Every frame is capped at ``frame_bytes_max``.

Verification. Every envelope goes through the peer's
:class:`~colonymesh.node.envelope.EnvelopeOpener` (colony, kind, body types,
clock skew, sender's certificate, signature, replay window), and its sender
must be the key that Noise proved for the connection. A frame that fails
any of it is counted by cause and closes the connection it came on (the
sender is broken or hostile); the node keeps running.

Deadlines are trio cancel scopes: the caller's ``timeout`` covers opening
the stream, writing, and waiting for the answer; running past it raises
:class:`RequestTimeout` and resets the stream.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from colonymesh.node import wire
from colonymesh.node.envelope import Envelope, EnvelopeOpener, EnvelopeSealer, registered_kinds
from colonymesh.node.errors import ColonymeshError, MalformedFrame, WireError
from colonymesh.node.peer.errors import (
    BadResponse,
    MessagingError,
    PeerUnreachable,
    RemoteError,
    RequestTimeout,
    StreamEnded,
)
from colonymesh.node.peer.framing import encode_frame, receive_frame, send_frame
from colonymesh.node.transport.connection import Connection
from colonymesh.node.transport.errors import NegotiationFailed, TransportError
from colonymesh.node.transport.stream import MuxedStream

log = logging.getLogger("colonymesh.node.peer")

REQUEST_PROTOCOL = "/colonymesh/request/1.0.0"
SEND_PROTOCOL = "/colonymesh/send/1.0.0"
STATUS_OK = 0
STATUS_ERROR = 1
ERROR_MESSAGE_BYTES_MAX = 1024


@dataclass(frozen=True, slots=True)
class MessagingConfig:
    frame_bytes_max: int = 1024 * 1024
    request_timeout_s: float = 10.0
    # A handler running longer than this is cancelled and the requester told so.
    handler_timeout_s: float = 30.0
    # Reading an inbound request's frame; bounds a peer that opens and stalls.
    receive_timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class Incoming:
    """A verified message handed to a handler."""

    peer_id: str
    envelope: Envelope[Any]

    @property
    def body(self) -> Any:
        return self.envelope.body

    @property
    def kind(self) -> str:
        return self.envelope.kind


Handler = Callable[[Incoming], Awaitable[object | None]]
BadFrameHook = Callable[[Connection, str], None]


class Messenger:
    """Seals, sends, receives and dispatches envelopes on admitted connections."""

    def __init__(
        self,
        sealer: EnvelopeSealer,
        opener: EnvelopeOpener,
        clock: Callable[[], float],
        config: MessagingConfig,
        on_bad_frame: BadFrameHook | None = None,
    ) -> None:
        self.config = config
        self._sealer = sealer
        self._opener = opener
        self._clock = clock
        # Called for every refused frame; the peer closes that connection.
        self.on_bad_frame = on_bad_frame
        self._handlers: dict[str, Handler] = {}
        self.counters: dict[str, int] = {
            "requests_sent": 0,
            "requests_answered": 0,
            "requests_failed": 0,
            "requests_received": 0,
            "messages_sent": 0,
            "messages_received": 0,
            "handler_errors": 0,
        }
        self.refused: dict[str, int] = {}

    # --- registry ------------------------------------------------------------------

    def on(self, kind: str, handler: Handler) -> None:
        if kind not in registered_kinds():
            raise ValueError(f"{kind!r} is not a registered message kind (use @message)")
        self._handlers[kind] = handler

    def off(self, kind: str) -> None:
        self._handlers.pop(kind, None)

    # --- outgoing ------------------------------------------------------------------

    def _seal(self, body: object) -> bytes:
        frame = self._sealer.seal(body, self._clock())
        if len(frame) > self.config.frame_bytes_max:
            raise MessagingError(
                f"message of {len(frame)} bytes exceeds the cap of {self.config.frame_bytes_max}"
            )
        return frame

    async def request(self, connection: Connection, body: object, deadline: float) -> Incoming:
        """Send ``body`` and wait for the answer until ``deadline`` (trio time)."""
        frame = self._seal(body)
        self.counters["requests_sent"] += 1
        try:
            with trio.move_on_at(deadline) as scope:
                answer = await self._exchange(connection, frame)
            if scope.cancelled_caught:
                raise RequestTimeout(
                    f"no answer from {connection.remote_peer_id} to {type(body).__name__} in time"
                )
            return self._open_answer(connection, answer)
        except MessagingError:
            self.counters["requests_failed"] += 1
            raise

    async def _exchange(self, connection: Connection, frame: bytes) -> bytes:
        stream = await self._open(connection, REQUEST_PROTOCOL)
        finished = False
        try:
            await send_frame(stream, frame, self.config.frame_bytes_max)
            await stream.send_eof()
            answer = await receive_frame(stream, self.config.frame_bytes_max + 1)
            finished = True
            return answer
        except (TransportError, trio.BrokenResourceError, trio.ClosedResourceError) as error:
            raise PeerUnreachable(
                f"connection to {connection.remote_peer_id} failed mid-request: {error}"
            ) from None
        except StreamEnded as error:
            raise PeerUnreachable(
                f"{connection.remote_peer_id} ended the stream: {error}"
            ) from None
        except WireError as error:
            self._bad(connection, "response_frame", error)
            raise BadResponse(f"bad answer from {connection.remote_peer_id}: {error}") from None
        finally:
            with trio.CancelScope(shield=True):
                if finished:
                    await stream.aclose()
                else:  # cancelled or failed: tell the peer to stop working on it
                    await stream.reset()

    async def _open(self, connection: Connection, protocol: str) -> MuxedStream:
        try:
            return await connection.open_stream([protocol])
        except NegotiationFailed:
            raise RemoteError(
                "unsupported", f"{connection.remote_peer_id} does not speak {protocol}"
            ) from None
        except trio.TooSlowError:
            raise RequestTimeout(
                f"{connection.remote_peer_id} did not accept a stream in time"
            ) from None
        except (TransportError, trio.BrokenResourceError, trio.ClosedResourceError) as error:
            raise PeerUnreachable(
                f"cannot open a stream to {connection.remote_peer_id}: {error}"
            ) from None

    def _open_answer(self, connection: Connection, answer: bytes) -> Incoming:
        if not answer:
            self._bad(connection, "response_frame", MalformedFrame("empty answer"))
            raise BadResponse(f"empty answer from {connection.remote_peer_id}")
        status, payload = answer[0], answer[1:]
        if status == STATUS_ERROR:
            code, message = _decode_error(payload)
            raise RemoteError(code, message)
        if status != STATUS_OK:
            self._bad(connection, "response_frame", MalformedFrame(f"status byte {status}"))
            raise BadResponse(f"unknown answer status {status} from {connection.remote_peer_id}")
        try:
            incoming = self._verify(connection, payload)
        except WireError as error:
            raise BadResponse(f"answer from {connection.remote_peer_id} refused: {error}") from None
        self.counters["requests_answered"] += 1
        return incoming

    async def send(self, connection: Connection, body: object, deadline: float) -> None:
        """One-way: done once the frame is handed to the connection."""
        frame = self._seal(body)
        with trio.move_on_at(deadline) as scope:
            stream = await self._open(connection, SEND_PROTOCOL)
            try:
                await send_frame(stream, frame, self.config.frame_bytes_max)
                await stream.send_eof()
            except (TransportError, trio.BrokenResourceError, trio.ClosedResourceError) as error:
                raise PeerUnreachable(f"sending to {connection.remote_peer_id}: {error}") from None
            finally:
                await stream.aclose()
        if scope.cancelled_caught:
            raise RequestTimeout(f"could not send to {connection.remote_peer_id} in time")
        self.counters["messages_sent"] += 1

    # --- incoming ------------------------------------------------------------------

    def _verify(self, connection: Connection, frame: bytes) -> Incoming:
        """Open ``frame``; any defect is counted, closes the connection, and re-raises."""
        try:
            envelope = self._opener.open(frame, self._clock())
            if envelope.sender != connection.remote_public_key:
                raise SenderMismatch("envelope signed by another key than the connection's")
        except WireError as error:
            self._bad(connection, type(error).__name__, error)
            raise
        return Incoming(connection.remote_peer_id, envelope)

    def _bad(self, connection: Connection, cause: str, error: Exception) -> None:
        self.refused[cause] = self.refused.get(cause, 0) + 1
        log.warning(
            "bad frame from %s (%s: %s); closing its connection",
            connection.remote_peer_id,
            cause,
            error,
        )
        if self.on_bad_frame is not None:
            self.on_bad_frame(connection, cause)

    async def _receive(self, stream: MuxedStream) -> Incoming | None:
        try:
            with trio.fail_after(self.config.receive_timeout_s):
                frame = await receive_frame(stream, self.config.frame_bytes_max)
        except (StreamEnded, trio.TooSlowError) as error:
            log.info("dropped stream from %s: %s", stream.connection.remote_peer_id, error)
            await stream.reset()
            return None
        except WireError as error:  # the frame itself: too large, bad prefix, trailing bytes
            self._bad(stream.connection, type(error).__name__, error)
            await stream.reset()
            return None
        try:
            return self._verify(stream.connection, frame)
        except WireError:  # counted by _verify
            await stream.reset()
            return None

    async def serve_request(self, stream: MuxedStream) -> None:
        incoming = await self._receive(stream)
        if incoming is None:
            return
        self.counters["requests_received"] += 1
        payload = await self._dispatch(incoming)
        await send_frame(stream, payload, self.config.frame_bytes_max + 1)
        await stream.send_eof()

    async def _dispatch(self, incoming: Incoming) -> bytes:
        """The answer frame: the handler's answer sealed, or an error."""
        handler = self._handlers.get(incoming.kind)
        if handler is None:
            return _encode_error("no_handler", f"no handler for {incoming.kind!r}")
        try:
            with trio.fail_after(self.config.handler_timeout_s):
                answer = await handler(incoming)
        except trio.TooSlowError:
            self.counters["handler_errors"] += 1
            return _encode_error("handler_timeout", f"{incoming.kind} handler ran too long")
        except Exception as error:
            self.counters["handler_errors"] += 1
            log.exception("handler for %s from %s failed", incoming.kind, incoming.peer_id)
            return _encode_error("handler_failed", f"{type(error).__name__}: {error}")
        if answer is None:
            return _encode_error("no_answer", f"the {incoming.kind} handler answered nothing")
        try:
            return bytes([STATUS_OK]) + self._seal(answer)
        except (TypeError, ColonymeshError) as error:  # the handler built a bad body
            self.counters["handler_errors"] += 1
            return _encode_error("bad_answer", str(error))

    async def serve_send(self, stream: MuxedStream) -> None:
        incoming = await self._receive(stream)
        if incoming is None:
            return
        self.counters["messages_received"] += 1
        handler = self._handlers.get(incoming.kind)
        if handler is None:
            log.info("no handler for one-way %s from %s", incoming.kind, incoming.peer_id)
            return
        try:
            with trio.fail_after(self.config.handler_timeout_s):
                await handler(incoming)
        except trio.TooSlowError:
            self.counters["handler_errors"] += 1
        except Exception:
            self.counters["handler_errors"] += 1
            log.exception("handler for %s from %s failed", incoming.kind, incoming.peer_id)

    def statistics(self) -> dict[str, Any]:
        return {
            **self.counters,
            "refused": dict(self.refused),
            "handlers": sorted(self._handlers),
        }


class SenderMismatch(WireError):
    """The envelope's sender is not the peer at the other end of the connection."""


def _encode_error(code: str, message: str) -> bytes:
    return bytes([STATUS_ERROR]) + wire.encode([code[:64], message[:ERROR_MESSAGE_BYTES_MAX]])


def _decode_error(payload: bytes) -> tuple[str, str]:
    try:
        decoded = wire.decode(payload, frame_bytes_max=ERROR_MESSAGE_BYTES_MAX + 128)
    except WireError:
        return "malformed", "unreadable error answer"
    if (
        isinstance(decoded, list)
        and len(decoded) == 2
        and isinstance(decoded[0], str)
        and isinstance(decoded[1], str)
    ):
        return decoded[0], decoded[1]
    return "malformed", "unreadable error answer"


__all__ = ["Incoming", "Messenger", "MessagingConfig", "encode_frame"]
