"""libp2p identify (``/ipfs/id/1.0.0``): who a peer says it is and what it speaks.

Owns encoding and strictly decoding the ``Identify`` protobuf (public key,
listen addresses, protocols, observed address, protocol and agent versions).
The responder writes one varint-length-prefixed message and closes its side;
the requester reads until EOF (at most ``MESSAGE_BYTES_MAX``) and decodes.

Invariants: the message is size-capped; every field has the right wire
type; a public key present in the message must be the Ed25519 key the
Noise handshake proved (checked by :func:`decode_identify` when given it).
Pure; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from colonymesh.node.identity import libp2p_public_key_bytes
from colonymesh.node.transport import multiaddr, protobuf
from colonymesh.node.transport.errors import FrameTooLarge, MalformedMessage, RemoteProtocolError
from colonymesh.node.transport.noise import decode_public_key
from colonymesh.node.transport.varint import decode_uvarint, encode_uvarint

PROTOCOL_ID = "/ipfs/id/1.0.0"
PUSH_PROTOCOL_ID = "/ipfs/id/push/1.0.0"
PROTOCOL_VERSION = "ipfs/0.1.0"
MESSAGE_BYTES_MAX = 64 * 1024


@dataclass(frozen=True, slots=True)
class IdentifyInfo:
    public_key: bytes | None  # Ed25519, 32 bytes, when sent
    listen_addrs: tuple[str, ...]  # text form; addresses we cannot parse are dropped
    protocols: tuple[str, ...]
    observed_addr: str | None
    protocol_version: str
    agent_version: str


def encode_identify(info: IdentifyInfo) -> bytes:
    """The varint-length-prefixed ``Identify`` message."""
    fields: list[tuple[int, int | bytes | str]] = [
        (5, info.protocol_version),
        (6, info.agent_version),
    ]
    if info.public_key is not None:
        fields.append((1, libp2p_public_key_bytes(info.public_key)))
    fields.extend((2, multiaddr.to_bytes(address)) for address in info.listen_addrs)
    if info.observed_addr is not None:
        fields.append((4, multiaddr.to_bytes(info.observed_addr)))
    fields.extend((3, protocol) for protocol in info.protocols)
    body = protobuf.encode_message(fields)
    if len(body) > MESSAGE_BYTES_MAX:
        raise ValueError("identify message exceeds its cap")
    return encode_uvarint(len(body)) + body


def _address_or_none(raw: bytes) -> str | None:
    try:
        return multiaddr.to_text(raw)
    except MalformedMessage:
        return None


def decode_identify(data: bytes, *, expected_public_key: bytes | None = None) -> IdentifyInfo:
    """Decode everything a responder sent (prefix and message); typed errors."""
    if len(data) > MESSAGE_BYTES_MAX + 4:
        raise FrameTooLarge("identify message exceeds its cap")
    decoded = decode_uvarint(data, 0, MESSAGE_BYTES_MAX)
    if decoded is None:
        raise MalformedMessage("identify length prefix truncated")
    length, start = decoded
    if len(data) != start + length:
        raise MalformedMessage("identify length prefix does not match the message")
    fields = protobuf.decode_message(data[start:], fields_max=512)
    raw_key = protobuf.single_bytes(fields, 1)
    public_key = decode_public_key(raw_key) if raw_key is not None else None
    if expected_public_key is not None and public_key not in (None, expected_public_key):
        raise RemoteProtocolError("identify names a key other than the handshake proved")
    addresses = [_address_or_none(raw) for raw in protobuf.repeated_bytes(fields, 2)]
    observed_raw = protobuf.single_bytes(fields, 4)
    protocols = tuple(
        protobuf.as_text(raw, "identify protocol") for raw in protobuf.repeated_bytes(fields, 3)
    )
    return IdentifyInfo(
        public_key=public_key,
        listen_addrs=tuple(a for a in addresses if a is not None),
        protocols=protocols,
        observed_addr=_address_or_none(observed_raw) if observed_raw is not None else None,
        protocol_version=protobuf.as_text(
            protobuf.single_bytes(fields, 5) or b"", "protocol version"
        ),
        agent_version=protobuf.as_text(protobuf.single_bytes(fields, 6) or b"", "agent version"),
    )
