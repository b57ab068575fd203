"""Bookkeeping records of a `DhtNode`: operations in progress and requests in flight.

Plain mutable slots classes owned by one `DhtNode`; no behaviour.
"""

from __future__ import annotations

import enum

from colonymesh.node.dht.effects import OpKind
from colonymesh.node.dht.lookup import DisjointLookup, Lookup
from colonymesh.node.dht.messages import PeerInfo, ValueRecord


class ReqKind(enum.Enum):
    LOOKUP = "lookup"
    PROBE = "probe"
    STORE = "store"


class Pending:
    __slots__ = ("deadline", "kind", "op_id", "peer")

    def __init__(self, peer: PeerInfo, kind: ReqKind, op_id: int, deadline: float) -> None:
        self.peer = peer
        self.kind = kind
        self.op_id = op_id  # -1: belongs to no operation
        self.deadline = deadline


class Op:
    __slots__ = (
        "answers",
        "attempted",
        "best",
        "found",
        "id",
        "key",
        "kind",
        "lookup",
        "outstanding",
        "providers",
        "record",
        "rids",
        "stored",
        "target",
    )

    def __init__(self, op_id: int, kind: OpKind, target: int, key: bytes) -> None:
        self.id = op_id
        self.kind = kind
        self.target = target
        self.key = key
        self.lookup: Lookup | DisjointLookup | None = None
        self.rids: dict[bytes, int] = {}  # lookup peer -> request id in flight
        self.record: ValueRecord | None = None  # PUT_VALUE: what to store
        self.best: ValueRecord | None = None  # GET_VALUE: newest valid record seen
        self.answers: dict[bytes, ValueRecord | None] = {}  # GET_VALUE: who said what
        self.found = 0  # GET_VALUE: valid records received
        self.providers: dict[bytes, PeerInfo] = {}
        self.outstanding = 0  # store phase: requests still unanswered
        self.stored = 0
        self.attempted = 0
