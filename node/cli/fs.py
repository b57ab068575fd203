"""``colonymesh fs ...``: the meta-filesystem from the command line.

``fs cid PATH`` needs no running node: it prints the IPFS CIDv1 of a local
file or folder, exactly as ``ipfs add -r --hidden --cid-version=1
--raw-leaves`` would. The commands that move data through the colony arrive
with the fs distribution issue.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from colonymesh.fs import cid_of_path
from colonymesh.fs.errors import FsError
from colonymesh.node.cli.output import add_json_flag, emit
from colonymesh.node.errors import InputError


def register(commands: Any) -> None:
    fs = commands.add_parser("fs", help="the meta-filesystem")
    sub = fs.add_subparsers(dest="fs_command", metavar="ACTION", required=True)
    cid = sub.add_parser("cid", help="print the content id (IPFS CIDv1) of a local file or folder")
    cid.add_argument("path", type=Path)
    add_json_flag(cid)
    cid.set_defaults(handler=_cid)


def _cid(args: argparse.Namespace) -> int:
    path: Path = args.path
    if not path.exists() and not path.is_symlink():
        raise InputError(f"{path}: no such file or folder")
    started = time.perf_counter()
    try:
        cid = cid_of_path(path)
    except FsError as error:
        raise InputError(f"{path}: {error}") from None
    except OSError as error:
        raise InputError(f"{path}: {error.strerror or error}") from None
    seconds = time.perf_counter() - started
    emit(args, {"path": str(path), "cid": cid, "seconds": round(seconds, 6)}, [cid])
    return 0
