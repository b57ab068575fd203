"""A colony's files on disk: the owner's folder and the records it issues.

``colonymesh colony create`` makes a folder::

    DIR/owner.key          the owner's secret key (0600)
    DIR/colony.cbor        the owner-signed colony descriptor (public)
    DIR/revocations.cbor   owner-signed revocations (public; a CBOR list)
    DIR/members/NAME.cert  certificates issued by ``colony admit`` (public)

Records are canonical CBOR, exactly as they travel on the wire. Every reader
names the file in its error and never half-updates one: writes go to a temp
file that is fsynced and renamed over the old one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

from colonymesh.node import schema, wire
from colonymesh.node.certs import (
    RECORD_BYTES_MAX,
    Certificate,
    Colony,
    Membership,
    Revocation,
    check_owner_signed,
    decode_record,
    verify_colony,
)
from colonymesh.node.errors import CertificateError, ColonymeshError, InputError

COLONY_FILE = "colony.cbor"
OWNER_KEY_FILE = "owner.key"
REVOCATIONS_FILE = "revocations.cbor"
MEMBERS_DIR = "members"
REVOCATIONS_MAX = 100_000

R = TypeVar("R", Colony, Certificate, Revocation)


def write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _read_bytes(path: Path, cap: int, what: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            data = handle.read(cap + 1)
    except FileNotFoundError:
        raise InputError(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not a {what}") from None
    except OSError as error:
        raise InputError(f"{path}: cannot read {what}: {error.strerror}") from None
    if len(data) > cap:
        raise InputError(f"{path}: too large to be a {what}")
    return data


def read_record(path: Path, cls: type[R]) -> R:
    what = cls.__name__.lower()
    try:
        return decode_record(cls, _read_bytes(path, RECORD_BYTES_MAX, what))
    except CertificateError as error:
        raise type(error)(f"{path}: {error}") from None


def colony_dir_of(path: Path) -> Path:
    """The colony folder for a path inside it (the folder, its files or members/)."""
    for candidate in (path, path.parent, path.parent.parent):
        if (candidate / COLONY_FILE).is_file():
            return candidate
    raise InputError(f"{path}: not inside a colony folder (no {COLONY_FILE} found); pass --colony")


def read_colony(directory: Path) -> Colony:
    path = directory / COLONY_FILE if directory.is_dir() else directory
    colony = read_record(path, Colony)
    try:
        return verify_colony(colony)
    except CertificateError as error:
        raise type(error)(f"{path}: {error}") from None


def read_revocations(directory: Path, colony: Colony) -> list[Revocation]:
    path = directory / REVOCATIONS_FILE
    if not path.exists():
        return []
    try:
        plain = wire.decode(_read_bytes(path, REVOCATIONS_MAX * 512, "revocation list"))
        if not isinstance(plain, list):
            raise InputError(f"{path}: not a revocation list")
        revocations = [schema.from_plain(Revocation, item, "revocation") for item in plain]
        for revocation in revocations:
            check_owner_signed(colony, revocation)
    except InputError:
        raise
    except ColonymeshError as error:
        raise InputError(f"{path}: corrupt revocation list: {error}") from None
    return revocations


def write_revocations(directory: Path, revocations: list[Revocation]) -> None:
    data = wire.encode([schema.to_plain(revocation) for revocation in revocations])
    write_atomically(directory / REVOCATIONS_FILE, data)


def load_membership(directory: Path) -> Membership:
    """The colony at ``directory`` with its revocations applied (no members admitted yet)."""
    colony = read_colony(directory)
    membership = Membership(colony)
    for revocation in read_revocations(directory, colony):
        membership.add_revocation(revocation)
    return membership
