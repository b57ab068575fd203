"""Gossip wire messages, signed broadcast messages, message ids, strict validation.

A `GossipMessage` is (topic, data, publisher key, seqno, signature over
`message_signing_bytes`). Its id is the SHA-256 of the signed bytes *and* the
signature: an id names exactly one signed message, so a forged copy with a bad
signature can never shadow the real one in a seen-cache. Control messages carry
ids only (IHAVE/IWANT), a topic (GRAFT/PRUNE), a subscription change, a push-back
(`Throttle`) or aggregated delivery receipts (`Receipts`).

`validate_message` must run on everything from the network before the router
looks at it; it raises `GossipProtocolError` and nothing else.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

MSG_ID_BYTES = 32
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
_U64_MAX = (1 << 64) - 1
_U32_MAX = (1 << 32) - 1
_DOMAIN = b"colonymesh/gossip/message/v1\x00"


class GossipProtocolError(Exception):
    """A peer sent a gossip message that breaks the protocol's shape or limits."""


@dataclass(frozen=True, slots=True)
class GossipMessage:
    topic: str
    data: bytes
    publisher: bytes
    seqno: int
    signature: bytes


def message_signing_bytes(topic: str, data: bytes, publisher: bytes, seqno: int) -> bytes:
    t = topic.encode()
    return b"".join(
        (
            _DOMAIN,
            struct.pack(">H", len(t)),
            t,
            publisher,
            struct.pack(">Q", seqno),
            struct.pack(">I", len(data)),
            data,
        )
    )


def message_id(msg: GossipMessage) -> bytes:
    signed = message_signing_bytes(msg.topic, msg.data, msg.publisher, msg.seqno)
    return hashlib.sha256(signed + msg.signature).digest()


@dataclass(frozen=True, slots=True)
class Publish:
    """A full message, pushed eagerly along the mesh or sent in answer to IWANT."""

    message: GossipMessage


@dataclass(frozen=True, slots=True)
class IHave:
    topic: str
    msg_ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class IWant:
    msg_ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Graft:
    topic: str


@dataclass(frozen=True, slots=True)
class Prune:
    topic: str
    backoff_s: float


@dataclass(frozen=True, slots=True)
class Subscriptions:
    subscribe: tuple[str, ...] = ()
    unsubscribe: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Throttle:
    """Push-back: "I did not take these messages; send nothing eagerly for a while,
    offer them again by IHAVE after `retry_after_s`"."""

    retry_after_s: float
    msg_ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Receipt:
    msg_id: bytes
    delivered: int  # cumulative deliveries in the sender's subtree of this message


@dataclass(frozen=True, slots=True)
class Receipts:
    entries: tuple[Receipt, ...]


Message = Publish | IHave | IWant | Graft | Prune | Subscriptions | Throttle | Receipts


@dataclass(frozen=True, slots=True)
class WireLimits:
    data_bytes_max: int = 64 * 1024
    topic_chars_max: int = 128
    ids_per_message_max: int = 512
    topics_per_message_max: int = 64
    receipts_per_message_max: int = 1024
    backoff_s_max: float = 3600.0


def _fail(what: str) -> GossipProtocolError:
    return GossipProtocolError(what)


def _topic(topic: object, limits: WireLimits) -> None:
    if not isinstance(topic, str) or not 0 < len(topic) <= limits.topic_chars_max:
        raise _fail("topic: not a short non-empty string")


def _ids(ids: object, limits: WireLimits) -> None:
    if not isinstance(ids, tuple) or len(ids) > limits.ids_per_message_max:
        raise _fail("msg_ids: not a short tuple")
    for i in ids:
        if not isinstance(i, bytes) or len(i) != MSG_ID_BYTES:
            raise _fail("msg_id: not 32 bytes")


def _seconds(value: object, hi: float, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= hi:
        raise _fail(f"{what}: out of range")


def _gossip_message(msg: object, limits: WireLimits) -> None:
    if not isinstance(msg, GossipMessage):
        raise _fail("message: not a GossipMessage")
    _topic(msg.topic, limits)
    if not isinstance(msg.data, bytes) or len(msg.data) > limits.data_bytes_max:
        raise _fail("data: not bytes or too large")
    if not isinstance(msg.publisher, bytes) or len(msg.publisher) != PUBLIC_KEY_BYTES:
        raise _fail("publisher: not a 32-byte key")
    if isinstance(msg.seqno, bool) or not isinstance(msg.seqno, int):
        raise _fail("seqno: not an int")
    if not 0 <= msg.seqno <= _U64_MAX:
        raise _fail("seqno: out of range")
    if not isinstance(msg.signature, bytes) or len(msg.signature) != SIGNATURE_BYTES:
        raise _fail("signature: not 64 bytes")


def validate_message(msg: object, limits: WireLimits) -> None:
    """Raise `GossipProtocolError` unless `msg` is a well-formed gossip message."""
    match msg:
        case Publish(message=inner):
            _gossip_message(inner, limits)
        case IHave(topic=topic, msg_ids=ids):
            _topic(topic, limits)
            _ids(ids, limits)
        case IWant(msg_ids=ids):
            _ids(ids, limits)
        case Graft(topic=topic):
            _topic(topic, limits)
        case Prune(topic=topic, backoff_s=backoff):
            _topic(topic, limits)
            _seconds(backoff, limits.backoff_s_max, "backoff_s")
        case Subscriptions(subscribe=sub, unsubscribe=unsub):
            for group in (sub, unsub):
                if not isinstance(group, tuple) or len(group) > limits.topics_per_message_max:
                    raise _fail("subscriptions: not a short tuple")
                for topic in group:
                    _topic(topic, limits)
        case Throttle(retry_after_s=retry, msg_ids=ids):
            _seconds(retry, limits.backoff_s_max, "retry_after_s")
            _ids(ids, limits)
        case Receipts(entries=entries):
            if not isinstance(entries, tuple) or len(entries) > limits.receipts_per_message_max:
                raise _fail("receipts: not a short tuple")
            for entry in entries:
                if not isinstance(entry, Receipt):
                    raise _fail("receipt: not a Receipt")
                _ids((entry.msg_id,), limits)
                n = entry.delivered
                if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= _U32_MAX:
                    raise _fail("receipt count: out of range")
        case _:
            raise _fail("not a gossip message")
