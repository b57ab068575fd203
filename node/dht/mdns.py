"""LAN discovery with multicast DNS, as libp2p specifies it: a sans-I/O core and its codec.

For edge boxes on one network with no bootstrap address: every node asks
``_p2p._udp.local`` (a PTR question, multicast to 224.0.0.251:5353) and answers
that question with a PTR to its own random instance name plus a TXT record of
``dnsaddr=<multiaddr>/p2p/<peer id>`` strings (libp2p's discovery/mdns spec).
A discovered address is only a hint: the driver dials it and colony gating
decides, so a stranger on the LAN learns nothing and gets nowhere.

The codec is strict and bounded: a datagram is at most
:data:`DATAGRAM_BYTES_MAX`; names are followed through compression pointers
only backwards (so no loops) and at most 255 bytes long; any defect is
:class:`MdnsFormatError`, which the core counts and drops. Records other than
our PTR and TXT are skipped by their declared length.

:class:`MdnsCore` owns the schedule: a query at start, then every
``query_interval_s``; an answer to each query for our service (rate-limited to
one per ``answer_min_interval_s`` so a query storm costs one answer per
interval); :class:`PeerFound` for every other peer's dialable addresses. The
driver calls :meth:`MdnsCore.handle_datagram`, :meth:`MdnsCore.tick` no later
than :meth:`MdnsCore.next_deadline`, and sends every :class:`SendDatagram`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import random

SERVICE = "_p2p._udp.local"
DATAGRAM_BYTES_MAX = 9000  # RFC 6762 §17
NAME_BYTES_MAX = 255
TXT_STRING_BYTES_MAX = 255
ADDRS_PER_PEER_MAX = 16
TYPE_PTR = 12
TYPE_TXT = 16
CLASS_IN = 1
_CLASS_MASK = 0x7FFF  # the top bit is mDNS's unicast-response / cache-flush flag
_HEADER = struct.Struct("!HHHHHH")
_FIXED = struct.Struct("!HHIH")  # type, class, ttl, rdlength
_FLAG_RESPONSE = 0x8400  # QR + AA
_ANSWER_TTL_S = 120


class MdnsFormatError(ValueError):
    """A datagram that is not well-formed DNS, or breaks one of our bounds."""


@dataclass(frozen=True, slots=True)
class Record:
    name: str
    rtype: int
    ttl: int
    data: tuple[str, ...]  # PTR: (target,); TXT: its strings


@dataclass(frozen=True, slots=True)
class Message:
    is_response: bool
    questions: tuple[tuple[str, int], ...]  # (name, type)
    records: tuple[Record, ...]  # answers and additionals, PTR and TXT only


# --- codec ---------------------------------------------------------------------------


def _encode_name(name: str) -> bytes:
    out = bytearray()
    for label in name.split("."):
        raw = label.encode()
        if not 0 < len(raw) < 64:
            raise MdnsFormatError(f"bad DNS label {label!r}")
        out.append(len(raw))
        out += raw
    out.append(0)
    if len(out) > NAME_BYTES_MAX:
        raise MdnsFormatError("DNS name too long")
    return bytes(out)


def _record(name: str, rtype: int, ttl: int, rdata: bytes) -> bytes:
    return _encode_name(name) + _FIXED.pack(rtype, CLASS_IN, ttl, len(rdata)) + rdata


def encode_query() -> bytes:
    return _HEADER.pack(0, 0, 1, 0, 0, 0) + _encode_name(SERVICE) + struct.pack("!HH", TYPE_PTR, 1)


def encode_answer(instance: str, dnsaddrs: list[str]) -> bytes:
    """PTR service -> instance, and the instance's TXT ``dnsaddr=`` strings."""
    strings = b""
    for address in dnsaddrs[:ADDRS_PER_PEER_MAX]:
        text = f"dnsaddr={address}".encode()
        if len(text) > TXT_STRING_BYTES_MAX:
            continue
        strings += bytes([len(text)]) + text
    full = f"{instance}.{SERVICE}"
    header = _HEADER.pack(0, _FLAG_RESPONSE, 0, 1, 0, 1)
    body = _record(SERVICE, TYPE_PTR, _ANSWER_TTL_S, _encode_name(full))
    body += _record(full, TYPE_TXT, _ANSWER_TTL_S, strings or b"\x00")
    return header + body


def _read_name(data: bytes, offset: int) -> tuple[str, int]:
    """The name at ``offset`` and the offset after it (pointers followed backwards only)."""
    labels: list[str] = []
    total = 0
    end: int | None = None
    position = offset
    while True:
        if position >= len(data):
            raise MdnsFormatError("name runs past the datagram")
        length = data[position]
        if length & 0xC0 == 0xC0:
            if position + 1 >= len(data):
                raise MdnsFormatError("truncated name pointer")
            target = ((length & 0x3F) << 8) | data[position + 1]
            if target >= position:
                raise MdnsFormatError("name pointer does not point backwards")
            if end is None:
                end = position + 2
            position = target
            continue
        if length & 0xC0:
            raise MdnsFormatError("reserved label type")
        position += 1
        if length == 0:
            break
        if position + length > len(data):
            raise MdnsFormatError("label runs past the datagram")
        total += length + 1
        if total > NAME_BYTES_MAX:
            raise MdnsFormatError("name too long")
        try:
            labels.append(data[position : position + length].decode())
        except UnicodeDecodeError:
            raise MdnsFormatError("label is not UTF-8") from None
        position += length
    return ".".join(labels), (end if end is not None else position)


