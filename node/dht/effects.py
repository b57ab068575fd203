"""What a `DhtNode` asks its driver to do, what it reports, and how it is configured.

`SendMessage` is the only effect: the driver delivers the message to the peer (or
loses it; a lost request simply times out). Everything else is an event, a fact
the node reports to its owner.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from colonymesh.node.dht.messages import Message, PeerInfo, ValueRecord, WireLimits
from colonymesh.node.dht.records import HOUR_S, RecordLimits


class OpKind(enum.Enum):
    FIND_NODE = "find-node"
    BOOTSTRAP = "bootstrap"
    REFRESH = "refresh"
    GET_VALUE = "get-value"
    PUT_VALUE = "put-value"
    GET_PROVIDERS = "get-providers"
    PROVIDE = "provide"


@dataclass(frozen=True, slots=True)
class DhtConfig:
    k: int = 20
    alpha: int = 3
    disjoint_paths: int = 1  # > 1: S/Kademlia disjoint lookups
    request_timeout_s: float = 10.0
    probe_after_s: float = 60.0  # a contact heard from more recently is not pinged
    failures_max: int = 2  # timeouts before a contact is replaced / not handed out
    replacements_max: int = 8
    refresh_interval_s: float = 1 * HOUR_S
    refresh_on_bootstrap: bool = True
    lookups_max: int = 32
    probes_max: int = 64  # liveness pings in flight
    lookup_peers_max: int | None = None  # candidates kept per lookup (default 8k)
    # a GET_VALUE ends after this many valid records (0: run to the end); more than one
    # so that a replica that missed the newest sequence number rarely decides the answer
    value_quorum: int = 3
    provider_republish_s: float = 22 * HOUR_S
    value_republish_s: float = 22 * HOUR_S
    expire_interval_s: float = 60.0
    records: RecordLimits = field(default_factory=RecordLimits)
    wire: WireLimits = field(default_factory=WireLimits)


class DhtBusy(Exception):
    """The caller asked for more concurrent operations than `lookups_max` allows."""


class RecordRefused(Exception):
    """The caller tried to publish a record this node itself refuses."""


# --- effects --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendMessage:
    to: PeerInfo
    message: Message


# --- events ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LookupFinished:
    """A FIND_NODE-style lookup (find_node, bootstrap, refresh) ended."""

    op_id: int
    kind: OpKind
    target: bytes
    closest: tuple[PeerInfo, ...]
    hops: int
    queried: int


@dataclass(frozen=True, slots=True)
class ValueLookupFinished:
    op_id: int
    key: bytes
    record: ValueRecord | None  # the newest valid record seen (local store included)
    hops: int
    queried: int


@dataclass(frozen=True, slots=True)
class ProvidersLookupFinished:
    op_id: int
    key: bytes
    providers: tuple[PeerInfo, ...]
    hops: int
    queried: int


@dataclass(frozen=True, slots=True)
class StoreFinished:
    """A put_value or provide reached the k closest peers; `stored` of them accepted."""

    op_id: int
    kind: OpKind
    key: bytes
    stored: int
    attempted: int


@dataclass(frozen=True, slots=True)
class PeerMisbehaved:
    peer: bytes
    reason: str


Output = (
    SendMessage
    | LookupFinished
    | ValueLookupFinished
    | ProvidersLookupFinished
    | StoreFinished
    | PeerMisbehaved
)
