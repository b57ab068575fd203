"""Kademlia for colonymesh as sans-I/O cores: ids, routing table, iterative lookup, records.

`DhtNode` composes them; drivers (trio transport, simulator) feed it messages and
ticks and carry out the effects it returns. Nothing here does I/O or reads a clock.
"""

from colonymesh.node.dht.effects import (
    DhtBusy,
    DhtConfig,
    LookupFinished,
    OpKind,
    Output,
    PeerMisbehaved,
    ProvidersLookupFinished,
    RecordRefused,
    SendMessage,
    StoreFinished,
    ValueLookupFinished,
)
from colonymesh.node.dht.ids import NodeId, key_id, node_id_of
from colonymesh.node.dht.messages import (
    DhtProtocolError,
    Message,
    PeerInfo,
    ValueRecord,
    WireLimits,
    validate_message,
    value_signing_bytes,
)
from colonymesh.node.dht.node import DhtNode
from colonymesh.node.dht.records import (
    RecordLimits,
    RecordPolicy,
    Rejection,
    publisher_owned_keys,
)

__all__ = [
    "DhtBusy",
    "DhtConfig",
    "DhtNode",
    "DhtProtocolError",
    "LookupFinished",
    "Message",
    "NodeId",
    "OpKind",
    "Output",
    "PeerInfo",
    "PeerMisbehaved",
    "ProvidersLookupFinished",
    "RecordLimits",
    "RecordPolicy",
    "RecordRefused",
    "Rejection",
    "SendMessage",
    "StoreFinished",
    "ValueLookupFinished",
    "ValueRecord",
    "WireLimits",
    "key_id",
    "node_id_of",
    "publisher_owned_keys",
    "validate_message",
    "value_signing_bytes",
]
