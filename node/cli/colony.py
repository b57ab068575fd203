"""``colonymesh colony create|admit|revoke|show``: the owner's side of membership."""

from __future__ import annotations

import argparse
import datetime
import secrets
import time
from pathlib import Path
from typing import Any

from colonymesh.node.certs import (
    Capabilities,
    Certificate,
    Colony,
    Gpu,
    Revocation,
    Role,
    check_owner_signed,
    create_colony,
    encode_record,
    issue_certificate,
    revoke,
)
from colonymesh.node.cli.output import add_json_flag, emit
from colonymesh.node.colonyfiles import (
    COLONY_FILE,
    MEMBERS_DIR,
    OWNER_KEY_FILE,
    REVOCATIONS_FILE,
    colony_dir_of,
    load_membership,
    read_colony,
    read_record,
    read_revocations,
    write_atomically,
    write_revocations,
)
from colonymesh.node.errors import CertificateError, InputError
from colonymesh.node.identity import KeyPair, read_key_file, read_public_key, write_key_file
from colonymesh.node.spec.quantity import (
    QuantityError,
    format_bytes,
    format_millicores,
    parse_bytes,
    parse_millicores,
)

ROLE_NAMES = [role.value for role in Role]


def register(commands: Any) -> None:
    colony = commands.add_parser("colony", help="create a colony, admit and revoke members")
    sub = colony.add_subparsers(dest="colony_command", metavar="ACTION", required=True)

    create = sub.add_parser("create", help="create a colony folder with a new owner key")
    create.add_argument("--dir", type=Path, required=True, help="colony folder to create")
    create.add_argument("--name", required=True, help="human name of the colony")
    create.add_argument("--owner-key", type=Path, help="use this existing owner key file")
    add_json_flag(create)
    create.set_defaults(handler=_create)

    admit = sub.add_parser("admit", help="issue a membership certificate for a public key")
    admit.add_argument("--dir", type=Path, required=True, help="the colony folder")
    admit.add_argument("--key", required=True, help="member's public key file, peer id or hex key")
    admit.add_argument("--name", required=True, help="member name (unique in the colony)")
    admit.add_argument("--roles", required=True, help=f"comma-separated: {','.join(ROLE_NAMES)}")
    admit.add_argument("--executor-type", default="", help="executor type, for executors")
    admit.add_argument("--cpu", default="0", help="cpu the member offers, e.g. 4 or 500m")
    admit.add_argument("--mem", default="0", help="memory, e.g. 8Gi")
    admit.add_argument("--storage", default="0", help="storage, e.g. 100Gi")
    admit.add_argument("--gpu-name", default="", help="gpu model, e.g. a100")
    admit.add_argument("--gpu-count", type=int, default=0)
    admit.add_argument("--gpu-mem", default="0", help="memory per gpu, e.g. 40Gi")
    admit.add_argument("--location", default="", help="location name")
    admit.add_argument("--days", type=float, default=365.0, help="validity in days (default 365)")
    admit.add_argument("--out", type=Path, help="where to write (default DIR/members/NAME.cert)")
    add_json_flag(admit)
    admit.set_defaults(handler=_admit)

    revoke_parser = sub.add_parser("revoke", help="revoke a member's certificate")
    revoke_parser.add_argument("--dir", type=Path, required=True, help="the colony folder")
    revoke_parser.add_argument("certificate", type=Path, help="the certificate file to revoke")
    revoke_parser.add_argument("--reason", default="", help="why (recorded in the revocation)")
    add_json_flag(revoke_parser)
    revoke_parser.set_defaults(handler=_revoke)

    status = sub.add_parser(
        "status", help="a running colony: servers and leader, executors, counts"
    )
    from colonymesh.node.cli.work import register_status

    register_status(status)

    show = sub.add_parser("show", help="inspect a colony folder or certificate, and verify it")
    show.add_argument("path", type=Path, help="colony folder, colony.cbor or a .cert file")
    show.add_argument("--colony", type=Path, help="colony folder to verify against")
    add_json_flag(show)
    show.set_defaults(handler=_show)


