from __future__ import annotations

from dataclasses import replace

import pytest

from colonymesh.node.certs import (
    Certificate,
    Colony,
    Revocation,
    Role,
    colony_id_of,
    decode_record,
    encode_record,
    issue_certificate,
    revoke,
    verify_colony,
)
from colonymesh.node.errors import (
    CertificateExpired,
    CertificateInvalid,
    CertificateRevoked,
    ForeignColony,
)
from colonymesh.node.identity import KeyPair
from support.colony import NOW, ColonyFixture, make_colony


def test_colony_id_derives_from_owner_key(lab: ColonyFixture) -> None:
    assert lab.colony.colony_id == colony_id_of(lab.owner.public_key)
    assert verify_colony(lab.colony) is lab.colony


def test_colony_descriptor_cannot_claim_another_owner(lab: ColonyFixture) -> None:
    impostor = replace(lab.colony, owner_key=KeyPair.generate().public_key)
    with pytest.raises(CertificateInvalid, match="does not derive"):
        verify_colony(impostor)
    renamed = replace(lab.colony, name="evil")
    with pytest.raises(CertificateInvalid, match="signature"):
        verify_colony(renamed)


def test_admitted_members_verify_and_round_trip(lab: ColonyFixture) -> None:
    for member in lab.members:
        decoded = decode_record(Certificate, encode_record(member.certificate))
        assert decoded == member.certificate
        assert lab.membership.check(decoded, NOW) == decoded
        assert lab.membership.certificate_of(member.keys.public_key, NOW) == decoded


def test_roles_are_recorded(lab: ColonyFixture) -> None:
    server, executor, submitter = lab.members
    assert server.certificate.has_role(Role.SERVER)
    assert not server.certificate.has_role(Role.EXECUTOR)
    assert executor.certificate.executor_type == "edge"
    assert submitter.certificate.roles == (Role.SUBMITTER,)


def test_tampered_certificate_is_refused(lab: ColonyFixture) -> None:
    certificate = lab.members[2].certificate
    promoted = replace(certificate, roles=(Role.SERVER, Role.SUBMITTER))
    with pytest.raises(CertificateInvalid, match="not signed by the colony owner"):
        lab.membership.check(promoted, NOW)


def test_only_the_owner_can_admit(lab: ColonyFixture) -> None:
    with pytest.raises(CertificateInvalid, match="owner"):
        issue_certificate(
            KeyPair.generate(),
            lab.colony,
            KeyPair.generate().public_key,
            name="x",
            roles=[Role.SUBMITTER],
            not_before=0,
            not_after=10,
            serial=9,
        )


def test_expired_and_not_yet_valid_are_refused(lab: ColonyFixture) -> None:
    certificate = lab.members[0].certificate
    with pytest.raises(CertificateExpired):
        lab.membership.check(certificate, certificate.not_after)
    with pytest.raises(CertificateExpired):
        lab.membership.check(certificate, certificate.not_before - 1)
    assert lab.membership.certificate_of(certificate.member_key, certificate.not_after + 1) is None


def test_revoked_certificate_is_refused(lab: ColonyFixture) -> None:
    certificate = lab.members[1].certificate
    revocation = revoke(lab.owner, certificate, now=NOW, reason="stolen")
    lab.membership.add_revocation(decode_record(Revocation, encode_record(revocation)))
    with pytest.raises(CertificateRevoked, match="revoked"):
        lab.membership.check(certificate, NOW)
    assert lab.membership.certificate_of(certificate.member_key, NOW) is None
    assert lab.membership.certificate_of(lab.members[0].keys.public_key, NOW) is not None


def test_revocation_by_non_owner_is_refused(lab: ColonyFixture) -> None:
    forged = revoke(lab.owner, lab.members[0].certificate, now=NOW)
    forged = replace(forged, signature=KeyPair.generate().sign(b"x"))
    with pytest.raises(CertificateInvalid):
        lab.membership.add_revocation(forged)
    assert not lab.membership.is_revoked(lab.members[0].certificate.serial)


def test_certificate_of_another_colony_is_refused(lab: ColonyFixture) -> None:
    other = make_colony("elsewhere")
    with pytest.raises(ForeignColony, match="belongs to colony"):
        lab.membership.check(other.members[0].certificate, NOW)
    # Same serial and key, re-pointed at our colony id: the owner signature fails.
    forged = replace(other.members[0].certificate, colony_id=lab.colony.colony_id)
    with pytest.raises(CertificateInvalid):
        lab.membership.check(forged, NOW)


@pytest.mark.parametrize(
    "data", [b"", b"\xa0", b"\x80", b"garbage", encode_record(make_colony().colony)]
)
def test_garbage_is_not_a_certificate(data: bytes) -> None:
    with pytest.raises(CertificateInvalid):
        decode_record(Certificate, data)


def test_colony_record_round_trips(lab: ColonyFixture) -> None:
    assert decode_record(Colony, encode_record(lab.colony)) == lab.colony
