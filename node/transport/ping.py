"""libp2p ping (``/ipfs/ping/1.0.0``): 32 bytes out, the same 32 bytes back.

Owns the echo bookkeeping: :class:`PingEcho` turns whatever bytes arrive
into whole 32-byte payloads to echo (a partial payload waits), and
:func:`check_pong` verifies an answer. The payload's randomness is the
driver's (the core takes it as input). Pure; no I/O.
"""

from __future__ import annotations

from colonymesh.node.transport.errors import LocalProtocolError, RemoteProtocolError

PROTOCOL_ID = "/ipfs/ping/1.0.0"
PING_BYTES = 32


class PingEcho:
    """The responder: bytes in, whole payloads to echo out."""

    __slots__ = ("_partial",)

    def __init__(self) -> None:
        self._partial = b""

    def receive_data(self, data: bytes) -> bytes:
        buffered = self._partial + data
        whole = len(buffered) - len(buffered) % PING_BYTES
        self._partial = buffered[whole:]
        return buffered[:whole]

    @property
    def ended_cleanly(self) -> bool:
        """True when no partial payload is pending (a clean end of stream)."""
        return not self._partial


def check_pong(sent: bytes, received: bytes) -> None:
    if len(sent) != PING_BYTES:
        raise LocalProtocolError("a ping payload is 32 bytes")
    if received != sent:
        raise RemoteProtocolError("ping answer differs from the payload sent")
