"""The DHT's message union, signed value records, and strict validation of both.

Every request carries a `request_id` that its response echoes; a response is only
accepted from the peer the request went to. Messages are frozen dataclasses; the
wire codec (owned elsewhere) turns them into bytes and back, and
`validate_message` must run on everything that came from the network before the
node looks at it: it checks sizes and shapes and raises `DhtProtocolError`, never
anything else. Signature and membership checks are separate (`records.py`) because
they need the injected verifier.

A value record is signed by its publisher over `value_signing_bytes(key, value,
seq)`: a domain-separated, length-prefixed encoding, so no (key, value) split can
be re-read as another.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from colonymesh.node.dht.ids import ID_BYTES, PUBLIC_KEY_BYTES

SIGNATURE_BYTES = 64
_U64_MAX = (1 << 64) - 1
_VALUE_DOMAIN = b"colonymesh/dht/value/v1\x00"


class DhtProtocolError(Exception):
    """A peer sent a message that breaks the protocol's shape or size limits."""


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """How to reach a peer: its Ed25519 public key and the addresses it listens on."""

    public_key: bytes
    addrs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ValueRecord:
    key: bytes
    value: bytes
    publisher: bytes  # Ed25519 public key of the member that signed it
    seq: int  # newer sequence wins
    signature: bytes  # over value_signing_bytes(key, value, seq); b"" = unsigned


def value_signing_bytes(key: bytes, value: bytes, seq: int) -> bytes:
    """The exact bytes a publisher signs for a value record."""
    if not 0 <= seq <= _U64_MAX:
        raise ValueError(f"seq out of range: {seq}")
    return b"".join(
        (
            _VALUE_DOMAIN,
            struct.pack(">I", len(key)),
            key,
            struct.pack(">Q", seq),
            struct.pack(">I", len(value)),
            value,
        )
    )


@dataclass(frozen=True, slots=True)
class WireLimits:
    """Caps on what a single message may carry (checked before any state is touched)."""

    peers_per_message_max: int = 64
    addrs_per_peer_max: int = 8
    addr_chars_max: int = 256
    key_bytes_max: int = 256
    value_bytes_max: int = 64 * 1024
    reason_chars_max: int = 128


# --- requests -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ping:
    request_id: int


@dataclass(frozen=True, slots=True)
class FindNode:
    request_id: int
    target: bytes  # a 32-byte id


@dataclass(frozen=True, slots=True)
class GetValue:
    request_id: int
    key: bytes


@dataclass(frozen=True, slots=True)
class PutValue:
    request_id: int
    record: ValueRecord


@dataclass(frozen=True, slots=True)
class AddProvider:
    request_id: int
    key: bytes
    provider: PeerInfo  # must be the sender itself


@dataclass(frozen=True, slots=True)
class GetProviders:
    request_id: int
    key: bytes


# --- responses ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pong:
    request_id: int


@dataclass(frozen=True, slots=True)
class FindNodeResult:
    request_id: int
    closer: tuple[PeerInfo, ...]


@dataclass(frozen=True, slots=True)
class GetValueResult:
    request_id: int
    record: ValueRecord | None
    closer: tuple[PeerInfo, ...]


@dataclass(frozen=True, slots=True)
class PutValueResult:
    request_id: int
    stored: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class AddProviderResult:
    request_id: int
    stored: bool


@dataclass(frozen=True, slots=True)
class GetProvidersResult:
    request_id: int
    providers: tuple[PeerInfo, ...]
    closer: tuple[PeerInfo, ...]


Request = Ping | FindNode | GetValue | PutValue | AddProvider | GetProviders
Response = (
    Pong
    | FindNodeResult
    | GetValueResult
    | PutValueResult
    | AddProviderResult
    | (GetProvidersResult)
)
Message = Request | Response

REQUEST_TYPES = (Ping, FindNode, GetValue, PutValue, AddProvider, GetProviders)
RESPONSE_TYPES = (
    Pong,
    FindNodeResult,
    GetValueResult,
    PutValueResult,
    AddProviderResult,
    GetProvidersResult,
)


