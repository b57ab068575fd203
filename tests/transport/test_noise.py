"""The libp2p Noise XX handshake and transport framing, core against core."""

import contextlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from colonymesh.node.identity import KeyPair
from colonymesh.node.transport import noise, protobuf
from colonymesh.node.transport.errors import (
    DecryptionFailed,
    HandshakeFailed,
    LocalProtocolError,
    MalformedMessage,
    PeerMismatch,
    RemoteProtocolError,
)

ALICE = KeyPair.from_seed(bytes(range(32)))
BOB = KeyPair.from_seed(bytes(range(1, 33)))


def keys(seed: int) -> bytes:
    return random.Random(seed).randbytes(32)


def pair(expected: bytes | None = None) -> tuple[noise.NoiseHandshake, noise.NoiseHandshake]:
    initiator = noise.NoiseHandshake(
        noise.Role.INITIATOR, ALICE, keys(1), keys(2), expected_identity_key=expected
    )
    responder = noise.NoiseHandshake(noise.Role.RESPONDER, BOB, keys(3), keys(4))
    return initiator, responder


def complete() -> tuple[noise.HandshakeCompleted, noise.HandshakeCompleted]:
    initiator, responder = pair(BOB.public_key)
    assert responder.receive_data(initiator.data_to_send()) is None
    done_i = initiator.receive_data(responder.data_to_send())
    done_r = responder.receive_data(initiator.data_to_send())
    assert done_i is not None and done_r is not None
    return done_i, done_r


def test_handshake_proves_both_identities() -> None:
    done_i, done_r = complete()
    assert done_i.remote_identity_key == BOB.public_key
    assert done_r.remote_identity_key == ALICE.public_key


def test_handshake_is_deterministic_given_its_inputs() -> None:
    a, _ = pair()
    b, _ = pair()
    assert a.data_to_send() == b.data_to_send()


def test_message_sizes_match_the_spec() -> None:
    initiator, responder = pair()
    first = initiator.data_to_send()
    assert len(first) == 2 + 32  # -> e, empty payload
    responder.receive_data(first)
    second = responder.data_to_send()
    assert int.from_bytes(second[:2], "big") == len(second) - 2
    assert len(second) > 2 + 32 + 48 + 16  # e, encrypted s, encrypted payload


def test_transport_round_trip_both_ways_and_large_frames() -> None:
    done_i, done_r = complete()
    big = random.Random(7).randbytes(300_000)
    wire = done_i.sender.seal(big)
    assert len(wire) == len(big) + 5 * (2 + 16)  # 5 frames of <= 65519 bytes
    received = b"".join(done_r.receiver.receive_data(wire[:1000]))
    received += b"".join(done_r.receiver.receive_data(wire[1000:]))
    assert received == big
    assert done_i.receiver.receive_data(done_r.sender.seal(b"back")) == [b"back"]


def test_tampered_transport_frame_is_refused() -> None:
    done_i, done_r = complete()
    wire = bytearray(done_i.sender.seal(b"hello"))
    wire[5] ^= 1
    with pytest.raises(DecryptionFailed):
        done_r.receiver.receive_data(bytes(wire))


def test_replayed_frame_is_refused() -> None:
    done_i, done_r = complete()
    wire = done_i.sender.seal(b"once")
    done_r.receiver.receive_data(wire)
    with pytest.raises(DecryptionFailed):
        done_r.receiver.receive_data(wire)


def test_frame_shorter_than_tag_is_malformed() -> None:
    _, done_r = complete()
    with pytest.raises(MalformedMessage):
        done_r.receiver.receive_data(b"\x00\x05hello")


def test_unexpected_identity_is_peer_mismatch() -> None:
    initiator, responder = pair(expected=ALICE.public_key)  # but BOB answers
    responder.receive_data(initiator.data_to_send())
    with pytest.raises(PeerMismatch):
        initiator.receive_data(responder.data_to_send())


