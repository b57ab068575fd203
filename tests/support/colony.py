"""A colony, its owner and a few admitted members, for tests of any part."""

from __future__ import annotations

from dataclasses import dataclass

from colonymesh.node.certs import (
    Capabilities,
    Certificate,
    Colony,
    Membership,
    Role,
    create_colony,
    issue_certificate,
)
from colonymesh.node.identity import KeyPair, Signer

NOW = 1_800_000_000


@dataclass
class Member:
    keys: KeyPair
    signer: Signer
    certificate: Certificate


@dataclass
class ColonyFixture:
    owner: KeyPair
    colony: Colony
    membership: Membership
    members: list[Member]

    def admit(self, name: str, roles: tuple[Role, ...], *, not_after: int = NOW + 3600) -> Member:
        keys = KeyPair.generate()
        certificate = issue_certificate(
            self.owner,
            self.colony,
            keys.public_key,
            name=name,
            roles=roles,
            not_before=NOW - 3600,
            not_after=not_after,
            serial=len(self.members) + 1,
            executor_type="edge" if Role.EXECUTOR in roles else "",
            capabilities=Capabilities(cpu_millicores=2000, mem_bytes=2**30),
        )
        self.membership.admit(certificate, NOW)
        member = Member(keys, Signer(keys), certificate)
        self.members.append(member)
        return member


def make_colony(name: str = "lab") -> ColonyFixture:
    owner = KeyPair.generate()
    colony = create_colony(owner, name, NOW - 7200)
    fixture = ColonyFixture(owner, colony, Membership(colony), [])
    fixture.admit("server-1", (Role.SERVER,))
    fixture.admit("exec-1", (Role.EXECUTOR,))
    fixture.admit("alice", (Role.SUBMITTER,))
    return fixture