def _now() -> int:
    return int(time.time())


def _iso(seconds: int) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def colony_document(colony: Colony) -> dict[str, Any]:
    return {
        "colony_id": colony.colony_id.hex(),
        "name": colony.name,
        "owner_key": colony.owner_key.hex(),
        "created": _iso(colony.created),
    }


def certificate_document(certificate: Certificate) -> dict[str, Any]:
    capabilities = certificate.capabilities
    return {
        "name": certificate.name,
        "colony_id": certificate.colony_id.hex(),
        "peer_id": certificate.peer_id,
        "public_key": certificate.member_key.hex(),
        "roles": [role.value for role in certificate.roles],
        "executor_type": certificate.executor_type,
        "capabilities": {
            "cpu_millicores": capabilities.cpu_millicores,
            "mem_bytes": capabilities.mem_bytes,
            "storage_bytes": capabilities.storage_bytes,
            "gpu": {
                "name": capabilities.gpu.name,
                "mem_bytes": capabilities.gpu.mem_bytes,
                "count": capabilities.gpu.count,
            },
        },
        "location": certificate.location,
        "not_before": _iso(certificate.not_before),
        "not_after": _iso(certificate.not_after),
        "serial": certificate.serial,
    }


def _create(args: argparse.Namespace) -> int:
    directory: Path = args.dir
    if directory.exists() and any(directory.iterdir()):
        raise InputError(f"{directory}: exists and is not empty")
    owner = read_key_file(args.owner_key) if args.owner_key is not None else KeyPair.generate()
    (directory / MEMBERS_DIR).mkdir(parents=True, exist_ok=True)
    if args.owner_key is None:
        write_key_file(directory / OWNER_KEY_FILE, owner)
    colony = create_colony(owner, args.name, _now())
    write_atomically(directory / COLONY_FILE, encode_record(colony))
    write_revocations(directory, [])
    document = {**colony_document(colony), "dir": str(directory)}
    emit(
        args,
        document,
        [
            f"colony {colony.name!r} created in {directory}",
            f"colony id: {colony.colony_id.hex()}",
            f"owner key: {args.owner_key or directory / OWNER_KEY_FILE} (keep it secret, keep it safe)",
        ],
    )
    return 0


def _owner_key(directory: Path) -> KeyPair:
    return read_key_file(directory / OWNER_KEY_FILE)


def _parse_roles(text: str) -> list[Role]:
    roles = []
    for name in (part.strip() for part in text.split(",")):
        if name not in ROLE_NAMES:
            raise InputError(
                f"--roles: unknown role {name!r} (choose from {', '.join(ROLE_NAMES)})"
            )
        roles.append(Role(name))
    return roles


def _capabilities(args: argparse.Namespace) -> Capabilities:
    def quantity(option: str, parse: Any, text: str) -> int:
        try:
            return int(parse(text))
        except QuantityError as error:
            raise InputError(f"{option}: {error}") from None

    if args.gpu_count < 0:
        raise InputError("--gpu-count: must not be negative")
    return Capabilities(
        cpu_millicores=quantity("--cpu", parse_millicores, args.cpu),
        mem_bytes=quantity("--mem", parse_bytes, args.mem),
        storage_bytes=quantity("--storage", parse_bytes, args.storage),
        gpu=Gpu(args.gpu_name, quantity("--gpu-mem", parse_bytes, args.gpu_mem), args.gpu_count),
    )


