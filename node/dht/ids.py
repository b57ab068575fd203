"""Kademlia identifiers: 256-bit node ids, XOR distance, bucket indices.

A node's id is the SHA-256 of its 32-byte Ed25519 public key, so an id cannot be
chosen freely without a key pair and the transport's handshake proves it. A record
key's position in the id space is the SHA-256 of the key bytes. Ids are Python ints:
XOR and comparison on ints are the cheapest form for the simulator's 10^5 nodes.

Bucket `i` of a node holds the peers whose distance `d` satisfies
`2**i <= d < 2**(i+1)`, i.e. `i = d.bit_length() - 1`; bucket 255 is the far half
of the space, bucket 0 the single nearest id.
"""

from __future__ import annotations

import functools
import hashlib
from typing import TYPE_CHECKING, NewType

if TYPE_CHECKING:
    import random

NodeId = NewType("NodeId", int)

ID_BITS = 256
ID_BYTES = ID_BITS // 8
PUBLIC_KEY_BYTES = 32


# Every message from a peer and every candidate of a lookup asks for its id, and every
# routing-table contact holds one: memoising the pure key -> id map makes all tables
# of a process share one int per peer (a 256-bit int is 60 bytes; measured: a third
# of a warm 5,000-peer simulation's table memory) and skips a SHA-256 per message.
# Bounded; a pure function of its argument, so determinism is untouched.
_ID_CACHE_MAX = 1 << 17


@functools.lru_cache(maxsize=_ID_CACHE_MAX)
def _node_id_memo(public_key: bytes) -> NodeId:
    return NodeId(int.from_bytes(hashlib.sha256(public_key).digest(), "big"))


def node_id_of(public_key: bytes) -> NodeId:
    """The Kademlia id of the peer owning `public_key` (32-byte Ed25519)."""
    if type(public_key) is not bytes or len(public_key) != PUBLIC_KEY_BYTES:
        if not isinstance(public_key, bytes | bytearray | memoryview):
            raise TypeError("a public key is bytes")
        if len(public_key) != PUBLIC_KEY_BYTES:
            raise ValueError(f"public key must be {PUBLIC_KEY_BYTES} bytes, got {len(public_key)}")
        public_key = bytes(public_key)  # hashable and immutable before it is memoised
    return _node_id_memo(public_key)


def key_id(key: bytes) -> NodeId:
    """Where a record key lives in the id space."""
    return NodeId(int.from_bytes(hashlib.sha256(key).digest(), "big"))


def id_to_bytes(node_id: int) -> bytes:
    return node_id.to_bytes(ID_BYTES, "big")


def id_from_bytes(raw: bytes) -> NodeId:
    if len(raw) != ID_BYTES:
        raise ValueError(f"an id is {ID_BYTES} bytes, got {len(raw)}")
    return NodeId(int.from_bytes(raw, "big"))


def distance(a: int, b: int) -> int:
    return a ^ b


def bucket_index(self_id: int, other: int) -> int:
    """Index of the bucket `other` falls into, seen from `self_id`."""
    d = self_id ^ other
    if d == 0:
        raise ValueError("a node has no bucket for itself")
    return d.bit_length() - 1


def random_id_in_bucket(self_id: int, index: int, rng: random.Random) -> NodeId:
    """A uniformly random id whose distance from `self_id` falls in bucket `index`."""
    if not 0 <= index < ID_BITS:
        raise ValueError(f"bucket index out of range: {index}")
    return NodeId(self_id ^ ((1 << index) | rng.getrandbits(index)))
