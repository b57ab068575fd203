"""Shared helpers of the peer tests: a colony, member configs, test message kinds."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from colonymesh.node.certs import Membership, Role, issue_certificate
from colonymesh.node.envelope import message
from colonymesh.node.identity import KeyPair, Signer
from colonymesh.node.peer.gating import GatingConfig
from colonymesh.node.peer.peer import PeerConfig
from colonymesh.node.schema import limit
from support.colony import NOW, ColonyFixture, Member

_T0 = time.monotonic()


def clock() -> float:
    """The colony fixture's wall clock, moving with real time."""
    return NOW + (time.monotonic() - _T0)


@message("test.echo")
@dataclass(frozen=True, slots=True)
class Echo:
    text: str = field(default="", metadata=limit(4 * 1024 * 1024))


@message("test.note")
@dataclass(frozen=True, slots=True)
class Note:
    text: str = field(default="", metadata=limit(1024))


FAST_GATING = GatingConfig(presentation_timeout_s=1.0, sweep_interval_s=0.1)


def config_for(
    lab: ColonyFixture,
    keys: KeyPair,
    certificate_index: int | None,
    *,
    gating: GatingConfig = FAST_GATING,
    **kwargs: object,
) -> PeerConfig:
    """A peer config with its own view of the colony (a fresh Membership, as a process has)."""
    membership = Membership(lab.colony)
    certificate = None if certificate_index is None else lab.members[certificate_index].certificate
    return PeerConfig(
        keys=keys,
        membership=membership,
        certificate=certificate,
        gating=gating,
        clock=clock,
        seed=1,
        **kwargs,  # type: ignore[arg-type]
    )


def member_config(lab: ColonyFixture, index: int, **kwargs: object) -> PeerConfig:
    return config_for(lab, lab.members[index].keys, index, **kwargs)


def admit_extra(lab: ColonyFixture, name: str, *, not_after: int | None = None) -> int:
    """Admit one more member; its index in lab.members."""
    member = lab.admit(name, (Role.EXECUTOR,), not_after=not_after or NOW + 10 * 3600)
    return lab.members.index(member)


def expired_member(lab: ColonyFixture) -> int:
    keys = KeyPair.generate()
    certificate = issue_certificate(
        lab.owner,
        lab.colony,
        keys.public_key,
        name="old",
        roles=(Role.EXECUTOR,),
        not_before=NOW - 7200,
        not_after=NOW - 3600,
        serial=900,
    )
    lab.members.append(Member(keys, Signer(keys), certificate))
    return len(lab.members) - 1
