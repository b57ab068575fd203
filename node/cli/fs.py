"""``colonymesh fs ...``: the meta-filesystem from the command line.

``fs cid PATH`` needs no running node: it prints the IPFS CIDv1 of a local
file or folder, exactly as ``ipfs add -r --hidden --cid-version=1
--raw-leaves`` would.

``fs put|get|ls|info`` move data through the colony: they ask the running
node (found from ``--state-dir`` or ``--control``) over its control channel,
and the node's chunk service does the work (``colonymesh.node.fsnet``):
``put`` imports and pins a file or folder, ``get`` fetches a CID from the
peers that hold it (in parallel, every block verified) and writes it out,
``ls`` lists a directory, ``info`` describes a CID.
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

    put = sub.add_parser("put", help="import a file or folder into the colony (pinned here)")
    put.add_argument("path", type=Path)
    _add_node_target(put)
    put.set_defaults(handler=_put)
    get = sub.add_parser("get", help="fetch a CID from the colony into DEST")
    get.add_argument("cid")
    get.add_argument("dest", type=Path)
    _add_node_target(get)
    get.set_defaults(handler=_get)
    ls = sub.add_parser("ls", help="list the entries of a directory CID")
    ls.add_argument("cid")
    _add_node_target(ls)
    ls.set_defaults(handler=_ls)
    info = sub.add_parser("info", help="describe a CID (type, size, links)")
    info.add_argument("cid")
    _add_node_target(info)
    info.set_defaults(handler=_info)


def _add_node_target(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--state-dir", type=Path, help="the running node's state folder")
    group.add_argument("--control", help="control address, e.g. ipc:///path/control.sock")
    parser.add_argument(
        "--timeout", type=float, default=35.0, help="seconds to wait for the node (default 35)"
    )
    add_json_flag(parser)


def _node_call(args: argparse.Namespace, command: str, arguments: dict[str, Any]) -> dict[str, Any]:
    from colonymesh.node.config import control_address_of
    from colonymesh.node.control import call

    address = args.control or control_address_of(args.state_dir or Path("state"))
    return call(address, command, arguments, timeout_s=args.timeout)


def _put(args: argparse.Namespace) -> int:
    path: Path = args.path
    if not path.exists() and not path.is_symlink():
        raise InputError(f"{path}: no such file or folder")
    result = _node_call(args, "fs.put", {"path": str(path.absolute())})
    emit(args, result, [result["cid"]])
    return 0


def _get(args: argparse.Namespace) -> int:
    dest: Path = args.dest
    if dest.exists() or dest.is_symlink():
        raise InputError(f"{dest}: already exists")
    result = _node_call(args, "fs.get", {"cid": args.cid, "dest": str(dest.absolute())})
    line = (
        f"{result['cid']} -> {result['dest']}: {result['blocks_fetched']} blocks "
        f"({result['bytes_fetched']} bytes) fetched from {len(result['by_peer'])} peers"
    )
    emit(args, result, [line])
    return 0


def _ls(args: argparse.Namespace) -> int:
    result = _node_call(args, "fs.ls", {"cid": args.cid})
    lines = [
        f"{e['cid']}  {e['size'] if e['size'] is not None else '-':>12}  {e['name']}"
        for e in result["entries"]
    ]
    emit(args, result, lines)
    return 0


def _info(args: argparse.Namespace) -> int:
    result = _node_call(args, "fs.info", {"cid": args.cid})
    emit(args, result, [f"{key}: {result[key]}" for key in sorted(result)])
    return 0


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
