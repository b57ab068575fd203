"""DHT messages on the wire: compact positional CBOR, decoded strictly and size-capped.

A frame is ``[tag, certificates, field1, field2, ...]``:

* ``tag`` names the message (``Hello`` is 0, the core's messages 1..12);
* ``certificates`` is a short list of owner-signed membership certificates
  (encoded records) of the publishers whose value records the frame carries.
  A reader that never met a publisher cannot otherwise know it is a member;
  certificates are self-verifying (the colony owner signed them), so carrying
  them next to the record is how membership reaches third parties. The driver
  admits them through ``Membership.admit`` (which checks the owner's signature)
  before the core looks at the record.
* peers are ``[public_key, [addr, ...]]``, records ``[key, value, publisher,
  seq, signature]``.

``Hello(addrs)`` opens every DHT stream: the opener's own listen addresses, so
the receiver can put a dialable contact in its routing table. The stream is
Noise-authenticated, so a peer can only speak about itself there.

:func:`decode` raises :class:`~colonymesh.node.errors.MalformedFrame` (or
``FrameTooLarge`` past ``FRAME_BYTES_MAX``; both ``WireError``) and nothing
else, whatever the bytes; it checks types and container lengths against
:class:`WireLimits` while building the message, then runs the core's
``validate_message``, so a decoded message is one the core accepts in shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from colonymesh.node import wire
from colonymesh.node.dht.messages import (
    AddProvider,
    AddProviderResult,
    DhtProtocolError,
    FindNode,
    FindNodeResult,
    GetProviders,
    GetProvidersResult,
    GetValue,
    GetValueResult,
    Message,
    PeerInfo,
    Ping,
    Pong,
    PutValue,
    PutValueResult,
    ValueRecord,
    WireLimits,
    validate_message,
)
from colonymesh.node.errors import MalformedFrame

FRAME_BYTES_MAX = 256 * 1024
CERTIFICATES_PER_FRAME_MAX = 4
CERTIFICATE_BYTES_MAX = 4096


@dataclass(frozen=True, slots=True)
class Hello:
    """First frame of a DHT stream: the opener's listen addresses."""

    addrs: tuple[str, ...]


Frame = Message | Hello

_TAGS: dict[type, int] = {
    Hello: 0,
    Ping: 1,
    Pong: 2,
    FindNode: 3,
    FindNodeResult: 4,
    GetValue: 5,
    GetValueResult: 6,
    PutValue: 7,
    PutValueResult: 8,
    AddProvider: 9,
    AddProviderResult: 10,
    GetProviders: 11,
    GetProvidersResult: 12,
}


def _fail(what: str) -> MalformedFrame:
    return MalformedFrame(f"dht frame: {what}")


# --- encoding --------------------------------------------------------------------


def _peer(info: PeerInfo) -> list[Any]:
    return [info.public_key, list(info.addrs)]


def _record(record: ValueRecord) -> list[Any]:
    return [record.key, record.value, record.publisher, record.seq, record.signature]


def _fields(msg: Frame) -> list[Any]:
    match msg:
        case Hello(addrs=addrs):
            return [list(addrs)]
        case Ping(request_id=rid) | Pong(request_id=rid):
            return [rid]
        case FindNode(request_id=rid, target=target):
            return [rid, target]
        case FindNodeResult(request_id=rid, closer=closer):
            return [rid, [_peer(p) for p in closer]]
        case GetValue(request_id=rid, key=key) | GetProviders(request_id=rid, key=key):
            return [rid, key]
        case GetValueResult(request_id=rid, record=record, closer=closer):
            return [rid, None if record is None else _record(record), [_peer(p) for p in closer]]
        case PutValue(request_id=rid, record=record):
            return [rid, _record(record)]
        case PutValueResult(request_id=rid, stored=stored, reason=reason):
            return [rid, stored, reason]
        case AddProvider(request_id=rid, key=key, provider=provider):
            return [rid, key, _peer(provider)]
        case AddProviderResult(request_id=rid, stored=stored):
            return [rid, stored]
        case GetProvidersResult(request_id=rid, providers=providers, closer=closer):
            return [rid, [_peer(p) for p in providers], [_peer(p) for p in closer]]
        case _:
            raise TypeError(f"not a DHT message: {type(msg).__name__}")


def encode(msg: Frame, certificates: tuple[bytes, ...] = ()) -> bytes:
    """The frame for `msg`, carrying `certificates` (encoded records) alongside."""
    return wire.encode([_TAGS[type(msg)], list(certificates), *_fields(msg)])


# --- decoding --------------------------------------------------------------------


