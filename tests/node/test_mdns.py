"""LAN discovery core: the libp2p mDNS exchange, the schedule, and a strict decoder."""

from __future__ import annotations

import random
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from colonymesh.node.dht.mdns import (
    SERVICE,
    TYPE_PTR,
    MdnsConfig,
    MdnsCore,
    MdnsFormatError,
    PeerFound,
    SendDatagram,
    decode,
    encode_answer,
    encode_query,
)

A, B = "12D3KooWA", "12D3KooWB"


def _core(peer_id: str, addrs: list[str], seed: int = 1) -> MdnsCore:
    return MdnsCore(peer_id, addrs, random.Random(seed), 0.0, MdnsConfig(query_interval_s=10.0))


def test_a_query_is_answered_and_the_answer_names_the_peer_and_its_addresses() -> None:
    a = _core(A, ["/ip4/10.0.0.5/tcp/4001"], seed=1)
    b = _core(B, ["/ip4/10.0.0.6/tcp/4001"], seed=2)
    (query,) = b.tick(0.0)
    assert isinstance(query, SendDatagram)
    assert decode(query.data).questions == ((SERVICE, TYPE_PTR),)
    (answer,) = a.handle_datagram(query.data, 0.1, "10.0.0.6")
    assert isinstance(answer, SendDatagram)
    found = b.handle_datagram(answer.data, 0.2, "10.0.0.5")
    assert found == [PeerFound(A, ("/ip4/10.0.0.5/tcp/4001/p2p/12D3KooWA",))]
    assert b.found == 1
    # a peer hears its own answer on the group: not a discovery
    assert a.handle_datagram(answer.data, 0.3, "10.0.0.5") == []


def test_queries_repeat_on_schedule_and_answers_are_rate_limited() -> None:
    a = _core(A, ["/ip4/10.0.0.5/tcp/4001"])
    assert len(a.tick(0.0)) == 1 and a.tick(5.0) == [] and a.next_deadline() == 10.0
    assert len(a.tick(10.0)) == 1
    query = encode_query()
    assert len(a.handle_datagram(query, 20.0)) == 1
    assert a.handle_datagram(query, 20.5) == []  # a query storm costs one answer a second
    assert len(a.handle_datagram(query, 21.0)) == 1


def test_an_unspecified_address_becomes_the_senders_and_is_dropped_without_one() -> None:
    b = _core(B, [])
    answer = encode_answer("x" * 32, ["/ip4/0.0.0.0/tcp/4001/p2p/12D3KooWA"])
    assert b.handle_datagram(answer, 0.0, "192.168.1.7") == [
        PeerFound(A, ("/ip4/192.168.1.7/tcp/4001/p2p/12D3KooWA",))
    ]
    assert b.handle_datagram(answer, 1.0, "") == []


def test_txt_records_of_other_instances_and_other_strings_are_ignored() -> None:
    b = _core(B, [])
    answer = encode_answer("aaaa", ["/ip4/10.0.0.5/tcp/1/p2p/12D3KooWA", "/ip4/10.0.0.5/tcp/2"])
    assert b.handle_datagram(answer, 0.0) == [PeerFound(A, ("/ip4/10.0.0.5/tcp/1/p2p/12D3KooWA",))]
    # the PTR names instance aaaa, the TXT record belongs to bbbb: not ours to trust
    at = answer.rfind(b"aaaa")
    mismatched = answer[:at] + b"bbbb" + answer[at + 4 :]
    assert decode(mismatched).records[1].name.startswith("bbbb")
    assert b.handle_datagram(mismatched, 1.0) == []


def test_malformed_datagrams_are_counted_and_change_nothing() -> None:
    b = _core(B, [])
    header = struct.pack("!HHHHHH", 0, 0, 1, 0, 0, 0)
    loop = header + b"\xc0\x0c" + struct.pack("!HH", TYPE_PTR, 1)  # points at itself
    for junk in (b"", b"\x00" * 5, loop, header + b"\x05ab", b"\x00" * 9001):
        assert b.handle_datagram(junk, 0.0) == []
    assert b.malformed == 5


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_the_decoder_never_raises_anything_but_its_format_error(data: bytes) -> None:
    try:
        message = decode(data)
    except MdnsFormatError:
        return
    names = [name for name, _ in message.questions] + [r.name for r in message.records]
    assert all(len(name.encode()) <= 255 for name in names)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.from_regex(r"/ip4/(\d{1,3}\.){3}\d{1,3}/tcp/\d{1,5}", fullmatch=True),
        min_size=1,
        max_size=5,
        unique=True,
    ),
    st.integers(0, 2**32),
)
def test_every_advertised_address_is_found(addrs: list[str], seed: int) -> None:
    a = _core(A, addrs, seed)
    b = _core(B, [], seed + 1)
    (answer,) = a.handle_datagram(encode_query(), 0.0)
    assert isinstance(answer, SendDatagram)
    (found,) = b.handle_datagram(answer.data, 0.0, "10.9.9.9")
    assert isinstance(found, PeerFound)
    expected = [x.replace("/ip4/0.0.0.0/", "/ip4/10.9.9.9/") + f"/p2p/{A}" for x in addrs]
    assert found.addrs == tuple(dict.fromkeys(expected))