def _admit(args: argparse.Namespace) -> int:
    directory: Path = args.dir
    colony = read_colony(directory)
    owner = _owner_key(directory)
    if not args.days > 0:
        raise InputError("--days: must be positive")
    now = _now()
    certificate = issue_certificate(
        owner,
        colony,
        read_public_key(args.key),
        name=args.name,
        roles=_parse_roles(args.roles),
        not_before=now - 300,  # tolerate modest clock skew between owner and members
        not_after=now + int(args.days * 86400),
        serial=secrets.randbits(63),
        executor_type=args.executor_type,
        capabilities=_capabilities(args),
        location=args.location,
    )
    out: Path = args.out or directory / MEMBERS_DIR / f"{args.name}.cert"
    if out.exists():
        raise InputError(f"{out}: already exists (a member name must be unique)")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(out, encode_record(certificate))
    document = {**certificate_document(certificate), "file": str(out)}
    emit(
        args,
        document,
        [
            f"admitted {certificate.name!r} ({', '.join(document['roles'])}) as {certificate.peer_id}",
            f"certificate {certificate.serial} written to {out}, valid until {document['not_after']}",
        ],
    )
    return 0


def _revoke(args: argparse.Namespace) -> int:
    directory: Path = args.dir
    colony = read_colony(directory)
    owner = _owner_key(directory)
    certificate = read_record(args.certificate, Certificate)
    try:
        check_owner_signed(colony, certificate)
    except CertificateError as error:
        raise type(error)(f"{args.certificate}: {error}") from None
    revocations = read_revocations(directory, colony)
    if any(revocation.serial == certificate.serial for revocation in revocations):
        raise InputError(f"{args.certificate}: certificate {certificate.serial} is already revoked")
    revocation = revoke(owner, certificate, now=_now(), reason=args.reason)
    write_revocations(directory, [*revocations, revocation])
    document = {
        "revoked": certificate_document(certificate),
        "reason": args.reason,
        "revocations": len(revocations) + 1,
    }
    emit(
        args,
        document,
        [
            f"revoked {certificate.name!r} (certificate {certificate.serial});"
            f" {directory / REVOCATIONS_FILE} now lists {len(revocations) + 1}",
            "peers refuse it once they hold the new revocation list",
        ],
    )
    return 0


def _show(args: argparse.Namespace) -> int:
    path: Path = args.path
    if path.is_dir() or path.name == COLONY_FILE:
        directory = path if path.is_dir() else path.parent
        colony = read_colony(directory)
        revocations = read_revocations(directory, colony)
        members = sorted((directory / MEMBERS_DIR).glob("*.cert"))
        document = {
            **colony_document(colony),
            "revocations": len(revocations),
            "certificates": [m.name for m in members],
            "valid": True,
        }
        emit(
            args,
            document,
            [
                f"colony {colony.name!r}  id {colony.colony_id.hex()}",
                f"owner {colony.owner_key.hex()}  created {document['created']}",
                f"{len(members)} certificates issued, {len(revocations)} revoked",
            ],
        )
        return 0
    certificate = read_record(path, Certificate)
    directory = args.colony or colony_dir_of(path)
    membership = load_membership(directory)
    try:
        membership.check(certificate, time.time())
    except Exception as error:
        raise type(error)(f"{path}: {error}") from None
    document = {**certificate_document(certificate), "valid": True}
    caps = document["capabilities"]
    emit(
        args,
        document,
        [
            f"{certificate.name}: valid member of colony {membership.colony.name!r}",
            f"  peer id    {certificate.peer_id}",
            f"  roles      {', '.join(document['roles'])}"
            + (
                f"  (executor type {certificate.executor_type})"
                if certificate.executor_type
                else ""
            ),
            f"  offers     cpu {format_millicores(caps['cpu_millicores'])}, "
            f"mem {format_bytes(caps['mem_bytes'])}, storage {format_bytes(caps['storage_bytes'])}, "
            f"gpu {caps['gpu']['count']}x{caps['gpu']['name'] or '-'}",
            f"  valid      {document['not_before']} .. {document['not_after']}  serial {certificate.serial}",
        ],
    )
    return 0


__all__ = ["Revocation", "register"]
