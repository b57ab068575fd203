"""varint, protobuf and multiaddr codecs: round trips, strictness, fuzzing."""

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from colonymesh.node.transport import multiaddr, protobuf
from colonymesh.node.transport.errors import FrameTooLarge, MalformedMessage, RemoteProtocolError
from colonymesh.node.transport.varint import decode_uvarint, encode_uvarint


@given(st.integers(min_value=0, max_value=(1 << 63) - 1))
def test_varint_round_trip(value: int) -> None:
    encoded = encode_uvarint(value)
    assert decode_uvarint(encoded + b"tail") == (value, len(encoded))


def test_varint_known_encodings() -> None:
    assert encode_uvarint(0) == b"\x00"
    assert encode_uvarint(127) == b"\x7f"
    assert encode_uvarint(128) == b"\x80\x01"
    assert encode_uvarint(300) == b"\xac\x02"


def test_varint_rejects_non_minimal_and_overlong() -> None:
    with pytest.raises(MalformedMessage):
        decode_uvarint(b"\x80\x00")
    with pytest.raises(MalformedMessage):
        decode_uvarint(b"\xff" * 10)
    assert decode_uvarint(b"\x80\x80") is None  # truncated: wait for more


def test_varint_cap_fails_early() -> None:
    with pytest.raises(FrameTooLarge):
        decode_uvarint(b"\x81\x08", value_max=1000)
    with pytest.raises(FrameTooLarge):  # already over the cap before the varint ends
        decode_uvarint(b"\xff\xff\xff", value_max=1000)


@given(st.binary(max_size=64))
def test_varint_decoder_only_raises_typed_errors(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        decode_uvarint(data, value_max=1 << 20)


def test_protobuf_round_trip_and_schema() -> None:
    encoded = protobuf.encode_message([(1, 5), (2, b"abc"), (3, "x"), (3, "y")])
    fields = protobuf.decode_message(encoded)
    assert protobuf.single_varint(fields, 1) == 5
    assert protobuf.single_bytes(fields, 2) == b"abc"
    assert protobuf.repeated_bytes(fields, 3) == [b"x", b"y"]
    with pytest.raises(MalformedMessage):
        protobuf.single_bytes(fields, 1)  # a varint where bytes are expected
    with pytest.raises(MalformedMessage):
        protobuf.single_varint(fields, 2)


def test_protobuf_rejects_groups_truncation_and_field_zero() -> None:
    with pytest.raises(MalformedMessage):
        protobuf.decode_message(b"\x0b")  # wire type 3 (start group)
    with pytest.raises(MalformedMessage):
        protobuf.decode_message(b"\x12\x05ab")  # length runs past the end
    with pytest.raises(MalformedMessage):
        protobuf.decode_message(b"\x00\x01")  # field number 0
    with pytest.raises(FrameTooLarge):
        protobuf.decode_message(b"\x08\x01" * 20, fields_max=10)


@given(st.binary(max_size=200))
def test_protobuf_decoder_only_raises_typed_errors(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        protobuf.decode_message(data)


@pytest.mark.parametrize(
    "text",
    [
        "/ip4/127.0.0.1/tcp/4001",
        "/ip6/::1/tcp/0",
        "/dns4/example.com/tcp/443/wss",
        "/ip4/1.2.3.4/udp/9/quic-v1",
        "/ip4/10.0.0.1/tcp/1/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA",
    ],
)
def test_multiaddr_round_trip(text: str) -> None:
    assert multiaddr.to_text(multiaddr.to_bytes(text)) == text


def test_multiaddr_known_bytes_and_errors() -> None:
    assert multiaddr.to_bytes("/ip4/127.0.0.1/tcp/4001") == bytes.fromhex("047f000001060fa1")
    with pytest.raises(MalformedMessage):
        multiaddr.to_bytes("/ip4/300.1.1.1/tcp/1")
    with pytest.raises(MalformedMessage):
        multiaddr.to_bytes("/nope/1")
    with pytest.raises(MalformedMessage):
        multiaddr.to_text(b"\x04\x7f\x00")  # truncated ip4
    assert multiaddr.parse_tcp_address("/ip4/127.0.0.1/tcp/5") == ("127.0.0.1", 5, None)
    with pytest.raises(MalformedMessage):
        multiaddr.parse_tcp_address("/ip4/127.0.0.1/udp/5")


@given(st.binary(max_size=64))
def test_multiaddr_decoder_only_raises_typed_errors(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        multiaddr.to_text(data)
