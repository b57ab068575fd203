"""A client profile: who the CLI is in which colony, and where to find it.

A profile is a folder holding ``member.key`` (0600), ``member.cert``,
``colony.cbor`` (and optionally ``revocations.cbor``) and ``bootstrap``, one
multiaddr per line. ``--profile DIR`` or ``COLONYMESH_PROFILE`` names it;
``colonymesh dev`` writes one for its local colony.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from colonymesh.node.certs import Certificate, encode_record
from colonymesh.node.colonyfiles import COLONY_FILE, load_membership, read_record, write_atomically
from colonymesh.node.errors import InputError
from colonymesh.node.identity import KeyPair, read_key_file, write_key_file

if TYPE_CHECKING:
    from colonymesh.node.sdk import ColonySession

KEY_FILE = "member.key"
CERT_FILE = "member.cert"
BOOTSTRAP_FILE = "bootstrap"
ENV = "COLONYMESH_PROFILE"


@dataclass(frozen=True, slots=True)
class Profile:
    directory: Path
    keys: KeyPair
    certificate: Certificate
    bootstrap: tuple[str, ...]


def add_profile_option(parser: Any) -> None:
    parser.add_argument("--profile", type=Path, help=f"client profile folder (default: ${ENV})")


def load_profile(args: argparse.Namespace) -> Profile:
    directory = getattr(args, "profile", None) or (
        Path(os.environ[ENV]) if os.environ.get(ENV) else None
    )
    if directory is None:
        raise InputError(
            f"no client profile: pass --profile DIR or set {ENV} (colonymesh dev writes one)"
        )
    if not (directory / COLONY_FILE).is_file():
        raise InputError(f"{directory}: not a client profile (no {COLONY_FILE})")
    bootstrap_path = directory / BOOTSTRAP_FILE
    try:
        lines = bootstrap_path.read_text().split()
    except OSError as error:
        raise InputError(f"{bootstrap_path}: cannot read: {error.strerror}") from None
    if not lines:
        raise InputError(f"{bootstrap_path}: lists no bootstrap address")
    return Profile(
        directory,
        read_key_file(directory / KEY_FILE),
        read_record(directory / CERT_FILE, Certificate),
        tuple(lines),
    )


def write_profile(
    directory: Path,
    colony_record: bytes,
    keys: KeyPair,
    certificate: Certificate,
    bootstrap: list[str],
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    write_atomically(directory / COLONY_FILE, colony_record)
    write_key_file(directory / KEY_FILE, keys, overwrite=True)
    write_atomically(directory / CERT_FILE, encode_record(certificate))
    write_atomically(directory / BOOTSTRAP_FILE, ("\n".join(bootstrap) + "\n").encode())


@asynccontextmanager
async def session(args: argparse.Namespace) -> AsyncIterator[ColonySession]:
    from colonymesh.node.sdk import connect

    profile = load_profile(args)
    async with connect(
        key=profile.keys,
        certificate=profile.certificate,
        colony=load_membership(profile.directory),
        bootstrap=profile.bootstrap,
    ) as opened:
        yield opened
