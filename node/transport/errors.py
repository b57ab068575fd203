"""Transport error types, split by blame as h11 does.

:class:`LocalProtocolError` means *we* misused a core (a bug or a closed
resource on our side); :class:`RemoteProtocolError` means the peer sent
something the protocol forbids. A remote error closes that connection (or
resets that stream) and never the node. Both carry one-line messages.
"""

from __future__ import annotations

from colonymesh.node.errors import ColonymeshError, WireError


class TransportError(ColonymeshError):
    """Base of every transport error."""


class LocalProtocolError(TransportError):
    """We asked a core for something its state does not allow."""


class RemoteProtocolError(TransportError, WireError):
    """The remote peer violated the protocol; the sender is to blame."""


class FrameTooLarge(RemoteProtocolError):
    """A length prefix or frame exceeds its cap."""


class MalformedMessage(RemoteProtocolError):
    """A varint, protobuf or protocol line is not well formed."""


class NegotiationFailed(TransportError):
    """multistream-select found no protocol both sides speak."""


class HandshakeFailed(RemoteProtocolError):
    """The Noise handshake failed: bad ciphertext, key or identity signature."""


class PeerMismatch(TransportError):
    """The remote proved an identity other than the one we dialled."""


class DecryptionFailed(RemoteProtocolError):
    """A Noise transport frame failed authentication."""


class SessionClosed(TransportError):
    """The connection (yamux session) is closed or going away."""


class StreamLimitReached(TransportError):
    """Opening another stream would exceed the session's stream cap."""


class ConnectionRefused(TransportError):
    """The connection gate refused the remote after the handshake."""
