"""The DHT and gossip wire codecs: every message round-trips; any bytes decode to a
message or a `WireError`, never another exception; caps hold."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from colonymesh.node import wire
from colonymesh.node.dht import codec as dht_codec
from colonymesh.node.dht.messages import (
    AddProvider,
    AddProviderResult,
    FindNode,
    FindNodeResult,
    GetProviders,
    GetProvidersResult,
    GetValue,
    GetValueResult,
    PeerInfo,
    Ping,
    Pong,
    PutValue,
    PutValueResult,
    ValueRecord,
    WireLimits,
)
from colonymesh.node.errors import MalformedFrame, WireError
from colonymesh.node.gossip import codec as gossip_codec
from colonymesh.node.gossip.messages import (
    GossipMessage,
    Graft,
    IHave,
    IWant,
    Prune,
    Publish,
    Receipt,
    Receipts,
    Subscriptions,
    Throttle,
)

rid = st.integers(0, (1 << 64) - 1)
key32 = st.binary(min_size=32, max_size=32)
addr = st.text(max_size=40)
peer = st.builds(PeerInfo, key32, st.lists(addr, max_size=3).map(tuple))
peers = st.lists(peer, max_size=5).map(tuple)
record = st.builds(
    ValueRecord,
    st.binary(min_size=1, max_size=40),
    st.binary(max_size=100),
    key32,
    rid,
    st.binary(min_size=64, max_size=64),
)
dht_messages = st.one_of(
    st.builds(Ping, rid),
    st.builds(Pong, rid),
    st.builds(FindNode, rid, key32),
    st.builds(FindNodeResult, rid, peers),
    st.builds(GetValue, rid, st.binary(min_size=1, max_size=40)),
    st.builds(GetValueResult, rid, st.none() | record, peers),
    st.builds(PutValue, rid, record),
    st.builds(PutValueResult, rid, st.booleans(), st.text(max_size=20)),
    st.builds(AddProvider, rid, st.binary(min_size=1, max_size=40), peer),
    st.builds(AddProviderResult, rid, st.booleans()),
    st.builds(GetProviders, rid, st.binary(min_size=1, max_size=40)),
    st.builds(GetProvidersResult, rid, peers, peers),
    st.builds(dht_codec.Hello, st.lists(addr, max_size=3).map(tuple)),
)
ids = st.lists(key32, max_size=4).map(tuple)
topic = st.text(min_size=1, max_size=20)
seconds = st.floats(0, 3600, allow_nan=False)
gossip_messages = st.one_of(
    st.builds(
        Publish,
        st.builds(
            GossipMessage,
            topic,
            st.binary(max_size=100),
            key32,
            rid,
            st.binary(min_size=64, max_size=64),
        ),
    ),
    st.builds(IHave, topic, ids),
    st.builds(IWant, ids),
    st.builds(Graft, topic),
    st.builds(Prune, topic, seconds),
    st.builds(
        Subscriptions,
        st.lists(topic, max_size=3).map(tuple),
        st.lists(topic, max_size=3).map(tuple),
    ),
    st.builds(Throttle, seconds, ids),
    st.builds(
        Receipts,
        st.lists(st.builds(Receipt, key32, st.integers(0, 1 << 32 - 1)), max_size=4).map(tuple),
    ),
)
certs = st.lists(st.binary(max_size=50), max_size=2).map(tuple)


@given(dht_messages, certs)
def test_dht_round_trip(msg: object, certificates: tuple[bytes, ...]) -> None:
    assert dht_codec.decode(dht_codec.encode(msg, certificates)) == (msg, certificates)  # type: ignore[arg-type]


@given(gossip_messages, certs)
def test_gossip_round_trip(msg: object, certificates: tuple[bytes, ...]) -> None:
    frame = gossip_codec.encode(msg, certificates)  # type: ignore[arg-type]
    assert gossip_codec.decode(frame) == (msg, certificates)


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_malformed(data: bytes) -> None:
    for decode in (dht_codec.decode, gossip_codec.decode):
        with contextlib.suppress(WireError):
            decode(data)


plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.binary(max_size=40)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=5),
    max_leaves=20,
)


@settings(max_examples=300)
@given(st.integers(-2, 14), plain, st.lists(plain, max_size=4))
def test_well_formed_cbor_of_the_wrong_shape_is_malformed(
    tag: int, certificates: object, fields: list[object]
) -> None:
    frame = wire.encode([tag, certificates, *fields])
    for decode in (dht_codec.decode, gossip_codec.decode):
        with contextlib.suppress(MalformedFrame):
            decode(frame)


def test_caps_are_enforced() -> None:
    limits = WireLimits(peers_per_message_max=2)
    many = tuple(PeerInfo(bytes([i]) * 32) for i in range(3))
    with pytest.raises(MalformedFrame, match="peers"):
        dht_codec.decode(dht_codec.encode(FindNodeResult(1, many)), limits)
    with pytest.raises(MalformedFrame, match="certificates"):
        dht_codec.decode(dht_codec.encode(Ping(1), (b"c",) * 5))
    with pytest.raises(MalformedFrame, match="target"):
        dht_codec.decode(dht_codec.encode(FindNode(1, b"short")))
    with pytest.raises(MalformedFrame, match="backoff_s"):
        gossip_codec.decode(gossip_codec.encode(Prune("t", 1e9)))
    with pytest.raises(MalformedFrame, match="topic"):
        gossip_codec.decode(gossip_codec.encode(Graft("")))
    with pytest.raises(WireError):
        dht_codec.decode(b"\xff" * (dht_codec.FRAME_BYTES_MAX + 1))
