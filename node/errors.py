"""The error types users and peers see.

Every error here carries a one-line message fit for a terminal: the CLI prints
``str(error)`` and exits non-zero, never a traceback. Errors split by blame as
h11 does: :class:`InputError` for bad files or arguments from the local user,
:class:`WireError` for bad input from a remote peer (the connection that sent
it may be closed; the peer keeps running).
"""

from __future__ import annotations


class ColonymeshError(Exception):
    """Base of every error colonymesh raises on purpose."""


class InputError(ColonymeshError):
    """A local file or argument is unusable; the message names it."""


class KeyFileError(InputError):
    """A key file is missing, corrupt, or readable by others."""


class CertificateError(ColonymeshError):
    """A membership certificate does not admit its holder."""


class CertificateInvalid(CertificateError):
    """The certificate is malformed or its owner signature does not verify."""


class CertificateExpired(CertificateError):
    """``now`` lies outside the certificate's validity window."""


class CertificateRevoked(CertificateError):
    """The colony owner has revoked the certificate."""


class WireError(ColonymeshError):
    """A frame from the network was refused; the sender is to blame."""


class ForeignColony(CertificateError, WireError):
    """The certificate or envelope belongs to another colony."""


class FrameTooLarge(WireError):
    """The frame exceeds the configured size cap."""


class MalformedFrame(WireError):
    """The frame is not canonical, well-formed CBOR of the expected shape."""


class UnknownKind(WireError):
    """The envelope names a message kind this peer does not know."""


class BadField(WireError):
    """A field of a known message kind is missing, unexpected or mistyped."""


class BadSignature(WireError):
    """The envelope's signature does not verify under its sender's key."""


class UnknownSender(WireError):
    """No certificate is known for the envelope's sender."""


class SenderNotAdmitted(WireError):
    """The sender's certificate is expired, revoked or of another colony."""


class ReplayedEnvelope(WireError):
    """The envelope's sequence number was already accepted from this sender."""


class ReorderedBeyondWindow(WireError):
    """The envelope's sequence number is older than the replay window keeps."""


class ClockSkew(WireError):
    """The envelope's timestamp is further from ``now`` than the allowed skew."""
