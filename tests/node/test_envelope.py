from __future__ import annotations

import os

import pytest

from colonymesh.node import wire
from colonymesh.node.certs import Role, revoke
from colonymesh.node.envelope import EnvelopeOpener, EnvelopeSealer, OpenerConfig, seal_frame
from colonymesh.node.errors import (
    BadField,
    BadSignature,
    ClockSkew,
    ForeignColony,
    FrameTooLarge,
    MalformedFrame,
    ReorderedBeyondWindow,
    ReplayedEnvelope,
    SenderNotAdmitted,
    UnknownKind,
    UnknownSender,
)
from colonymesh.node.identity import KeyPair, Signer
from colonymesh.node.messages import Ping, PresentCertificate
from support.colony import NOW, ColonyFixture, make_colony


def ping() -> Ping:
    return Ping(os.urandom(16))


def sealer_for(lab: ColonyFixture, index: int = 0) -> EnvelopeSealer:
    return EnvelopeSealer(lab.members[index].signer, lab.colony.colony_id, NOW)


def test_sealed_envelope_opens(lab: ColonyFixture) -> None:
    opener = EnvelopeOpener(lab.membership)
    body = ping()
    envelope = opener.open(sealer_for(lab).seal(body, NOW), NOW)
    assert envelope.body == body
    assert envelope.kind == "colony.ping"
    assert envelope.sender == lab.members[0].keys.public_key
    assert envelope.colony_id == lab.colony.colony_id


def test_replayed_envelope_is_refused(lab: ColonyFixture) -> None:
    opener = EnvelopeOpener(lab.membership)
    frame = sealer_for(lab).seal(ping(), NOW)
    opener.open(frame, NOW)
    with pytest.raises(ReplayedEnvelope):
        opener.open(frame, NOW)
    assert opener.refused == {"ReplayedEnvelope": 1}


def test_reordering_within_the_window_is_accepted_once(lab: ColonyFixture) -> None:
    opener = EnvelopeOpener(lab.membership, OpenerConfig(replay_window=8))
    sealer = sealer_for(lab)
    frames = [sealer.seal(ping(), NOW) for _ in range(8)]
    for frame in reversed(frames):
        opener.open(frame, NOW)
    for frame in frames:
        with pytest.raises(ReplayedEnvelope):
            opener.open(frame, NOW)


def test_reordered_beyond_window_is_refused(lab: ColonyFixture) -> None:
    opener = EnvelopeOpener(lab.membership, OpenerConfig(replay_window=8))
    sealer = sealer_for(lab)
    late = sealer.seal(ping(), NOW)
    for _ in range(8):
        opener.open(sealer.seal(ping(), NOW), NOW)
    with pytest.raises(ReorderedBeyondWindow):
        opener.open(late, NOW)


def test_tampered_envelope_is_refused(lab: ColonyFixture) -> None:
    opener = EnvelopeOpener(lab.membership)
    frame = sealer_for(lab).seal(Ping(b"\x01" * 16), NOW)
    tampered = frame.replace(b"\x01" * 16, b"\x02" * 16)
    assert tampered != frame
    with pytest.raises(BadSignature):
        opener.open(tampered, NOW)


def test_envelope_signed_by_another_key_is_refused(lab: ColonyFixture) -> None:
    """A member's key named as sender, but a stranger's signature."""
    opener = EnvelopeOpener(lab.membership)
    stranger = Signer(KeyPair.generate())
    stranger.public_key = lab.members[0].keys.public_key  # claims to be server-1
    frame = seal_frame(stranger, lab.colony.colony_id, ping(), seq=1, timestamp_ms=NOW * 1000)
    with pytest.raises(BadSignature):
        opener.open(frame, NOW)


def test_oversized_frame_is_refused_before_decoding(lab: ColonyFixture) -> None:
    opener = EnvelopeOpener(lab.membership, OpenerConfig(frame_bytes_max=1024))
    frame = sealer_for(lab).seal(PresentCertificate(b"x" * 2000), NOW)
    with pytest.raises(FrameTooLarge):
        opener.open(frame, NOW)


def test_foreign_colony_envelope_is_refused(lab: ColonyFixture) -> None:
    other = make_colony("other")
    opener = EnvelopeOpener(lab.membership)
    frame = EnvelopeSealer(other.members[0].signer, other.colony.colony_id, NOW).seal(ping(), NOW)
    with pytest.raises(ForeignColony):
        opener.open(frame, NOW)


def test_sender_without_certificate_is_refused(lab: ColonyFixture) -> None:
    opener = EnvelopeOpener(lab.membership)
    frame = EnvelopeSealer(Signer(KeyPair.generate()), lab.colony.colony_id, NOW).seal(ping(), NOW)
    with pytest.raises(UnknownSender):
        opener.open(frame, NOW)


def test_revoked_and_expired_senders_are_refused(lab: ColonyFixture) -> None:
    opener = EnvelopeOpener(lab.membership)
    short_lived = lab.admit("brief", (Role.SUBMITTER,), not_after=NOW + 10)
    frame = EnvelopeSealer(short_lived.signer, lab.colony.colony_id, NOW + 20).seal(
        ping(), NOW + 20
    )
    with pytest.raises(SenderNotAdmitted, match="valid from"):
        opener.open(frame, NOW + 20)
    lab.membership.add_revocation(revoke(lab.owner, lab.members[1].certificate, now=NOW))
    with pytest.raises(SenderNotAdmitted, match="revoked"):
        opener.open(sealer_for(lab, 1).seal(ping(), NOW), NOW)


def test_clock_skew_is_bounded(lab: ColonyFixture) -> None:
    opener = EnvelopeOpener(lab.membership, OpenerConfig(clock_skew_s=5))
    with pytest.raises(ClockSkew):
        opener.open(sealer_for(lab).seal(ping(), NOW - 6), NOW)
    with pytest.raises(ClockSkew):
        opener.open(sealer_for(lab).seal(ping(), NOW + 6), NOW)


def test_unknown_kind_and_bad_fields_are_refused(lab: ColonyFixture) -> None:
    opener = EnvelopeOpener(lab.membership)
    member = lab.members[0]

    def frame_of(kind: str, body: object) -> bytes:
        signed = wire.encode(
            [lab.colony.colony_id, member.keys.public_key, kind, 1, NOW * 1000, body]
        )
        return wire.encode([1, signed, member.signer.sign(b"colonymesh/envelope/v1\x00" + signed)])

    with pytest.raises(UnknownKind):
        opener.open(frame_of("colony.nope", {}), NOW)
    with pytest.raises(BadField, match="nonce"):
        opener.open(frame_of("colony.ping", {"nonce": b"short"}), NOW)
    with pytest.raises(BadField, match="unexpected"):
        opener.open(frame_of("colony.ping", {"nonce": b"x" * 16, "extra": 1}), NOW)
    with pytest.raises(MalformedFrame):
        opener.open(wire.encode([2, b"", b""]), NOW)


def test_a_restarted_sender_continues_above_its_old_numbers(lab: ColonyFixture) -> None:
    opener = EnvelopeOpener(lab.membership)
    before = sealer_for(lab)
    for _ in range(100):
        opener.open(before.seal(ping(), NOW), NOW)
    after_restart = EnvelopeSealer(lab.members[0].signer, lab.colony.colony_id, NOW + 0.01)
    opener.open(after_restart.seal(ping(), NOW + 0.01), NOW + 0.01)
