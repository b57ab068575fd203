"""multistream-select 1.0: agreeing on one protocol for a byte stream.

Owns the negotiation on one connection or one yamux stream, for the dialer
(who proposes protocols in order of preference) or the listener (who answers
with an echo of a protocol it supports, or ``na``).

How it works: every message is a varint length, the UTF-8 text and ``\\n``
(the length counts the newline). Both sides first send the header
``/multistream/1.0.0``. The dialer pipelines its first proposal behind its
header; the listener echoes a supported proposal, answers ``na`` otherwise,
and answers ``ls`` with the list of its protocols. Negotiation ends at the
first echo; bytes that arrived behind it belong to the chosen protocol and
are returned with the :class:`ProtocolAgreed` event.

Invariants: a message is at most ``MESSAGE_BYTES_MAX`` long; a listener
answers at most ``PROPOSALS_MAX`` proposals; nothing is consumed after the
agreement.

Contract for the driver: send ``data_to_send()`` after creating the core and
after each ``receive_data``; stop feeding bytes once ``ProtocolAgreed`` (or
an error) came out; hand ``ProtocolAgreed.unconsumed`` to the next layer.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from colonymesh.node.transport.errors import (
    LocalProtocolError,
    MalformedMessage,
    NegotiationFailed,
    RemoteProtocolError,
)
from colonymesh.node.transport.varint import decode_uvarint, encode_uvarint

HEADER = "/multistream/1.0.0"
NA = "na"
LS = "ls"
MESSAGE_BYTES_MAX = 1024
PROPOSALS_MAX = 32


class Role(enum.Enum):
    DIALER = "dialer"
    LISTENER = "listener"


class _State(enum.Enum):
    AWAIT_HEADER = "await-header"
    NEGOTIATING = "negotiating"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class ProtocolAgreed:
    protocol: str
    unconsumed: bytes


def encode_message(text: str) -> bytes:
    body = text.encode() + b"\n"
    if len(body) > MESSAGE_BYTES_MAX:
        raise LocalProtocolError(f"multistream message longer than {MESSAGE_BYTES_MAX} bytes")
    return encode_uvarint(len(body)) + body


class Negotiation:
    """One side of a multistream-select negotiation."""

    def __init__(self, role: Role, protocols: Sequence[str]) -> None:
        if role is Role.DIALER and not protocols:
            raise LocalProtocolError("a dialer must propose at least one protocol")
        for protocol in protocols:
            if not protocol.startswith("/") or "\n" in protocol:
                raise LocalProtocolError(f"bad protocol id {protocol!r}")
            encode_message(protocol)  # checks the size cap
        self.role = role
        self._protocols = list(protocols)
        self._state = _State.AWAIT_HEADER
        self._buffer = bytearray()
        self._out = bytearray(encode_message(HEADER))
        self._proposal_index = 0
        self._proposals_seen = 0
        if role is Role.DIALER:
            self._out += encode_message(self._protocols[0])

    @property
    def done(self) -> bool:
        return self._state is _State.DONE

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes) -> ProtocolAgreed | None:
        """Feed bytes; the agreement once reached. Errors are typed."""
        if self._state is _State.DONE:
            raise LocalProtocolError("negotiation already finished")
        self._buffer += data
        while True:
            message = self._next_message()
            if message is None:
                return None
            agreed = self._handle(message)
            if agreed is not None:
                self._state = _State.DONE
                rest = bytes(self._buffer)
                self._buffer.clear()
                return ProtocolAgreed(agreed, rest)

    def _next_message(self) -> str | None:
        decoded = decode_uvarint(self._buffer, 0, MESSAGE_BYTES_MAX)
        if decoded is None:
            return None
        length, start = decoded
        if len(self._buffer) < start + length:
            return None
        body = bytes(self._buffer[start : start + length])
        del self._buffer[: start + length]
        if length == 0 or body[-1:] != b"\n":
            raise MalformedMessage("multistream message does not end in a newline")
        try:
            return body[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedMessage("multistream message is not UTF-8") from None

    def _handle(self, message: str) -> str | None:
        if self._state is _State.AWAIT_HEADER:
            if message != HEADER:
                raise RemoteProtocolError(f"expected {HEADER!r}, got {message[:64]!r}")
            self._state = _State.NEGOTIATING
            return None
        if self.role is Role.DIALER:
            return self._dialer_handle(message)
        return self._listener_handle(message)

    def _dialer_handle(self, message: str) -> str | None:
        proposed = self._protocols[self._proposal_index]
        if message == proposed:
            return proposed
        if message != NA:
            raise RemoteProtocolError(f"unexpected answer {message[:64]!r} to {proposed!r}")
        self._proposal_index += 1
        if self._proposal_index >= len(self._protocols):
            raise NegotiationFailed(f"remote supports none of {self._protocols!r}")
        self._out += encode_message(self._protocols[self._proposal_index])
        return None

    def _listener_handle(self, message: str) -> str | None:
        self._proposals_seen += 1
        if self._proposals_seen > PROPOSALS_MAX:
            raise RemoteProtocolError(f"more than {PROPOSALS_MAX} proposals")
        if message == LS:
            listing = b"".join(encode_message(p) for p in self._protocols) + b"\n"
            self._out += encode_uvarint(len(listing)) + listing
            return None
        if message in self._protocols:
            self._out += encode_message(message)
            return message
        self._out += encode_message(NA)
        return None
