"""The colony's own message kinds that every peer speaks.

Protocol parts register their kinds next to their drivers (``raft.*``,
``dht.*``, ``gossip.*``, ``ledger.*``); these are the ones a connection needs
before any of them: presenting one's certificate, and liveness.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from colonymesh.node.certs import RECORD_BYTES_MAX
from colonymesh.node.envelope import message
from colonymesh.node.schema import exact, limit


@message("colony.present")
@dataclass(frozen=True, slots=True)
class PresentCertificate:
    """Sent first on every connection: the encoded certificate of the sender."""

    certificate: bytes = field(metadata=limit(RECORD_BYTES_MAX))
    revocations_seen: int = 0


@message("colony.ping")
@dataclass(frozen=True, slots=True)
class Ping:
    nonce: bytes = field(metadata=exact(16))


@message("colony.pong")
@dataclass(frozen=True, slots=True)
class Pong:
    nonce: bytes = field(metadata=exact(16))
