"""Configuration, effects and events of the gossip router.

`SendMessage` is the only effect. Events report facts to the router's owner:
`Delivered` (a new valid message on a subscribed topic), `PublishThrottled` (our own
publish was refused by the local rate limit: retry later), `PeerRateLimited` (we
pushed back on a peer), `ThrottledBy` (a peer pushed back on us),
`DeliveryCounted` (the delivery count of a message we published changed) and
`PeerMisbehaved`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from colonymesh.node.gossip.messages import Message, WireLimits


@dataclass(frozen=True, slots=True)
class GossipConfig:
    # mesh (gossipsub v1.1 defaults)
    d: int = 6
    d_lo: int = 4
    d_hi: int = 12
    d_lazy: int = 6
    gossip_factor: float = 0.25
    # beyond gossipsub: IHAVE to mesh peers too, with the newest window's ids (0: off);
    # repairs a node all of whose eager pushes were lost, which plain gossipsub never
    # does when every one of its peers has it in their mesh
    mesh_ihave_windows: int = 2
    # re-announce subscriptions and re-send GRAFT to mesh peers this often: one lost
    # announcement or GRAFT must not hide a subscriber or leave a mesh link one-way
    # for good (both are idempotent at the receiver)
    resubscribe_s: float = 10.0
    heartbeat_s: float = 1.0
    fanout_ttl_s: float = 60.0
    prune_backoff_s: float = 60.0
    flood_publish: bool = False  # publisher sends to every topic peer, not just D
    # caches
    mcache_windows: int = 5
    mcache_gossip_windows: int = 3
    seen_ttl_s: float = 120.0
    seen_max: int = 20_000
    iwant_followup_s: float = 0.5  # ask for an id again (another peer) after this
    # rate limits (per peer, full messages received) and own publishing
    peer_msgs_per_s: float = 100.0
    peer_msgs_burst: float = 200.0
    peer_bytes_per_s: float = 4 * 1024 * 1024
    peer_bytes_burst: float = 8 * 1024 * 1024
    publish_per_s: float = 50.0
    publish_burst: float = 100.0
    throttle_backoff_s_max: float = 10.0
    ihave_per_peer_per_heartbeat: int = 10
    deferred_max: int = 256  # messages held back per throttling peer
    # delivery accounting
    receipt_flush_s: float = 0.25
    receipt_repeats: int = 2  # resend an unchanged count this often (loss tolerance)
    wire: WireLimits = field(default_factory=WireLimits)


class PublishError(Exception):
    """The owner misused `publish` (e.g. data larger than the wire limit)."""


@dataclass(frozen=True, slots=True)
class SendMessage:
    to: bytes  # the peer's public key
    message: Message


@dataclass(frozen=True, slots=True)
class Delivered:
    topic: str
    msg_id: bytes
    data: bytes
    publisher: bytes


@dataclass(frozen=True, slots=True)
class PublishThrottled:
    topic: str
    retry_after_s: float


@dataclass(frozen=True, slots=True)
class PeerRateLimited:
    peer: bytes
    msg_id: bytes
    retry_after_s: float


@dataclass(frozen=True, slots=True)
class ThrottledBy:
    peer: bytes
    until: float
    msg_ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class DeliveryCounted:
    msg_id: bytes
    delivered: int


@dataclass(frozen=True, slots=True)
class PeerMisbehaved:
    peer: bytes
    reason: str


Output = (
    SendMessage
    | Delivered
    | PublishThrottled
    | PeerRateLimited
    | ThrottledBy
    | DeliveryCounted
    | PeerMisbehaved
)
