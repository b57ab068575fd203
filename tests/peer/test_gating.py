"""In-process tests of connection gating: every refusal cause, revocation later, strangers."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from peerkit import (
    FAST_GATING,
    admit_extra,
    clock,
    config_for,
    expired_member,
    member_config,
)

from colonymesh.node.certs import Membership, revoke
from colonymesh.node.envelope import EnvelopeOpener, EnvelopeSealer
from colonymesh.node.identity import KeyPair, Signer
from colonymesh.node.peer.errors import NotAdmitted
from colonymesh.node.peer.gating import (
    GatingConfig,
    RefusalCause,
    Refused,
    judge_presentation,
)
from colonymesh.node.peer.peer import Peer
from colonymesh.node.transport.errors import NegotiationFailed
from colonymesh.node.transport.host import Host
from support.colony import NOW, ColonyFixture, make_colony


def _refused(peer: Peer) -> dict[str, int]:
    return {k: v for k, v in peer.statistics()["gating"]["refused"].items() if v}


async def _dial_refused(lab: ColonyFixture, dialer_config: object, cause: str) -> None:
    async with Peer.open(member_config(lab, 0)) as server, Peer.open(dialer_config) as dialer:  # type: ignore[arg-type]
        with pytest.raises(NotAdmitted):
            await dialer.connect(server.listen_addrs[0], timeout=5)
        assert _refused(server) == {cause: 1}
        assert server.connected_peers() == [] and dialer.connected_peers() == []
        with trio.fail_after(5):
            while server.host.connections:
                await trio.sleep(0.02)


async def test_no_certificate_is_refused(lab: ColonyFixture) -> None:
    await _dial_refused(lab, config_for(lab, KeyPair.generate(), None), "no_certificate")


async def test_expired_certificate_is_refused(lab: ColonyFixture) -> None:
    index = expired_member(lab)
    await _dial_refused(lab, member_config(lab, index), "expired")


async def test_revoked_certificate_is_refused(lab: ColonyFixture) -> None:
    server_config = member_config(lab, 0)
    server_config.membership.add_revocation(revoke(lab.owner, lab.members[1].certificate, now=NOW))
    async with Peer.open(server_config) as server, Peer.open(member_config(lab, 1)) as dialer:
        with pytest.raises(NotAdmitted):
            await dialer.connect(server.listen_addrs[0], timeout=5)
        assert _refused(server) == {"revoked": 1}
        # Now the key is known revoked: the next attempt is refused inside the handshake.
        with pytest.raises(Exception):  # noqa: B017 -- whichever transport error the dialer sees
            await dialer.connect(server.listen_addrs[0], timeout=5)
        assert _refused(server) == {"revoked": 2}
        assert server.statistics()["transport"]["refused_by_gate"] == 1


async def test_foreign_colony_is_refused(lab: ColonyFixture) -> None:
    other = make_colony("elsewhere")
    foreign = config_for(lab, other.members[0].keys, None)
    foreign = type(foreign)(
        **{
            **{f: getattr(foreign, f) for f in foreign.__dataclass_fields__},
            "membership": Membership(other.colony),
            "certificate": other.members[0].certificate,
        }
    )
    await _dial_refused(lab, foreign, "foreign_colony")


def test_judge_names_each_cause(lab: ColonyFixture) -> None:
    membership = Membership(lab.colony)
    opener = EnvelopeOpener(membership)
    member = lab.members[1]
    from colonymesh.node.certs import encode_record
    from colonymesh.node.messages import PresentCertificate

    def frame(keys: KeyPair, certificate: bytes) -> bytes:
        sealer = EnvelopeSealer(Signer(keys), lab.colony.colony_id, clock())
        return sealer.seal(PresentCertificate(certificate), clock())

    cert = encode_record(member.certificate)
    assert (
        judge_presentation(
            frame(member.keys, cert), member.keys.public_key, membership, opener, clock()
        )
        == member.certificate
    )
    impostor = KeyPair.generate()
    cases = {
        RefusalCause.KEY_MISMATCH: (frame(impostor, cert), impostor.public_key),
        RefusalCause.NO_CERTIFICATE: (frame(member.keys, b""), member.keys.public_key),
        RefusalCause.INVALID_CERTIFICATE: (frame(member.keys, cert[:-3]), member.keys.public_key),
        RefusalCause.BAD_ENVELOPE: (b"\x00junk", member.keys.public_key),
    }
    forged = bytearray(cert)
    forged[-1] ^= 1
    cases[RefusalCause.INVALID_CERTIFICATE] = (
        frame(member.keys, bytes(forged)),
        member.keys.public_key,
    )
    for cause, (data, key) in cases.items():
        with pytest.raises(Refused) as caught:
            judge_presentation(
                data, key, Membership(lab.colony), EnvelopeOpener(membership), clock()
            )
        assert caught.value.cause is cause, (cause, caught.value)


async def test_revocation_learned_later_cuts_the_connection(lab: ColonyFixture) -> None:
    async with (
        Peer.open(member_config(lab, 0)) as server,
        Peer.open(member_config(lab, 1)) as client,
    ):
        await client.connect(server.listen_addrs[0], timeout=5)
        assert server.connected_peers() == [client.peer_id]
        server.add_revocation(revoke(lab.owner, lab.members[1].certificate, now=NOW))
        with trio.fail_after(5):
            while server.connected_peers() or client.connected_peers():
                await trio.sleep(0.02)
        assert server.statistics()["gating"]["cut_later"]["revoked"] == 1


async def test_silent_peer_is_cut_after_the_presentation_timeout(lab: ColonyFixture) -> None:
    async with Peer.open(member_config(lab, 0)) as server, Host.open(KeyPair.generate()) as raw:
        connection = await raw.dial_addr(server.listen_addrs[0])
        started = trio.current_time()
        with trio.fail_after(5):
            await connection.wait_closed()
        elapsed = trio.current_time() - started
        assert FAST_GATING.presentation_timeout_s * 0.8 < elapsed < 3
        assert _refused(server) == {"no_certificate": 1}


async def test_strangers_get_identify_and_ping_only_when_allowed(lab: ColonyFixture) -> None:
    for allowed in (False, True):
        gating = GatingConfig(
            presentation_timeout_s=0.5,
            allow_strangers_identify_ping=allowed,
            strangers_grace_s=1.5,
            sweep_interval_s=0.1,
        )
        async with (
            Peer.open(member_config(lab, 0, gating=gating)) as server,
            Host.open(KeyPair.generate()) as raw,
        ):
            connection = await raw.dial_addr(server.listen_addrs[0])
            if allowed:
                info = await raw.identify(connection, timeout_s=2)
                assert info.public_key == server.host.public_key
                assert await raw.ping(connection, timeout_s=2) > 0
                await trio.sleep(0.8)  # past the presentation timeout, inside the grace
                assert not connection.is_closed
            else:
                with pytest.raises(NegotiationFailed):  # not even offered
                    await raw.identify(connection, timeout_s=2)
                with pytest.raises(NegotiationFailed):
                    await raw.ping(connection, timeout_s=2)
            with trio.fail_after(4):
                await connection.wait_closed()
            assert _refused(server) == {"no_certificate": 1}


async def test_peer_cap_refuses_one_more(lab: ColonyFixture) -> None:
    gating = GatingConfig(presentation_timeout_s=1.0, sweep_interval_s=0.1, peers_max=1)
    async with (
        Peer.open(member_config(lab, 0, gating=gating)) as server,
        Peer.open(member_config(lab, 1)) as first,
        Peer.open(member_config(lab, 2)) as second,
    ):
        await first.connect(server.listen_addrs[0], timeout=5)
        with pytest.raises(NotAdmitted):
            await second.connect(server.listen_addrs[0], timeout=5)
        assert _refused(server) == {"over_capacity": 1}
        assert server.connected_peers() == [first.peer_id]


def test_expired_fixture_is_really_expired(lab: ColonyFixture) -> None:
    index = expired_member(lab)
    assert lab.members[index].certificate.not_after < clock()


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=512), cut=st.integers(0, 2000), flip=st.integers(0, 2000))
def test_any_presentation_bytes_give_admission_or_a_typed_refusal(
    lab: ColonyFixture, data: bytes, cut: int, flip: int
) -> None:
    from colonymesh.node.certs import encode_record
    from colonymesh.node.messages import PresentCertificate

    member = lab.members[1]
    sealer = EnvelopeSealer(Signer(member.keys), lab.colony.colony_id, clock())
    good = bytearray(sealer.seal(PresentCertificate(encode_record(member.certificate)), clock()))
    if good:
        good[flip % len(good)] ^= 0xFF
    for frame in (data, bytes(good[: cut % (len(good) + 1)]), bytes(good)):
        membership = Membership(lab.colony)
        try:
            certificate = judge_presentation(
                frame, member.keys.public_key, membership, EnvelopeOpener(membership), clock()
            )
        except Refused as refusal:
            assert isinstance(refusal.cause, RefusalCause)
        else:
            assert certificate == member.certificate  # only the real one can admit


async def _until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    with trio.fail_after(timeout_s):
        while not predicate():
            await trio.sleep(0.02)


async def test_revocations_spread_by_push_and_pull(lab: ColonyFixture) -> None:
    extra = admit_extra(lab, "late")
    revocation = revoke(lab.owner, lab.members[2].certificate, now=NOW, reason="lost laptop")
    async with (
        Peer.open(member_config(lab, 0)) as a,
        Peer.open(member_config(lab, 1)) as hub,
        Peer.open(member_config(lab, 2)) as doomed,
    ):
        await a.connect(hub.listen_addrs[0], timeout=5)
        await doomed.connect(hub.listen_addrs[0], timeout=5)
        assert hub.connected_peers() == sorted([a.peer_id, doomed.peer_id])
        # a learns a revocation the hub does not hold; a pushes it, the hub cuts doomed.
        assert a.add_revocation(revocation) is True
        assert a.add_revocation(revocation) is False  # idempotent
        await _until(lambda: hub.connected_peers() == [a.peer_id])
        assert hub.statistics()["revocations"]["held"] == 1
        assert hub.statistics()["gating"]["cut_later"]["revoked"] == 1
        # A member joining later pulls it on admission (the hub presents revocations_seen=1).
        async with Peer.open(member_config(lab, extra)) as late:
            await late.connect(hub.listen_addrs[0], timeout=5)
            await _until(lambda: late.statistics()["revocations"]["held"] == 1)
            assert late.config.membership.is_revoked(lab.members[2].certificate.serial)


async def test_revocation_signed_by_someone_else_is_ignored(lab: ColonyFixture) -> None:
    forged = revoke(KeyPair.generate(), lab.members[2].certificate, now=NOW)
    async with Peer.open(member_config(lab, 0)) as a:
        assert a.add_revocation(forged) is False
        assert a.statistics()["revocations"] == {"held": 0, "learned": 0, "refused": 1}
