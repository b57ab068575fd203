"""Multiaddrs: the few protocols a TCP transport meets, text and binary, strict.

Owns converting addresses such as ``/ip4/127.0.0.1/tcp/4001/p2p/12D3Koo...``
between text and the binary form identify carries. Unknown protocol codes
are refused with :class:`MalformedMessage` (callers that only display
remote addresses may keep the raw bytes). Pure; no I/O.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from colonymesh.node.identity import base58_decode, base58_encode
from colonymesh.node.transport.errors import MalformedMessage
from colonymesh.node.transport.varint import decode_uvarint, encode_uvarint

_ADDRESS_BYTES_MAX = 1024


@dataclass(frozen=True, slots=True)
class _Proto:
    name: str
    code: int
    size: int  # fixed byte size, 0 for none, -1 for varint-length-prefixed


_PROTOCOLS = (
    _Proto("ip4", 4, 4),
    _Proto("tcp", 6, 2),
    _Proto("udp", 273, 2),
    _Proto("ip6", 41, 16),
    _Proto("dns", 53, -1),
    _Proto("dns4", 54, -1),
    _Proto("dns6", 55, -1),
    _Proto("p2p", 421, -1),
    _Proto("p2p-circuit", 290, 0),
    _Proto("quic", 460, 0),
    _Proto("quic-v1", 461, 0),
    _Proto("webtransport", 465, 0),
    _Proto("certhash", 466, -1),
    _Proto("tls", 448, 0),
    _Proto("ws", 477, 0),
    _Proto("wss", 478, 0),
    _Proto("webrtc-direct", 280, 0),
    _Proto("webrtc", 281, 0),
)
_BY_NAME = {p.name: p for p in _PROTOCOLS}
_BY_CODE = {p.code: p for p in _PROTOCOLS}


def _value_to_bytes(proto: _Proto, value: str) -> bytes:
    try:
        match proto.name:
            case "ip4":
                return ipaddress.IPv4Address(value).packed
            case "ip6":
                return ipaddress.IPv6Address(value).packed
            case "tcp" | "udp":
                port = int(value)
                if not 0 <= port <= 0xFFFF:
                    raise ValueError(port)
                return port.to_bytes(2, "big")
            case "p2p":
                return base58_decode(value)
            case "certhash":
                return value.encode()
            case _:
                return value.encode("idna" if proto.name.startswith("dns") else "utf-8")
    except (ValueError, UnicodeError) as error:
        raise MalformedMessage(f"bad /{proto.name} value {value!r}") from error


def _value_to_text(proto: _Proto, raw: bytes) -> str:
    match proto.name:
        case "ip4":
            return str(ipaddress.IPv4Address(raw))
        case "ip6":
            return str(ipaddress.IPv6Address(raw))
        case "tcp" | "udp":
            return str(int.from_bytes(raw, "big"))
        case "p2p":
            return base58_encode(raw)
        case _:
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                raise MalformedMessage(f"/{proto.name} value is not text") from None


def to_bytes(text: str) -> bytes:
    """The binary form of a text multiaddr."""
    parts = text.split("/")
    if parts[0] != "" or len(parts) < 2:
        raise MalformedMessage(f"multiaddr {text!r} must start with '/'")
    out = bytearray()
    index = 1
    while index < len(parts):
        proto = _BY_NAME.get(parts[index])
        if proto is None:
            raise MalformedMessage(f"unknown multiaddr protocol {parts[index]!r}")
        out += encode_uvarint(proto.code)
        index += 1
        if proto.size == 0:
            continue
        if index >= len(parts):
            raise MalformedMessage(f"/{proto.name} needs a value")
        raw = _value_to_bytes(proto, parts[index])
        index += 1
        if proto.size > 0:
            out += raw
        else:
            out += encode_uvarint(len(raw)) + raw
    return bytes(out)


def to_text(raw: bytes) -> str:
    """The text form of a binary multiaddr."""
    if len(raw) > _ADDRESS_BYTES_MAX:
        raise MalformedMessage("multiaddr too long")
    parts: list[str] = []
    position = 0
    while position < len(raw):
        decoded = decode_uvarint(raw, position)
        if decoded is None:
            raise MalformedMessage("multiaddr code truncated")
        code, position = decoded
        proto = _BY_CODE.get(code)
        if proto is None:
            raise MalformedMessage(f"unknown multiaddr protocol code {code}")
        parts.append(proto.name)
        if proto.size == 0:
            continue
        size = proto.size
        if size < 0:
            length = decode_uvarint(raw, position, _ADDRESS_BYTES_MAX)
            if length is None:
                raise MalformedMessage("multiaddr value length truncated")
            size, position = length
        if position + size > len(raw):
            raise MalformedMessage(f"multiaddr /{proto.name} value truncated")
        parts.append(_value_to_text(proto, raw[position : position + size]))
        position += size
    return "/" + "/".join(parts)


def tcp_address(host: str, port: int) -> str:
    """``/ip4/HOST/tcp/PORT`` (or ``/ip6/...``) for a literal IP address."""
    version = ipaddress.ip_address(host).version
    return f"/ip{version}/{host}/tcp/{port}"


def parse_tcp_address(text: str) -> tuple[str, int, str | None]:
    """``(host, port, peer_id or None)`` of ``/ip4|ip6|dns*/H/tcp/P[/p2p/ID]``."""
    to_bytes(text)  # validates every part
    parts = text.split("/")
    if len(parts) < 5 or parts[1] not in ("ip4", "ip6", "dns", "dns4", "dns6") or parts[3] != "tcp":
        raise MalformedMessage(f"not a TCP multiaddr: {text!r}")
    peer: str | None = None
    if len(parts) == 7 and parts[5] == "p2p":
        peer = parts[6]
    elif len(parts) != 5:
        raise MalformedMessage(f"unsupported TCP multiaddr: {text!r}")
    return parts[2], int(parts[4]), peer