# --- validation -----------------------------------------------------------------


def _check(cond: bool, what: str) -> None:
    if not cond:
        raise DhtProtocolError(what)


def _check_bytes(value: object, what: str, lo: int, hi: int) -> None:
    if not isinstance(value, bytes):
        raise DhtProtocolError(f"{what}: not bytes")
    _check(lo <= len(value) <= hi, f"{what}: length {len(value)} outside [{lo}, {hi}]")


def validate_peer(peer: object, limits: WireLimits) -> None:
    # the hot path of every FIND_NODE answer: plain checks, no helper calls
    if type(peer) is not PeerInfo:
        raise DhtProtocolError("peer: not a PeerInfo")
    key, addrs = peer.public_key, peer.addrs
    if type(key) is not bytes or len(key) != PUBLIC_KEY_BYTES:
        raise DhtProtocolError("peer key: not 32 bytes")
    if type(addrs) is not tuple or len(addrs) > limits.addrs_per_peer_max:
        raise DhtProtocolError("peer addrs: not a short tuple")
    for addr in addrs:
        if type(addr) is not str or len(addr) > limits.addr_chars_max:
            raise DhtProtocolError("peer addr: bad")


def _validate_peers(peers: object, limits: WireLimits) -> None:
    if not isinstance(peers, tuple):
        raise DhtProtocolError("peer list: not a tuple")
    _check(len(peers) <= limits.peers_per_message_max, "peer list: too long")
    for peer in peers:
        validate_peer(peer, limits)


def validate_record(record: object, limits: WireLimits) -> None:
    """Shape and size of a value record; signature and membership are checked elsewhere."""
    if not isinstance(record, ValueRecord):
        raise DhtProtocolError("record: not a ValueRecord")
    _check_bytes(record.key, "record key", 1, limits.key_bytes_max)
    _check_bytes(record.value, "record value", 0, limits.value_bytes_max)
    _check_bytes(record.publisher, "record publisher", PUBLIC_KEY_BYTES, PUBLIC_KEY_BYTES)
    _check_bytes(record.signature, "record signature", 0, SIGNATURE_BYTES)
    _check(
        isinstance(record.seq, int)
        and not isinstance(record.seq, bool)
        and 0 <= record.seq <= _U64_MAX,
        "record seq: out of range",
    )


def validate_message(msg: object, limits: WireLimits) -> None:
    """Raise `DhtProtocolError` unless `msg` is a well-formed DHT message within `limits`."""
    _check(isinstance(msg, REQUEST_TYPES + RESPONSE_TYPES), "not a DHT message")
    rid = getattr(msg, "request_id", None)
    _check(
        isinstance(rid, int) and not isinstance(rid, bool) and 0 <= rid <= _U64_MAX,
        "request_id: out of range",
    )
    match msg:
        case Ping() | Pong() | AddProviderResult():
            pass
        case FindNode(target=target):
            _check_bytes(target, "target", ID_BYTES, ID_BYTES)
        case GetValue(key=key) | GetProviders(key=key):
            _check_bytes(key, "key", 1, limits.key_bytes_max)
        case PutValue(record=record):
            validate_record(record, limits)
        case AddProvider(key=key, provider=provider):
            _check_bytes(key, "key", 1, limits.key_bytes_max)
            validate_peer(provider, limits)
        case FindNodeResult(closer=closer):
            _validate_peers(closer, limits)
        case GetValueResult(record=record, closer=closer):
            if record is not None:
                validate_record(record, limits)
            _validate_peers(closer, limits)
        case PutValueResult(stored=stored, reason=reason):
            _check(isinstance(stored, bool), "stored: not a bool")
            _check(
                isinstance(reason, str) and len(reason) <= limits.reason_chars_max, "reason: bad"
            )
        case GetProvidersResult(providers=providers, closer=closer):
            _validate_peers(providers, limits)
            _validate_peers(closer, limits)
        case _:
            raise DhtProtocolError("not a DHT message")
