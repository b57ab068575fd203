"""Chunk exchange: a Bitswap-like want-list protocol, sans-I/O.

* ``messages`` -- the wire messages of ``/colonymesh/fs/1.0.0`` and their strict codec.
* ``session``  -- `ExchangeSession`: fetch a whole DAG by its root from several peers.
* ``server``   -- `ExchangeServer`: answer peers' want-lists from the local store.

The driver (``colonymesh.node.fsnet``) owns streams, the store and the clock.
"""

from colonymesh.fs.exchange.messages import ExchangeDecodeError, decode, encode
from colonymesh.fs.exchange.server import ExchangeProtocolError, ExchangeServer
from colonymesh.fs.exchange.session import (
    BlockReceived,
    ExchangeSession,
    FindProviders,
    LoadLocal,
    PeerId,
    PeerMisbehaved,
    SendWantList,
    SessionConfig,
    SessionFinished,
)

__all__ = [
    "BlockReceived",
    "ExchangeDecodeError",
    "ExchangeProtocolError",
    "ExchangeServer",
    "ExchangeSession",
    "FindProviders",
    "LoadLocal",
    "PeerId",
    "PeerMisbehaved",
    "SendWantList",
    "SessionConfig",
    "SessionFinished",
    "decode",
    "encode",
]
