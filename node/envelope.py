"""Signed envelopes: how every colony message travels.

An envelope carries colony id, sender (Ed25519 public key), message kind,
sequence number, timestamp and a typed body, signed by the sender. On the wire
it is the canonical CBOR array ``[1, signed, signature]`` where ``signed`` is
itself the canonical CBOR of ``[colony_id, sender, kind, seq, timestamp_ms,
body]``; the signature covers a domain tag plus those exact bytes, so checking
it never depends on re-encoding.

:class:`EnvelopeOpener` is pure (``now`` is an argument) and accepts a frame
only when, in this order (cheap checks first, the signature last but one):

1. it is within the size cap and strictly decodes (:mod:`colonymesh.node.wire`);
2. it is of this colony (:class:`ForeignColony`);
3. its kind is registered and its body is well-typed (:class:`UnknownKind`,
   :class:`BadField`);
4. its timestamp is within ``clock_skew_s`` of ``now`` (:class:`ClockSkew`);
5. the sender holds a valid, unexpired, unrevoked certificate of this colony
   (:class:`UnknownSender`, :class:`SenderNotAdmitted`);
6. the signature verifies (:class:`BadSignature`);
7. it is not a replay: a per-sender sliding window of ``replay_window``
   sequence numbers (:class:`ReplayedEnvelope`, :class:`ReorderedBeyondWindow`).

Replay state is bounded: at most ``senders_max`` senders are tracked (least
recently heard evicted). An evicted sender's old envelopes still cannot be
replayed for long, because the skew bound refuses any envelope older than
``clock_skew_s``.

Senders number envelopes from the microsecond wall time at which their sealer
starts, so a restarted peer continues above its old numbers without storing
them (it would have to send over a million envelopes a second on average to
catch up with its own clock).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from colonymesh.node import schema, wire
from colonymesh.node.certs import COLONY_ID_BYTES, Membership
from colonymesh.node.errors import (
    BadField,
    BadSignature,
    CertificateError,
    ClockSkew,
    ForeignColony,
    MalformedFrame,
    ReorderedBeyondWindow,
    ReplayedEnvelope,
    SenderNotAdmitted,
    UnknownKind,
    UnknownSender,
)
from colonymesh.node.identity import Signer, verify_signature

ENVELOPE_VERSION = 1
_SIGNATURE_DOMAIN = b"colonymesh/envelope/v1\x00"
KIND_BYTES_MAX = 64

M = TypeVar("M")

_REGISTRY: dict[str, type] = {}
_KIND_OF: dict[type, str] = {}


def message(kind: str) -> Callable[[type[M]], type[M]]:
    """Class decorator registering a frozen dataclass as the body of ``kind``.

    Put it *above* ``@dataclass``: ``slots=True`` makes a new class, and the
    registry must hold the class that instances really have.
    """

    def register(cls: type[M]) -> type[M]:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"@message({kind!r}) must sit above @dataclass")
        if len(kind) > KIND_BYTES_MAX:
            raise ValueError(f"message kind {kind!r} is too long")
        if kind in _REGISTRY and _REGISTRY[kind] is not cls:
            raise ValueError(f"message kind {kind!r} is registered twice")
        _REGISTRY[kind] = cls
        _KIND_OF[cls] = kind
        return cls

    return register


def registered_kinds() -> dict[str, type]:
    return dict(_REGISTRY)


def kind_of(body: object) -> str:
    try:
        return _KIND_OF[type(body)]
    except KeyError:
        raise TypeError(f"{type(body).__name__} is not a registered message kind") from None


@dataclass(frozen=True, slots=True)
class Envelope(Generic[M]):
    colony_id: bytes
    sender: bytes
    kind: str
    seq: int
    timestamp_ms: int
    body: M
    signature: bytes = field(repr=False)


def _signing_input(signed: bytes) -> bytes:
    return _SIGNATURE_DOMAIN + signed


class EnvelopeSealer:
    """Signs and numbers outgoing envelopes for one sender."""

    __slots__ = ("_next_seq", "_signer", "colony_id")

    def __init__(self, signer: Signer, colony_id: bytes, now: float) -> None:
        self._signer = signer
        self.colony_id = colony_id
        self._next_seq = int(now * 1_000_000)

    def seal(self, body: object, now: float) -> bytes:
        """The wire frame of ``body``, signed, with the next sequence number."""
        seq = self._next_seq
        self._next_seq += 1
        return seal_frame(self._signer, self.colony_id, body, seq=seq, timestamp_ms=int(now * 1000))


def seal_frame(
    signer: Signer, colony_id: bytes, body: object, *, seq: int, timestamp_ms: int
) -> bytes:
    """Encode and sign one envelope (exposed for tests that forge odd frames)."""
    signed = wire.encode(
        [colony_id, signer.public_key, kind_of(body), seq, timestamp_ms, schema.to_plain(body)]
    )
    return wire.encode([ENVELOPE_VERSION, signed, signer.sign(_signing_input(signed))])


@dataclass(frozen=True, slots=True)
class DecodedFrame:
    """A frame decoded and typed, its signature not yet checked."""

    envelope: Envelope[Any]
    signed: bytes


def decode_frame(frame: bytes, frame_bytes_max: int, colony_id: bytes) -> DecodedFrame:
    """Steps 1-3 of the module docs: size, strict decoding, colony, kind and body types."""
    outer = wire.decode(frame, frame_bytes_max=frame_bytes_max)
    if not (isinstance(outer, list) and len(outer) == 3 and outer[0] == ENVELOPE_VERSION):
        raise MalformedFrame("not a version-1 envelope [1, signed, signature]")
    _, signed, signature = outer
    if not isinstance(signed, bytes) or not isinstance(signature, bytes):
        raise MalformedFrame("envelope parts must be byte strings")
    inner = wire.decode(signed, frame_bytes_max=frame_bytes_max)
    if not (isinstance(inner, list) and len(inner) == 6):
        raise MalformedFrame("envelope body is not a 6-item array")
    frame_colony, sender, kind, seq, timestamp_ms, plain_body = inner
    if not isinstance(frame_colony, bytes) or len(frame_colony) != COLONY_ID_BYTES:
        raise BadField("envelope.colony_id: expected 32 bytes")
    if frame_colony != colony_id:
        raise ForeignColony(f"envelope of colony {frame_colony.hex()[:16]}…, not ours")
    if not isinstance(sender, bytes) or len(sender) != 32:
        raise BadField("envelope.sender: expected a 32-byte public key")
    if not isinstance(kind, str):
        raise BadField("envelope.kind: expected text")
    for name, value in (("seq", seq), ("timestamp_ms", timestamp_ms)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
            raise BadField(f"envelope.{name}: expected a non-negative 63-bit integer")
    body_type = _REGISTRY.get(kind)
    if body_type is None:
        raise UnknownKind(f"unknown message kind {kind[:KIND_BYTES_MAX]!r}")
    body: Any = schema.from_plain(body_type, plain_body, f"{kind}.body")
    envelope = Envelope(frame_colony, sender, kind, seq, timestamp_ms, body, signature)
    return DecodedFrame(envelope, signed)


def check_signature(parts: DecodedFrame) -> None:
    """Step 6: the sender's Ed25519 signature over the exact signed bytes."""
    envelope = parts.envelope
    if not verify_signature(envelope.sender, _signing_input(parts.signed), envelope.signature):
        raise BadSignature(f"signature of a {envelope.kind!r} envelope does not verify")


