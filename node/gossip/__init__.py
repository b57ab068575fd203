"""Epidemic broadcast for colonymesh as a sans-I/O core (gossipsub-v1.1-style mesh).

`GossipRouter` is fed messages, peer (dis)connections and ticks, and returns
effects; drivers (trio transport, simulator) carry them out.
"""

from colonymesh.node.gossip.effects import (
    Delivered,
    DeliveryCounted,
    GossipConfig,
    Output,
    PeerMisbehaved,
    PeerRateLimited,
    PublishError,
    PublishThrottled,
    SendMessage,
    ThrottledBy,
)
from colonymesh.node.gossip.messages import (
    GossipMessage,
    GossipProtocolError,
    Message,
    WireLimits,
    message_id,
    message_signing_bytes,
    validate_message,
)
from colonymesh.node.gossip.router import GossipRouter

__all__ = [
    "Delivered",
    "DeliveryCounted",
    "GossipConfig",
    "GossipMessage",
    "GossipProtocolError",
    "GossipRouter",
    "Message",
    "Output",
    "PeerMisbehaved",
    "PeerRateLimited",
    "PublishError",
    "PublishThrottled",
    "SendMessage",
    "ThrottledBy",
    "WireLimits",
    "message_id",
    "message_signing_bytes",
    "validate_message",
]
