"""Gossip messages on the wire: compact positional CBOR, decoded strictly and size-capped.

A frame is ``[tag, certificates, field1, ...]`` with tags 1..8 for `Publish`,
`IHave`, `IWant`, `Graft`, `Prune`, `Subscriptions`, `Throttle`, `Receipts`, and
a broadcast message as ``[topic, data, publisher, seqno, signature]``.
``certificates`` carries the publisher's owner-signed membership certificate
next to a `Publish`: a peer that never connected to the publisher has no other
way to know it is a member (see ``colonymesh.node.dht.codec``, same scheme).

:func:`decode` raises :class:`~colonymesh.node.errors.MalformedFrame` (or
``FrameTooLarge`` past ``FRAME_BYTES_MAX``; both ``WireError``) and nothing
else; it checks types and lengths while building the message and then runs the
router's ``validate_message``.
"""

from __future__ import annotations

from typing import Any

from colonymesh.node import wire
from colonymesh.node.errors import MalformedFrame
from colonymesh.node.gossip.messages import (
    GossipMessage,
    GossipProtocolError,
    Graft,
    IHave,
    IWant,
    Message,
    Prune,
    Publish,
    Receipt,
    Receipts,
    Subscriptions,
    Throttle,
    WireLimits,
    validate_message,
)

FRAME_BYTES_MAX = 256 * 1024
CERTIFICATES_PER_FRAME_MAX = 2
CERTIFICATE_BYTES_MAX = 4096

_TAGS: dict[type, int] = {
    Publish: 1,
    IHave: 2,
    IWant: 3,
    Graft: 4,
    Prune: 5,
    Subscriptions: 6,
    Throttle: 7,
    Receipts: 8,
}


def _fail(what: str) -> MalformedFrame:
    return MalformedFrame(f"gossip frame: {what}")


def _fields(msg: Message) -> list[Any]:
    match msg:
        case Publish(message=m):
            return [[m.topic, m.data, m.publisher, m.seqno, m.signature]]
        case IHave(topic=topic, msg_ids=ids):
            return [topic, list(ids)]
        case IWant(msg_ids=ids):
            return [list(ids)]
        case Graft(topic=topic):
            return [topic]
        case Prune(topic=topic, backoff_s=backoff):
            return [topic, float(backoff)]
        case Subscriptions(subscribe=sub, unsubscribe=unsub):
            return [list(sub), list(unsub)]
        case Throttle(retry_after_s=retry, msg_ids=ids):
            return [float(retry), list(ids)]
        case Receipts(entries=entries):
            return [[[e.msg_id, e.delivered] for e in entries]]
        case _:
            raise TypeError(f"not a gossip message: {type(msg).__name__}")


def encode(msg: Message, certificates: tuple[bytes, ...] = ()) -> bytes:
    return wire.encode([_TAGS[type(msg)], list(certificates), *_fields(msg)])


def _list(value: Any, what: str, cap: int) -> list[Any]:
    if type(value) is not list or len(value) > cap:
        raise _fail(f"{what}: not a list of at most {cap}")
    return value


def _str(value: Any, what: str, cap: int) -> str:
    if type(value) is not str or len(value) > cap:
        raise _fail(f"{what}: not a string of at most {cap} characters")
    return value


def _bytes(value: Any, what: str, cap: int) -> bytes:
    if type(value) is not bytes or len(value) > cap:
        raise _fail(f"{what}: not bytes of at most {cap}")
    return value


def _uint(value: Any, what: str) -> int:
    if type(value) is not int or not 0 <= value < 1 << 64:
        raise _fail(f"{what}: not a u64")
    return value


def _seconds(value: Any, what: str) -> float:
    if type(value) not in (int, float):
        raise _fail(f"{what}: not a number")
    return float(value)


def _ids(value: Any, limits: WireLimits) -> tuple[bytes, ...]:
    items = _list(value, "msg_ids", limits.ids_per_message_max)
    return tuple(_bytes(i, "msg_id", 32) for i in items)


def _topics(value: Any, limits: WireLimits) -> tuple[str, ...]:
    items = _list(value, "topics", limits.topics_per_message_max)
    return tuple(_str(t, "topic", limits.topic_chars_max) for t in items)


def _gossip_message(value: Any, limits: WireLimits) -> GossipMessage:
    if type(value) is not list or len(value) != 5:
        raise _fail("message: not [topic, data, publisher, seqno, signature]")
    return GossipMessage(
        _str(value[0], "topic", limits.topic_chars_max),
        _bytes(value[1], "data", limits.data_bytes_max),
        _bytes(value[2], "publisher", 32),
        _uint(value[3], "seqno"),
        _bytes(value[4], "signature", 64),
    )


def _receipt(value: Any) -> Receipt:
    if type(value) is not list or len(value) != 2:
        raise _fail("receipt: not [msg_id, delivered]")
    return Receipt(_bytes(value[0], "msg_id", 32), _uint(value[1], "delivered"))


def _build(tag: int, f: list[Any], limits: WireLimits) -> Message:
    def arity(n: int) -> None:
        if len(f) != n:
            raise _fail(f"tag {tag} needs {n} fields, got {len(f)}")

    topic_max = limits.topic_chars_max
    match tag:
        case 1:
            arity(1)
            return Publish(_gossip_message(f[0], limits))
        case 2:
            arity(2)
            return IHave(_str(f[0], "topic", topic_max), _ids(f[1], limits))
        case 3:
            arity(1)
            return IWant(_ids(f[0], limits))
        case 4:
            arity(1)
            return Graft(_str(f[0], "topic", topic_max))
        case 5:
            arity(2)
            return Prune(_str(f[0], "topic", topic_max), _seconds(f[1], "backoff_s"))
        case 6:
            arity(2)
            return Subscriptions(_topics(f[0], limits), _topics(f[1], limits))
        case 7:
            arity(2)
            return Throttle(_seconds(f[0], "retry_after_s"), _ids(f[1], limits))
        case 8:
            arity(1)
            items = _list(f[0], "receipts", limits.receipts_per_message_max)
            return Receipts(tuple(_receipt(e) for e in items))
        case _:
            raise _fail(f"unknown tag {tag}")


def decode(frame: bytes, limits: WireLimits | None = None) -> tuple[Message, tuple[bytes, ...]]:
    """``(message, certificates)`` from one frame; `WireError` for anything else."""
    lim = limits if limits is not None else WireLimits()
    value = wire.decode(frame, frame_bytes_max=FRAME_BYTES_MAX, canonical=False)
    if type(value) is not list or len(value) < 2 or type(value[0]) is not int:
        raise _fail("not [tag, certificates, fields...]")
    certs = _list(value[1], "certificates", CERTIFICATES_PER_FRAME_MAX)
    certificates = tuple(_bytes(c, "certificate", CERTIFICATE_BYTES_MAX) for c in certs)
    msg = _build(value[0], value[2:], lim)
    try:
        validate_message(msg, lim)
    except GossipProtocolError as error:
        raise _fail(str(error)) from None
    return msg, certificates
