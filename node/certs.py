"""Colonies, membership certificates and revocations: zero trust, owner-signed.

A colony is created by its owner's Ed25519 key and its id derives from that
key, so nobody can mint a second colony with the same id. The owner signs a
:class:`Certificate` for every member: its public key, roles, executor type and
capabilities, location, validity window and serial. A :class:`Revocation`,
also owner-signed, withdraws a certificate by serial before it expires.

Signatures cover the canonical CBOR of the record without its signature,
prefixed with a domain tag per record type, so a signature over one kind of
record can never be passed off as another.

:class:`Membership` is the pure view a peer checks others against: it takes
``now`` as an argument and never reads a clock.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from colonymesh.node import schema, wire
from colonymesh.node.errors import (
    BadField,
    CertificateExpired,
    CertificateInvalid,
    CertificateRevoked,
    ForeignColony,
    MalformedFrame,
)
from colonymesh.node.identity import KeyPair, peer_id_of, verify_signature
from colonymesh.node.schema import exact, limit

COLONY_ID_BYTES = 32
RECORD_BYTES_MAX = 16 * 1024
_COLONY_DOMAIN = b"colonymesh/colony/v1\x00"
_CERT_DOMAIN = b"colonymesh/certificate/v1\x00"
_REVOCATION_DOMAIN = b"colonymesh/revocation/v1\x00"
_COLONY_ID_DOMAIN = b"colonymesh/colony-id/v1\x00"

R = TypeVar("R")


class Role(enum.Enum):
    SERVER = "server"
    EXECUTOR = "executor"
    SUBMITTER = "submitter"


def colony_id_of(owner_key: bytes) -> bytes:
    """The colony id that ``owner_key`` creates (a domain-tagged SHA-256)."""
    return hashlib.sha256(_COLONY_ID_DOMAIN + owner_key).digest()


@dataclass(frozen=True, slots=True)
class Gpu:
    name: str = field(default="", metadata=limit(128))
    mem_bytes: int = 0
    count: int = 0


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What an executor declares it has; matching compares specs against it."""

    cpu_millicores: int = 0
    mem_bytes: int = 0
    storage_bytes: int = 0
    gpu: Gpu = field(default_factory=Gpu)

    def __post_init__(self) -> None:
        for name in ("cpu_millicores", "mem_bytes", "storage_bytes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.gpu.count < 0 or self.gpu.mem_bytes < 0:
            raise ValueError("gpu count and memory must not be negative")


@dataclass(frozen=True, slots=True)
class Colony:
    """A colony's public descriptor, self-signed by its owner."""

    colony_id: bytes = field(metadata=exact(COLONY_ID_BYTES))
    name: str = field(metadata=limit(256))
    owner_key: bytes = field(metadata=exact(32))
    created: int
    signature: bytes = field(default=b"", metadata=limit(64))


@dataclass(frozen=True, slots=True)
class Certificate:
    colony_id: bytes = field(metadata=exact(COLONY_ID_BYTES))
    member_key: bytes = field(metadata=exact(32))
    name: str = field(metadata=limit(256))
    roles: tuple[Role, ...] = field(metadata=limit(8))
    executor_type: str = field(metadata=limit(128))
    capabilities: Capabilities
    location: str = field(metadata=limit(256))
    not_before: int
    not_after: int
    serial: int
    signature: bytes = field(default=b"", metadata=limit(64))

    @property
    def peer_id(self) -> str:
        return peer_id_of(self.member_key)

    def has_role(self, role: Role) -> bool:
        return role in self.roles


@dataclass(frozen=True, slots=True)
class Revocation:
    colony_id: bytes = field(metadata=exact(COLONY_ID_BYTES))
    serial: int
    member_key: bytes = field(metadata=exact(32))
    revoked_at: int
    reason: str = field(metadata=limit(1024))
    signature: bytes = field(default=b"", metadata=limit(64))


_DOMAINS: dict[type, bytes] = {
    Colony: _COLONY_DOMAIN,
    Certificate: _CERT_DOMAIN,
    Revocation: _REVOCATION_DOMAIN,
}


def _signing_bytes(record: Colony | Certificate | Revocation) -> bytes:
    unsigned = replace(record, signature=b"")
    return _DOMAINS[type(record)] + wire.encode(schema.to_plain(unsigned))


def _sign(record: R, owner: KeyPair) -> R:
    signature = owner.sign(_signing_bytes(record))  # type: ignore[arg-type]
    return replace(record, signature=signature)  # type: ignore[type-var]


def create_colony(owner: KeyPair, name: str, now: int) -> Colony:
    colony = Colony(colony_id_of(owner.public_key), name, owner.public_key, now)
    return _sign(colony, owner)


def issue_certificate(
    owner: KeyPair,
    colony: Colony,
    member_key: bytes,
    *,
    name: str,
    roles: Iterable[Role],
    not_before: int,
    not_after: int,
    serial: int,
    executor_type: str = "",
    capabilities: Capabilities | None = None,
    location: str = "",
) -> Certificate:
    if owner.public_key != colony.owner_key:
        raise CertificateInvalid("only the colony owner's key can admit members")
    if not_after <= not_before:
        raise CertificateInvalid("the validity window is empty (not_after <= not_before)")
    ordered_roles = tuple(sorted(set(roles), key=lambda role: role.value))
    if not ordered_roles:
        raise CertificateInvalid("a member needs at least one role")
    certificate = Certificate(
        colony_id=colony.colony_id,
        member_key=member_key,
        name=name,
        roles=ordered_roles,
        executor_type=executor_type,
        capabilities=capabilities or Capabilities(),
        location=location,
        not_before=not_before,
        not_after=not_after,
        serial=serial,
    )
    return _sign(certificate, owner)


def revoke(owner: KeyPair, certificate: Certificate, *, now: int, reason: str = "") -> Revocation:
    revocation = Revocation(
        certificate.colony_id, certificate.serial, certificate.member_key, now, reason
    )
    return _sign(revocation, owner)


def verify_colony(colony: Colony) -> Colony:
    """Check a colony descriptor is self-consistent and owner-signed."""
    if colony.colony_id != colony_id_of(colony.owner_key):
        raise CertificateInvalid("colony id does not derive from the owner key")
    if not verify_signature(colony.owner_key, _signing_bytes(colony), colony.signature):
        raise CertificateInvalid("colony descriptor signature does not verify")
    return colony


def check_owner_signed(colony: Colony, record: Certificate | Revocation) -> None:
    if record.colony_id != colony.colony_id:
        raise ForeignColony(
            f"{type(record).__name__.lower()} belongs to colony {record.colony_id.hex()[:16]}…, "
            f"not {colony.colony_id.hex()[:16]}… ({colony.name})"
        )
    if not verify_signature(colony.owner_key, _signing_bytes(record), record.signature):
        raise CertificateInvalid(
            f"{type(record).__name__.lower()} is not signed by the colony owner"
        )


def encode_record(record: Colony | Certificate | Revocation) -> bytes:
    return wire.encode(schema.to_plain(record))


def decode_record(cls: type[R], data: bytes) -> R:
    """Strictly decode a record; any defect is a ``CertificateInvalid``."""
    try:
        return schema.from_plain(cls, wire.decode(data, frame_bytes_max=RECORD_BYTES_MAX))
    except (MalformedFrame, BadField) as error:
        raise CertificateInvalid(f"not a valid {cls.__name__.lower()}: {error}") from None
    except Exception as error:  # FrameTooLarge and friends
        raise CertificateInvalid(f"not a valid {cls.__name__.lower()}: {error}") from None


class Membership:
    """Who is admitted to one colony: certificates and revocations, checked against ``now``."""

    __slots__ = ("_by_key", "_revoked_serials", "colony")

    def __init__(self, colony: Colony) -> None:
        self.colony = verify_colony(colony)
        self._by_key: dict[bytes, Certificate] = {}
        self._revoked_serials: set[int] = set()

    def add_revocation(self, revocation: Revocation) -> None:
        check_owner_signed(self.colony, revocation)
        self._revoked_serials.add(revocation.serial)

    def is_revoked(self, serial: int) -> bool:
        return serial in self._revoked_serials

    def check(self, certificate: Certificate, now: float) -> Certificate:
        """Return ``certificate`` if it admits its holder at ``now``; raise otherwise."""
        check_owner_signed(self.colony, certificate)
        return self._check_status(certificate, now)

    def _check_status(self, certificate: Certificate, now: float) -> Certificate:
        if certificate.serial in self._revoked_serials:
            raise CertificateRevoked(
                f"certificate {certificate.serial} of {certificate.name!r} has been revoked"
            )
        if not certificate.not_before <= now < certificate.not_after:
            raise CertificateExpired(
                f"certificate {certificate.serial} of {certificate.name!r} is valid from "
                f"{certificate.not_before} to {certificate.not_after}, not at {int(now)}"
            )
        return certificate

    def admit(self, certificate: Certificate, now: float) -> Certificate:
        """Check ``certificate`` and remember it as its member's current one."""
        self.check(certificate, now)
        held = self._by_key.get(certificate.member_key)
        if held is None or held.not_before <= certificate.not_before:
            self._by_key[certificate.member_key] = certificate
        return certificate

    def certificate_of(self, member_key: bytes, now: float) -> Certificate | None:
        """The member's certificate if it admits them at ``now``, else ``None``."""
        certificate = self._by_key.get(member_key)
        if certificate is None:
            return None
        try:
            return self._check_status(certificate, now)  # its signature was checked on admit
        except (CertificateExpired, CertificateRevoked):
            return None

    def known_certificate(self, member_key: bytes) -> Certificate | None:
        """The member's last admitted certificate, whether or not it admits them now."""
        return self._by_key.get(member_key)

    def members(self) -> list[Certificate]:
        return sorted(self._by_key.values(), key=lambda cert: (cert.name, cert.serial))

    def statistics(self) -> dict[str, Any]:
        return {"members": len(self._by_key), "revoked": len(self._revoked_serials)}