def test_tampered_handshake_message_fails() -> None:
    initiator, responder = pair()
    responder.receive_data(initiator.data_to_send())
    second = bytearray(responder.data_to_send())
    second[-3] ^= 0x40
    with pytest.raises(HandshakeFailed):
        initiator.receive_data(bytes(second))


class _ForgingSigner:
    """Claims BOB's key but signs with ALICE's: the signature cannot verify."""

    public_key = BOB.public_key

    def sign(self, message: bytes) -> bytes:
        return ALICE.sign(message)


def test_bad_identity_signature_fails() -> None:
    initiator = noise.NoiseHandshake(noise.Role.INITIATOR, ALICE, keys(1), keys(2))
    responder = noise.NoiseHandshake(noise.Role.RESPONDER, _ForgingSigner(), keys(3), keys(4))
    responder.receive_data(initiator.data_to_send())
    with pytest.raises(HandshakeFailed, match="signature"):
        initiator.receive_data(responder.data_to_send())


def test_non_ed25519_identity_key_is_refused() -> None:
    secp_key = protobuf.encode_message([(1, 2), (2, b"\x02" * 33)])  # KeyType Secp256k1
    with pytest.raises(HandshakeFailed, match="not Ed25519"):
        noise.decode_public_key(secp_key)
    payload = protobuf.encode_message([(1, secp_key), (2, b"s" * 64)])
    with pytest.raises(HandshakeFailed):
        noise.decode_payload(payload)
    with pytest.raises(HandshakeFailed, match="lacks"):
        noise.decode_payload(b"")


def test_payload_round_trip_with_extensions() -> None:
    payload = noise.HandshakePayload(ALICE.public_key, b"\x01" * 64, ("/yamux/1.0.0",))
    assert noise.decode_payload(noise.encode_payload(payload)) == payload


def test_local_misuse() -> None:
    with pytest.raises(LocalProtocolError):
        noise.NoiseHandshake(noise.Role.INITIATOR, ALICE, b"short", keys(2))
    initiator, responder = pair()
    responder.receive_data(initiator.data_to_send())
    initiator.receive_data(responder.data_to_send())
    with pytest.raises(LocalProtocolError):
        initiator.receive_data(b"x")


def test_truncated_handshake_waits_and_leftovers_are_kept() -> None:
    initiator, responder = pair()
    first = initiator.data_to_send()
    assert responder.receive_data(first[:10]) is None
    assert responder.receive_data(first[10:]) is None
    initiator.receive_data(responder.data_to_send())
    third = initiator.data_to_send()
    done = responder.receive_data(third + b"\x00\x13early")
    assert done is not None and done.unconsumed == b"\x00\x13early"


@settings(max_examples=200)
@given(st.binary(max_size=400))
def test_responder_fuzz_only_typed_errors(data: bytes) -> None:
    responder = noise.NoiseHandshake(noise.Role.RESPONDER, BOB, keys(3), keys(4))
    try:
        responder.receive_data(data)
        responder.receive_data(b"\x00\x60" + data[:0x60].ljust(0x60, b"\x00"))
    except RemoteProtocolError:
        pass


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_initiator_fuzz_only_typed_errors(data: bytes) -> None:
    initiator = noise.NoiseHandshake(noise.Role.INITIATOR, ALICE, keys(1), keys(2))
    with contextlib.suppress(RemoteProtocolError):
        initiator.receive_data(len(data).to_bytes(2, "big") + data)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.binary(max_size=70_000), min_size=1, max_size=4),
    st.lists(st.integers(min_value=1, max_value=90_000), min_size=1, max_size=10),
)
def test_receiver_reassembles_any_chunking(messages: list[bytes], cuts: list[int]) -> None:
    done_i, done_r = complete()
    wire = b"".join(bytes(done_i.sender.seal(m)) for m in messages)
    received: list[bytes] = []
    position = 0
    index = 0
    while position < len(wire):
        cut = cuts[index % len(cuts)]
        received += done_r.receiver.receive_data(memoryview(wire)[position : position + cut])
        position += cut
        index += 1
    assert b"".join(received) == b"".join(messages)
