"""Errors a caller of the messaging API sees, one line each, typed by cause."""

from __future__ import annotations

from colonymesh.node.errors import ColonymeshError


class MessagingError(ColonymeshError):
    """Base of every error :meth:`Peer.request` and :meth:`Peer.send` raise."""


class RequestTimeout(MessagingError):
    """No answer arrived before the request's deadline."""


class PeerUnreachable(MessagingError):
    """No connection to the peer could be made (no address, dial failed, backing off)."""


class NotAdmitted(MessagingError):
    """The peer's membership exchange failed: it refused us, or we refused it."""


class ConnectionLimitReached(MessagingError):
    """Another connection would exceed the configured cap."""


class RemoteError(MessagingError):
    """The remote peer answered with an error (no handler, handler failed, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"remote error {code}: {message}")
        self.code = code
        self.remote_message = message


class BadResponse(MessagingError):
    """The answer was not a valid signed envelope from the peer asked."""


class StreamEnded(MessagingError):
    """The stream ended (or was reset) before a whole frame arrived."""