class ReplayWindow:
    """Sliding window over sequence numbers (as IPsec's anti-replay bitmap).

    ``check`` raises if ``seq`` was seen or is older than the window; ``record``
    marks it seen. Pure and deterministic: the ledger uses it too.
    """

    __slots__ = ("bitmap", "highest")

    def __init__(self, seq: int) -> None:
        self.highest = seq
        self.bitmap = 1  # bit i set: highest - i was seen

    def check(self, seq: int, size: int) -> None:
        if seq > self.highest:
            return
        offset = self.highest - seq
        if offset >= size:
            raise ReorderedBeyondWindow(
                f"sequence {seq} is {offset} behind the newest ({self.highest}); window is {size}"
            )
        if self.bitmap >> offset & 1:
            raise ReplayedEnvelope(f"sequence {seq} was already accepted")

    def record(self, seq: int, size: int) -> None:
        if seq > self.highest:
            shift = seq - self.highest
            self.bitmap = ((self.bitmap << shift) | 1) & ((1 << size) - 1) if shift < size else 1
            self.highest = seq
        else:
            self.bitmap |= 1 << (self.highest - seq)


@dataclass(frozen=True, slots=True)
class OpenerConfig:
    frame_bytes_max: int = wire.FRAME_BYTES_MAX_DEFAULT
    clock_skew_s: float = 30.0
    replay_window: int = 1024
    senders_max: int = 65536


class EnvelopeOpener:
    """Verifies incoming frames for one colony; see the module docs for the rules."""

    __slots__ = ("_config", "_membership", "_windows", "refused")

    def __init__(self, membership: Membership, config: OpenerConfig | None = None) -> None:
        self._membership = membership
        self._config = config or OpenerConfig()
        self._windows: OrderedDict[bytes, ReplayWindow] = OrderedDict()
        self.refused: dict[str, int] = {}

    def open(self, frame: bytes, now: float) -> Envelope[Any]:
        try:
            envelope = self._open(frame, now)
        except Exception as error:
            name = type(error).__name__
            self.refused[name] = self.refused.get(name, 0) + 1
            raise
        return envelope

    def _open(self, frame: bytes, now: float) -> Envelope[Any]:
        config = self._config
        parts = decode_frame(frame, config.frame_bytes_max, self._membership.colony.colony_id)
        if abs(parts.envelope.timestamp_ms / 1000 - now) > config.clock_skew_s:
            raise ClockSkew(
                f"timestamp is {parts.envelope.timestamp_ms / 1000 - now:+.1f} s from our clock "
                f"(allowed ±{config.clock_skew_s:g} s)"
            )
        self._check_sender(parts.envelope.sender, now)
        check_signature(parts)
        self._accept_seq(parts.envelope.sender, parts.envelope.seq)
        return parts.envelope

    def _check_sender(self, sender: bytes, now: float) -> None:
        if self._membership.certificate_of(sender, now) is not None:
            return
        known = self._membership.known_certificate(sender)
        if known is None:
            raise UnknownSender("sender holds no certificate of this colony")
        try:
            self._membership.check(known, now)
        except CertificateError as error:
            raise SenderNotAdmitted(f"sender not admitted: {error}") from None
        raise SenderNotAdmitted("sender not admitted")

    def _accept_seq(self, sender: bytes, seq: int) -> None:
        size = self._config.replay_window
        window = self._windows.get(sender)
        if window is None:
            window = ReplayWindow(seq)
            if len(self._windows) >= self._config.senders_max:
                self._windows.popitem(last=False)
        else:
            window.check(seq, size)
            window.record(seq, size)
        self._windows[sender] = window
        self._windows.move_to_end(sender)

    def statistics(self) -> dict[str, Any]:
        return {"senders_tracked": len(self._windows), "refused": dict(self.refused)}
