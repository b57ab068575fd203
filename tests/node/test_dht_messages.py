"""Strict validation of DHT messages: garbage from the network yields a typed error
(or a PeerMisbehaved event from the node), never another exception."""

from __future__ import annotations

import contextlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from colonymesh.node.dht.effects import PeerMisbehaved
from colonymesh.node.dht.messages import (
    AddProvider,
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
    value_signing_bytes,
)
from colonymesh.node.dht.node import DhtNode

LIMITS = WireLimits()
junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.binary(max_size=80),
    st.text(max_size=300),
    st.floats(allow_nan=True),
)
peers = st.builds(
    PeerInfo,
    st.one_of(st.binary(min_size=32, max_size=32), junk),
    st.one_of(
        st.tuples(), st.lists(st.one_of(st.text(max_size=300), junk), max_size=10).map(tuple), junk
    ),
)
records = st.builds(ValueRecord, junk, junk, junk, junk, junk)
peer_lists = st.one_of(st.lists(peers, max_size=70).map(tuple), junk)
messages = st.one_of(
    st.builds(Ping, junk),
    st.builds(Pong, junk),
    st.builds(FindNode, junk, junk),
    st.builds(GetValue, junk, junk),
    st.builds(PutValue, junk, st.one_of(records, junk)),
    st.builds(AddProvider, junk, junk, st.one_of(peers, junk)),
    st.builds(GetProviders, junk, junk),
    st.builds(FindNodeResult, junk, peer_lists),
    st.builds(GetValueResult, junk, st.one_of(records, st.none(), junk), peer_lists),
    st.builds(PutValueResult, junk, junk, junk),
    st.builds(GetProvidersResult, junk, peer_lists, peer_lists),
    junk,
)


@settings(max_examples=400, deadline=None)
@given(messages)
def test_validation_raises_only_the_typed_error(msg: object) -> None:
    with contextlib.suppress(DhtProtocolError):
        validate_message(msg, LIMITS)


@settings(max_examples=300, deadline=None)
@given(messages, peers)
def test_node_survives_any_message(msg: object, sender: PeerInfo) -> None:
    node = DhtNode(
        PeerInfo(bytes(32)),
        verify=lambda *a: False,
        is_member=lambda pk: True,
        rng=random.Random(0),
    )
    out = node.handle_message(sender, msg, 0.0)  # type: ignore[arg-type]
    try:
        validate_message(msg, LIMITS)
        valid = isinstance(sender.public_key, bytes) and len(sender.public_key) == 32
    except DhtProtocolError:
        valid = False
    if not valid:
        assert len(out) == 1 and isinstance(out[0], PeerMisbehaved)
    node.tick(100.0)


def test_well_formed_messages_pass() -> None:
    p = PeerInfo(bytes(32), ("/ip4/127.0.0.1/tcp/4001",))
    rec = ValueRecord(b"k", b"v", bytes(32), 3, bytes(64))
    good: list[Message] = [
        Ping(0),
        FindNode(2**64 - 1, bytes(32)),
        PutValue(1, rec),
        GetValueResult(1, rec, (p,) * 64),
        GetProvidersResult(1, (p,), ()),
        AddProvider(5, b"key", p),
    ]
    for msg in good:
        validate_message(msg, LIMITS)


@pytest.mark.parametrize(
    "msg",
    [
        Ping(-1),
        Ping(2**64),
        Ping(True),  # type: ignore[arg-type]
        FindNode(1, bytes(31)),
        GetValue(1, b""),
        GetValue(1, b"x" * 257),
        FindNodeResult(1, (PeerInfo(bytes(32)),) * 65),
        FindNodeResult(1, (PeerInfo(bytes(32), ("a",) * 9),)),
        PutValue(1, ValueRecord(b"k", b"v", bytes(32), -1, b"")),
        PutValue(1, ValueRecord(b"k", b"v", bytes(31), 1, b"")),
        PutValue(1, ValueRecord(b"k", b"v" * 70000, bytes(32), 1, b"")),
    ],
)
def test_malformed_messages_are_refused(msg: Message) -> None:
    with pytest.raises(DhtProtocolError):
        validate_message(msg, LIMITS)


def test_signing_bytes_are_unambiguous() -> None:
    assert value_signing_bytes(b"ab", b"c", 1) != value_signing_bytes(b"a", b"bc", 1)
    with pytest.raises(ValueError):
        value_signing_bytes(b"a", b"b", -1)