class _Reader:
    """Typed field readers bound to one set of limits."""

    __slots__ = ("limits",)

    def __init__(self, limits: WireLimits) -> None:
        self.limits = limits

    def int_(self, value: Any, what: str) -> int:
        if type(value) is not int or not 0 <= value < 1 << 64:
            raise _fail(f"{what}: not a u64")
        return value

    def bool_(self, value: Any, what: str) -> bool:
        if type(value) is not bool:
            raise _fail(f"{what}: not a boolean")
        return value

    def bytes_(self, value: Any, what: str, cap: int) -> bytes:
        if type(value) is not bytes or len(value) > cap:
            raise _fail(f"{what}: not bytes of at most {cap}")
        return value

    def str_(self, value: Any, what: str, cap: int) -> str:
        if type(value) is not str or len(value) > cap:
            raise _fail(f"{what}: not a string of at most {cap} characters")
        return value

    def list_(self, value: Any, what: str, cap: int) -> list[Any]:
        if type(value) is not list or len(value) > cap:
            raise _fail(f"{what}: not a list of at most {cap}")
        return value

    def addrs(self, value: Any) -> tuple[str, ...]:
        lim = self.limits
        items = self.list_(value, "addrs", lim.addrs_per_peer_max)
        return tuple(self.str_(a, "addr", lim.addr_chars_max) for a in items)

    def peer(self, value: Any) -> PeerInfo:
        if type(value) is not list or len(value) != 2:
            raise _fail("peer: not [key, addrs]")
        return PeerInfo(self.bytes_(value[0], "peer key", 32), self.addrs(value[1]))

    def peers(self, value: Any) -> tuple[PeerInfo, ...]:
        items = self.list_(value, "peers", self.limits.peers_per_message_max)
        return tuple(self.peer(p) for p in items)

    def record(self, value: Any) -> ValueRecord:
        if type(value) is not list or len(value) != 5:
            raise _fail("record: not [key, value, publisher, seq, signature]")
        lim = self.limits
        return ValueRecord(
            self.bytes_(value[0], "record key", lim.key_bytes_max),
            self.bytes_(value[1], "record value", lim.value_bytes_max),
            self.bytes_(value[2], "record publisher", 32),
            self.int_(value[3], "record seq"),
            self.bytes_(value[4], "record signature", 64),
        )


def _build(tag: int, f: list[Any], r: _Reader) -> Frame:
    lim = r.limits

    def arity(n: int) -> None:
        if len(f) != n:
            raise _fail(f"tag {tag} needs {n} fields, got {len(f)}")

    match tag:
        case 0:
            arity(1)
            return Hello(r.addrs(f[0]))
        case 1 | 2:
            arity(1)
            return (Ping if tag == 1 else Pong)(r.int_(f[0], "request_id"))
        case 3:
            arity(2)
            return FindNode(r.int_(f[0], "request_id"), r.bytes_(f[1], "target", 32))
        case 4:
            arity(2)
            return FindNodeResult(r.int_(f[0], "request_id"), r.peers(f[1]))
        case 5 | 11:
            arity(2)
            key = r.bytes_(f[1], "key", lim.key_bytes_max)
            return (GetValue if tag == 5 else GetProviders)(r.int_(f[0], "request_id"), key)
        case 6:
            arity(3)
            record = None if f[1] is None else r.record(f[1])
            return GetValueResult(r.int_(f[0], "request_id"), record, r.peers(f[2]))
        case 7:
            arity(2)
            return PutValue(r.int_(f[0], "request_id"), r.record(f[1]))
        case 8:
            arity(3)
            reason = r.str_(f[2], "reason", lim.reason_chars_max)
            return PutValueResult(r.int_(f[0], "request_id"), r.bool_(f[1], "stored"), reason)
        case 9:
            arity(3)
            key = r.bytes_(f[1], "key", lim.key_bytes_max)
            return AddProvider(r.int_(f[0], "request_id"), key, r.peer(f[2]))
        case 10:
            arity(2)
            return AddProviderResult(r.int_(f[0], "request_id"), r.bool_(f[1], "stored"))
        case 12:
            arity(3)
            rid = r.int_(f[0], "request_id")
            return GetProvidersResult(rid, r.peers(f[1]), r.peers(f[2]))
        case _:
            raise _fail(f"unknown tag {tag}")


def decode(frame: bytes, limits: WireLimits | None = None) -> tuple[Frame, tuple[bytes, ...]]:
    """``(message, certificates)`` from one frame; `WireError` for anything else."""
    reader = _Reader(limits if limits is not None else WireLimits())
    value = wire.decode(frame, frame_bytes_max=FRAME_BYTES_MAX, canonical=False)
    if type(value) is not list or len(value) < 2 or type(value[0]) is not int:
        raise _fail("not [tag, certificates, fields...]")
    certs = reader.list_(value[1], "certificates", CERTIFICATES_PER_FRAME_MAX)
    certificates = tuple(reader.bytes_(c, "certificate", CERTIFICATE_BYTES_MAX) for c in certs)
    msg = _build(value[0], value[2:], reader)
    if not isinstance(msg, Hello):
        try:
            validate_message(msg, reader.limits)
        except DhtProtocolError as error:
            raise _fail(str(error)) from None
    return msg, certificates
