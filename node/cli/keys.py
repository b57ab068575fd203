"""``colonymesh keys new|show``: member identities."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from colonymesh.node.cli.output import add_json_flag, emit
from colonymesh.node.identity import (
    KeyPair,
    peer_id_of,
    read_public_key,
    write_key_file,
    write_public_key_file,
)


def register(commands: Any) -> None:
    keys = commands.add_parser("keys", help="create and inspect Ed25519 identities")
    sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)

    new = sub.add_parser("new", help="create a key pair (secret file 0600, and FILE.pub)")
    new.add_argument("--out", "-o", type=Path, required=True, help="secret key file to write")
    new.add_argument("--force", action="store_true", help="overwrite an existing key file")
    add_json_flag(new)
    new.set_defaults(handler=_new)

    show = sub.add_parser("show", help="print the public key and peer id of a key file")
    show.add_argument("key", help="key file, public key file, peer id or hex public key")
    add_json_flag(show)
    show.set_defaults(handler=_show)


def _describe(public_key: bytes) -> dict[str, Any]:
    return {"public_key": public_key.hex(), "peer_id": peer_id_of(public_key)}


def _new(args: argparse.Namespace) -> int:
    keys = KeyPair.generate()
    write_key_file(args.out, keys, overwrite=args.force)
    public_path = args.out.with_name(args.out.name + ".pub")
    write_public_key_file(public_path, keys.public_key)
    document = {
        **_describe(keys.public_key),
        "key_file": str(args.out),
        "public_file": str(public_path),
    }
    emit(
        args,
        document,
        [
            f"peer id:    {keys.peer_id}",
            f"public key: {keys.public_key.hex()}",
            f"secret key written to {args.out} (mode 0600); share {public_path}",
        ],
    )
    return 0


def _show(args: argparse.Namespace) -> int:
    public_key = read_public_key(args.key)
    document = _describe(public_key)
    emit(
        args,
        document,
        [f"peer id:    {document['peer_id']}", f"public key: {document['public_key']}"],
    )
    return 0
