"""The peer transport: libp2p's wire protocols, our own sans-I/O implementation, on trio.

Cores (no I/O, no clock, no randomness; bytes in, events and bytes out):
:mod:`~colonymesh.node.transport.varint`, :mod:`~colonymesh.node.transport.protobuf`,
:mod:`~colonymesh.node.transport.multiaddr`, :mod:`~colonymesh.node.transport.multistream`,
:mod:`~colonymesh.node.transport.noise`, :mod:`~colonymesh.node.transport.yamux`,
:mod:`~colonymesh.node.transport.identify`, :mod:`~colonymesh.node.transport.ping`.

Driver (trio): :mod:`~colonymesh.node.transport.upgrade` (TCP → multistream →
Noise → gate → multistream → yamux), :mod:`~colonymesh.node.transport.connection`,
:mod:`~colonymesh.node.transport.stream`, :mod:`~colonymesh.node.transport.host`.

The connection gate runs right after the Noise handshake with the remote's
proven Ed25519 key (:class:`SecuredPeer`); returning ``False`` closes the
connection before any stream exists. A :data:`StreamFilter` then decides per
connection which of our protocols its remote may open (others get ``na``)::

    async def gate(peer: SecuredPeer) -> bool:
        return peer.public_key in admitted

    async with Host.open(keys, gate=gate) as host: ...

Importing this package is cheap: the names below load their module on first
use, so code that only needs a core (the simulator) never imports trio.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from colonymesh.node.transport.config import TransportConfig
    from colonymesh.node.transport.connection import Connection, StreamHandler
    from colonymesh.node.transport.errors import (
        ConnectionRefused,
        HandshakeFailed,
        LocalProtocolError,
        NegotiationFailed,
        PeerMismatch,
        RemoteProtocolError,
        TransportError,
    )
    from colonymesh.node.transport.host import Host, HostStatistics, StreamFilter
    from colonymesh.node.transport.stream import MuxedStream, StreamReset
    from colonymesh.node.transport.upgrade import Gate, SecuredPeer
    from colonymesh.node.transport.yamux import YamuxConfig

_HOMES = {
    "TransportConfig": "config",
    "Connection": "connection",
    "StreamHandler": "connection",
    "ConnectionRefused": "errors",
    "HandshakeFailed": "errors",
    "LocalProtocolError": "errors",
    "NegotiationFailed": "errors",
    "PeerMismatch": "errors",
    "RemoteProtocolError": "errors",
    "TransportError": "errors",
    "Host": "host",
    "HostStatistics": "host",
    "StreamFilter": "host",
    "MuxedStream": "stream",
    "StreamReset": "stream",
    "Gate": "upgrade",
    "SecuredPeer": "upgrade",
    "YamuxConfig": "yamux",
}
__all__ = [
    "Connection",
    "ConnectionRefused",
    "Gate",
    "HandshakeFailed",
    "Host",
    "HostStatistics",
    "LocalProtocolError",
    "MuxedStream",
    "NegotiationFailed",
    "PeerMismatch",
    "RemoteProtocolError",
    "SecuredPeer",
    "StreamFilter",
    "StreamHandler",
    "StreamReset",
    "TransportConfig",
    "TransportError",
    "YamuxConfig",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
