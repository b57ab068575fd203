"""Property tests: every message kind round-trips; hostile frames yield only defined errors."""

from __future__ import annotations

import contextlib
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import colonymesh.node.messages
from colonymesh.node import schema, wire
from colonymesh.node.envelope import EnvelopeOpener, EnvelopeSealer, OpenerConfig, registered_kinds
from colonymesh.node.errors import WireError
from support.colony import NOW, make_colony
from support.strategies import for_record

LAB = make_colony()
KINDS = sorted(registered_kinds().items())
CBOR_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.binary(max_size=40)
    | st.text(max_size=20)
    | st.floats(allow_nan=False),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=5), children, max_size=5)
    ),
    max_leaves=20,
)


def fresh_opener() -> EnvelopeOpener:
    return EnvelopeOpener(LAB.membership, OpenerConfig(frame_bytes_max=64 * 1024))


@pytest.mark.parametrize(("kind", "cls"), KINDS, ids=[kind for kind, _ in KINDS])
@settings(max_examples=50, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_kind_round_trips(kind: str, cls: type, data: st.DataObject) -> None:
    body = data.draw(for_record(cls))
    assert schema.from_plain(cls, wire.decode(wire.encode(schema.to_plain(body)))) == body
    sealer = EnvelopeSealer(LAB.members[0].signer, LAB.colony.colony_id, NOW)
    envelope = fresh_opener().open(sealer.seal(body, NOW), NOW)
    assert envelope.kind == kind
    assert envelope.body == body


def _valid_frame() -> bytes:
    return EnvelopeSealer(LAB.members[0].signer, LAB.colony.colony_id, NOW).seal(
        colonymesh.node.messages.Ping(os.urandom(16)), NOW
    )


def _assert_only_defined_errors(frame: bytes) -> None:
    with contextlib.suppress(WireError):
        fresh_opener().open(frame, NOW)


@settings(max_examples=300)
@given(st.binary(max_size=512))
def test_random_bytes_yield_only_wire_errors(frame: bytes) -> None:
    _assert_only_defined_errors(frame)


@settings(max_examples=300)
@given(CBOR_VALUES)
def test_random_cbor_yields_only_wire_errors(value: object) -> None:
    _assert_only_defined_errors(wire.encode(value))
    _assert_only_defined_errors(wire.encode([1, wire.encode(value), b"s" * 64]))
    signed = [
        LAB.colony.colony_id,
        LAB.members[0].keys.public_key,
        "colony.ping",
        1,
        NOW * 1000,
        value,
    ]
    _assert_only_defined_errors(wire.encode([1, wire.encode(signed), b"s" * 64]))


MUTATIONS = st.lists(
    st.tuples(
        st.sampled_from(["flip", "cut", "insert", "delete"]),
        st.integers(0, 10_000),
        st.integers(0, 255),
    ),
    min_size=1,
    max_size=6,
)


def _mutate(frame: bytes, mutations: list[tuple[str, int, int]]) -> bytes:
    data = bytearray(frame)
    for op, position, value in mutations:
        at = position % (len(data) + 1)
        if op == "flip" and data:
            data[at % len(data)] ^= value or 1
        elif op == "cut":
            del data[at:]
        elif op == "insert":
            data.insert(at, value)
        elif op == "delete" and data:
            del data[at % len(data)]
    return bytes(data)


@settings(max_examples=400)
@given(MUTATIONS)
def test_mutated_frames_yield_only_wire_errors(mutations: list[tuple[str, int, int]]) -> None:
    frame = _valid_frame()
    mutated = _mutate(frame, mutations)
    try:
        envelope = fresh_opener().open(mutated, NOW)
    except WireError:
        return
    # A mutation that survives must not have changed what was signed.
    assert envelope.sender == LAB.members[0].keys.public_key


@pytest.mark.slow
@settings(max_examples=20_000, deadline=None)
@given(MUTATIONS, st.binary(max_size=2048))
def test_long_fuzz_of_the_decoder(mutations: list[tuple[str, int, int]], junk: bytes) -> None:
    _assert_only_defined_errors(_mutate(_valid_frame(), mutations))
    _assert_only_defined_errors(junk)