def _txt_strings(rdata: bytes) -> tuple[str, ...]:
    strings: list[str] = []
    position = 0
    while position < len(rdata):
        length = rdata[position]
        position += 1
        if position + length > len(rdata):
            raise MdnsFormatError("TXT string runs past its record")
        if length:
            strings.append(rdata[position : position + length].decode("utf-8", "replace"))
        position += length
    return tuple(strings)


def decode(data: bytes) -> Message:
    if len(data) > DATAGRAM_BYTES_MAX:
        raise MdnsFormatError(f"datagram of {len(data)} bytes")
    if len(data) < _HEADER.size:
        raise MdnsFormatError("shorter than a DNS header")
    _, flags, questions_n, answers_n, authority_n, additional_n = _HEADER.unpack_from(data)
    position = _HEADER.size
    questions: list[tuple[str, int]] = []
    for _ in range(questions_n):
        name, position = _read_name(data, position)
        if position + 4 > len(data):
            raise MdnsFormatError("truncated question")
        qtype, _qclass = struct.unpack_from("!HH", data, position)
        position += 4
        questions.append((name, qtype))
    records: list[Record] = []
    for _ in range(answers_n + authority_n + additional_n):
        name, position = _read_name(data, position)
        if position + _FIXED.size > len(data):
            raise MdnsFormatError("truncated record")
        rtype, rclass, ttl, rdlength = _FIXED.unpack_from(data, position)
        position += _FIXED.size
        if position + rdlength > len(data):
            raise MdnsFormatError("record data runs past the datagram")
        if rclass & _CLASS_MASK == CLASS_IN:
            if rtype == TYPE_PTR:
                target, _ = _read_name(data, position)
                records.append(Record(name, rtype, ttl, (target,)))
            elif rtype == TYPE_TXT:
                rdata = data[position : position + rdlength]
                records.append(Record(name, rtype, ttl, _txt_strings(rdata)))
        position += rdlength
    return Message(bool(flags & 0x8000), tuple(questions), tuple(records))


# --- the core --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendDatagram:
    data: bytes


@dataclass(frozen=True, slots=True)
class PeerFound:
    peer_id: str
    addrs: tuple[str, ...]  # "/ip4/H/tcp/P/p2p/ID"


Effect = SendDatagram | PeerFound


@dataclass(frozen=True, slots=True)
class MdnsConfig:
    query_interval_s: float = 10.0
    answer_min_interval_s: float = 1.0


class MdnsCore:
    """Query, answer, discover (see the module docs)."""

    def __init__(
        self,
        peer_id: str,
        addrs: list[str],
        rng: random.Random,
        now: float,
        config: MdnsConfig | None = None,
    ) -> None:
        self.peer_id = peer_id
        self.config = config or MdnsConfig()
        # libp2p: a random instance name, so the name itself says nothing about us.
        alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
        self.instance = "".join(rng.choice(alphabet) for _ in range(32))
        self._answer = encode_answer(self.instance, [f"{a}/p2p/{peer_id}" for a in addrs])
        self._next_query = now
        self._last_answer = float("-inf")
        self.malformed = 0
        self.found = 0

    def next_deadline(self) -> float:
        return self._next_query

    def tick(self, now: float) -> list[Effect]:
        if now < self._next_query:
            return []
        self._next_query = now + self.config.query_interval_s
        return [SendDatagram(encode_query())]

    def handle_datagram(self, data: bytes, now: float, source_ip: str = "") -> list[Effect]:
        """One datagram from the group; ``source_ip`` stands in for an unspecified
        address a peer advertises (a node listening on 0.0.0.0 names no address)."""
        try:
            message = decode(data)
        except MdnsFormatError:
            self.malformed += 1
            return []
        effects: list[Effect] = []
        asked = any(
            name.lower() == SERVICE and qtype in (TYPE_PTR, 255)  # 255: ANY
            for name, qtype in message.questions
        )
        due = now - self._last_answer >= self.config.answer_min_interval_s
        if asked and not message.is_response and due:
            self._last_answer = now
            effects.append(SendDatagram(self._answer))
        if message.is_response:
            effects.extend(self._found(message, source_ip))
        return effects

    def _found(self, message: Message, source_ip: str) -> list[Effect]:
        instances = {
            r.data[0].lower()
            for r in message.records
            if r.rtype == TYPE_PTR and r.name.lower() == SERVICE and r.data
        }
        by_peer: dict[str, list[str]] = {}
        for record in message.records:
            if record.rtype != TYPE_TXT or record.name.lower() not in instances:
                continue
            for text in record.data:
                if not text.startswith("dnsaddr="):
                    continue
                address = text.removeprefix("dnsaddr=")
                if address.startswith("/ip4/0.0.0.0/"):
                    if not source_ip:
                        continue
                    address = f"/ip4/{source_ip}/" + address.removeprefix("/ip4/0.0.0.0/")
                _, marker, peer_id = address.rpartition("/p2p/")
                if not marker or not peer_id or peer_id == self.peer_id:
                    continue
                known = by_peer.setdefault(peer_id, [])
                if address not in known and len(known) < ADDRS_PER_PEER_MAX:
                    known.append(address)
        self.found += len(by_peer)
        return [PeerFound(peer_id, tuple(addrs)) for peer_id, addrs in sorted(by_peer.items())]
