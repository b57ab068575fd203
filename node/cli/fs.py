"""``colonymesh fs ...``: the meta-filesystem from the command line.

``fs cid PATH`` needs no running node: it prints the IPFS CIDv1 of a local
file or folder, exactly as ``ipfs add -r --hidden --cid-version=1
--raw-leaves`` would.

Everything else asks the running node (found from ``--state-dir`` or
``--control``) over its control channel, and the node does the work, so the
bytes a ``put`` imports stay on the node, which serves them to the colony.

By content id (``colonymesh.node.fsnet``): ``put PATH`` imports and pins a
file or folder and prints its CID, ``get CID DEST`` fetches it from the peers
that hold it (in parallel, every block verified), ``ls CID`` lists a
directory, ``info CID`` describes one.

By label, ColonyOS's CFS (``colonymesh.node.colony.files``; metadata in the
ledger, bytes on peers)::

    fs put FILE --label /a [--name N]      a new revision of N (default: FILE's name)
    fs get --label /a NAME [-o PATH]       the latest revision (or --revision CID), atomically
    fs ls /a                               files under /a (and its sub-labels)
    fs info --label /a NAME                every revision of a file
    fs rm --label /a NAME
    fs sync -l /a -d DIR [--keeplocal]     make DIR and /a agree (both ways)
    fs label ls [/a] | rm /a
    fs snapshot create --label /a --name N | ls | get ID -d DIR | rm ID

Transfers show a progress bar (rich) when stdout is a terminal and ``--json``
is not given; ``--json`` prints one JSON document.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from colonymesh.fs import cid_of_path
from colonymesh.fs.errors import FsError
from colonymesh.node.cli.output import add_json_flag, emit
from colonymesh.node.errors import InputError

Call = Callable[[], dict[str, Any]]


def register(commands: Any) -> None:
    fs = commands.add_parser("fs", help="the meta-filesystem")
    sub = fs.add_subparsers(dest="fs_command", metavar="ACTION", required=True)
    cid = sub.add_parser("cid", help="print the content id (IPFS CIDv1) of a local file or folder")
    cid.add_argument("path", type=Path)
    add_json_flag(cid)
    cid.set_defaults(handler=_cid)

    put = sub.add_parser(
        "put", help="import a file or folder (pinned here); with --label, as a labelled file"
    )
    put.add_argument("path", type=Path)
    _add_label(put)
    put.add_argument("--name", default="", help="the file's name under the label")
    _add_node_target(put)
    put.set_defaults(handler=_put)

    get = sub.add_parser("get", help="fetch a CID into DEST, or with --label the file NAME")
    get.add_argument("target", metavar="CID|NAME")
    get.add_argument("dest", type=Path, nargs="?")
    _add_label(get)
    get.add_argument("-o", "--output", type=Path, help="where to write (default: ./NAME)")
    get.add_argument("--revision", default="", help="with --label: the CID of an older revision")
    _add_node_target(get)
    get.set_defaults(handler=_get)

    ls = sub.add_parser("ls", help="files under a label (/a), or the entries of a directory CID")
    ls.add_argument("target", metavar="LABEL|CID", nargs="?", default="")
    _add_label(ls)
    _add_node_target(ls)
    ls.set_defaults(handler=_ls)

    info = sub.add_parser("info", help="describe a CID, or with --label a file's revisions")
    info.add_argument("target", metavar="CID|NAME")
    _add_label(info)
    _add_node_target(info)
    info.set_defaults(handler=_info)

    rm = sub.add_parser("rm", help="remove a labelled file (all its revisions)")
    rm.add_argument("name")
    _add_label(rm, required=True)
    _add_node_target(rm)
    rm.set_defaults(handler=_rm)

    sync = sub.add_parser("sync", help="make a local folder and a label agree")
    _add_label(sync, required=True)
    sync.add_argument("-d", "--dir", type=Path, required=True)
    sync.add_argument("--keeplocal", action="store_true", help="on conflict, the local copy wins")
    way = sync.add_mutually_exclusive_group()
    way.add_argument("--download-only", action="store_true")
    way.add_argument("--upload-only", action="store_true")
    _add_node_target(sync)
    sync.set_defaults(handler=_sync)

    label = sub.add_parser("label", help="labels: ls, rm")
    lsub = label.add_subparsers(dest="label_command", metavar="ACTION", required=True)
    label_ls = lsub.add_parser("ls", help="labels (under LABEL) with their file counts")
    label_ls.add_argument("label", nargs="?", default="/")
    _add_node_target(label_ls)
    label_ls.set_defaults(handler=_label_ls)
    label_rm = lsub.add_parser("rm", help="remove every file under LABEL and its sub-labels")
    label_rm.add_argument("label")
    _add_node_target(label_rm)
    label_rm.set_defaults(handler=_label_rm)

    snapshot = sub.add_parser("snapshot", help="snapshots: create, ls, get, rm")
    ssub = snapshot.add_subparsers(dest="snapshot_command", metavar="ACTION", required=True)
    create = ssub.add_parser("create", help="pin the latest revision of everything under LABEL")
    _add_label(create, required=True)
    create.add_argument("--name", required=True)
    _add_node_target(create)
    create.set_defaults(handler=_snapshot_create)
    snapshot_ls = ssub.add_parser("ls", help="snapshots (of LABEL)")
    _add_label(snapshot_ls)
    _add_node_target(snapshot_ls)
    snapshot_ls.set_defaults(handler=_snapshot_ls)
    snapshot_get = ssub.add_parser("get", help="download a snapshot (id or name) into DIR")
    snapshot_get.add_argument("snapshot")
    snapshot_get.add_argument("-d", "--dir", type=Path, help="download into DIR")
    _add_node_target(snapshot_get)
    snapshot_get.set_defaults(handler=_snapshot_get)
    snapshot_rm = ssub.add_parser("rm", help="remove a snapshot (id or name)")
    snapshot_rm.add_argument("snapshot")
    _add_node_target(snapshot_rm)
    snapshot_rm.set_defaults(handler=_snapshot_rm)


def _add_label(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    parser.add_argument("-l", "--label", required=required, help="a path-like label, e.g. /in")


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


def _show_progress(args: argparse.Namespace) -> bool:
    return not getattr(args, "json", False) and sys.stdout.isatty()


def _transfer(
    args: argparse.Namespace, title: str, items: list[tuple[str, int | None, Call]]
) -> list[dict[str, Any]]:
    """Run the calls in order; on a terminal, a progress bar advanced by each one's bytes."""
    if not _show_progress(args):
        return [call() for _, _, call in items]
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TransferSpeedColumn,
    )

    sizes = [size for _, size, _ in items]
    total = sum(s for s in sizes if s is not None) if None not in sizes else None
    results = []
    columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeElapsedColumn())
    with Progress(TextColumn("{task.description}"), *columns) as progress:
        task = progress.add_task(title, total=total)
        for name, size, call in items:
            progress.update(task, description=f"{title} {name}")
            results.append(call())
            progress.advance(task, size or 0)
        progress.update(task, description=title)
    return results


def _absolute(path: Path) -> str:
    return str(path.expanduser().absolute())


# --- put / get / ls / info ------------------------------------------------------------


def _put(args: argparse.Namespace) -> int:
    path: Path = args.path
    if not path.exists() and not path.is_symlink():
        raise InputError(f"{path}: no such file or folder")
    if args.label is None:
        result = _node_call(args, "fs.put", {"path": _absolute(path)})
        emit(args, result, [result["cid"]])
        return 0
    if not path.is_file():
        raise InputError(
            f"{path}: a labelled file must be a regular file (use fs sync for folders)"
        )
    arguments = {"path": _absolute(path), "label": args.label, "name": args.name}
    size = path.stat().st_size
    [result] = _transfer(
        args, "put", [(path.name, size, lambda: _node_call(args, "fs.label_put", arguments))]
    )
    emit(args, result, [f"{result['label']}/{result['name']}  {result['cid']}  {result['size']}"])
    return 0


def _get(args: argparse.Namespace) -> int:
    if args.label is None:
        dest: Path | None = args.dest or args.output
        if dest is None:
            raise InputError("fs get CID needs a destination (DEST or -o PATH)")
        if dest.exists() or dest.is_symlink():
            raise InputError(f"{dest}: already exists")
        result = _node_call(args, "fs.get", {"cid": args.target, "dest": _absolute(dest)})
        line = (
            f"{result['cid']} -> {result['dest']}: {result['blocks_fetched']} blocks "
            f"({result['bytes_fetched']} bytes) fetched from {len(result['by_peer'])} peers"
        )
        emit(args, result, [line])
        return 0
    name = args.target
    target: Path = args.output or args.dest or Path(name)
    if target.is_dir():
        target = target / name
    info = _node_call(args, "fs.label_info", {"label": args.label, "name": name})
    revisions = info["revisions"]
    chosen = [r for r in revisions if r["cid"] == args.revision] if args.revision else revisions
    if not chosen:
        raise InputError(f"{args.label}/{name} has no revision {args.revision}")
    view = chosen[-1]
    arguments = {"view": view, "dest": _absolute(target)}
    [result] = _transfer(
        args, "get", [(name, view["size"], lambda: _node_call(args, "fs.label_fetch", arguments))]
    )
    emit(args, result, [f"{args.label}/{name} ({result['cid']}) -> {result['dest']}"])
    return 0


def _is_label(text: str) -> bool:
    return text.startswith("/")


def _ls(args: argparse.Namespace) -> int:
    label = args.label or (args.target if not args.target or _is_label(args.target) else None)
    if label is not None:
        result = _node_call(args, "fs.label_ls", {"label": label or "/"})
        lines = [
            f"{f['cid']}  {f['size']:>12}  r{f['revisions']:<3}  {f['label'].rstrip('/')}/{f['name']}"
            for f in result["files"]
        ]
        emit(args, result, lines)
        return 0
    result = _node_call(args, "fs.ls", {"cid": args.target})
    lines = [
        f"{e['cid']}  {e['size'] if e['size'] is not None else '-':>12}  {e['name']}"
        for e in result["entries"]
    ]
    emit(args, result, lines)
    return 0


def _info(args: argparse.Namespace) -> int:
    if args.label is None:
        result = _node_call(args, "fs.info", {"cid": args.target})
        emit(args, result, [f"{key}: {result[key]}" for key in sorted(result)])
        return 0
    result = _node_call(args, "fs.label_info", {"label": args.label, "name": args.target})
    lines = [
        f"{r['cid']}  {r['size']:>12}  {_when(r['added_ms'])}  {r['adder']}"
        for r in result["revisions"]
    ]
    emit(args, result, lines)
    return 0


def _when(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000))


def _rm(args: argparse.Namespace) -> int:
    result = _node_call(args, "fs.label_rm", {"label": args.label, "name": args.name})
    emit(args, result, [f"removed {args.label}/{args.name}"])
    return 0


def _sync(args: argparse.Namespace) -> int:
    arguments = {
        "label": args.label,
        "dir": _absolute(args.dir),
        "keeplocal": args.keeplocal,
        "download": not args.upload_only,
        "upload": not args.download_only,
    }
    [result] = _transfer(
        args, "sync", [(args.label, None, lambda: _node_call(args, "fs.label_sync", arguments))]
    )
    lines = [f"down {path}" for path in result["downloaded"]]
    lines += [f"up   {path}" for path in result["uploaded"]]
    lines.append(
        f"{len(result['downloaded'])} downloaded, {len(result['uploaded'])} uploaded, "
        f"{len(result['conflicts'])} conflicts, {result['unchanged']} unchanged"
    )
    emit(args, result, lines)
    return 0


# --- labels and snapshots ------------------------------------------------------------------


def _label_ls(args: argparse.Namespace) -> int:
    result = _node_call(args, "fs.labels", {"label": args.label})
    emit(args, result, [f"{item['label']}  ({item['files']} files)" for item in result["labels"]])
    return 0


def _label_rm(args: argparse.Namespace) -> int:
    result = _node_call(args, "fs.labels_rm", {"label": args.label})
    emit(args, result, [f"removed {args.label}"])
    return 0


def _snapshot_create(args: argparse.Namespace) -> int:
    result = _node_call(args, "fs.snapshot_create", {"label": args.label, "name": args.name})
    emit(args, result, [f"{result['snapshotid']}  {result['name']}  {result['file_count']} files"])
    return 0


def _snapshot_ls(args: argparse.Namespace) -> int:
    result = _node_call(args, "fs.snapshots", {"label": args.label or "/"})
    lines = [
        f"{s['snapshotid']}  {s['name']}  {s['label']}  {s['file_count']} files  {_when(s['created_ms'])}"
        for s in result["snapshots"]
    ]
    emit(args, result, lines)
    return 0


def _snapshot_get(args: argparse.Namespace) -> int:
    from colonymesh.node.colony.files import relative_path

    snapshot = _node_call(args, "fs.snapshot", {"snapshot": args.snapshot})
    if args.dir is None:
        emit(
            args,
            snapshot,
            [f"{f['cid']}  {f['size']:>12}  {f['label']}/{f['name']}" for f in snapshot["files"]],
        )
        return 0
    items: list[tuple[str, int | None, Call]] = []
    written = []
    for view in snapshot["files"]:
        relative = relative_path(snapshot["label"], view["label"], view["name"])
        arguments = {"view": view, "dest": _absolute(args.dir / relative)}
        items.append((relative, view["size"], _bind(args, "fs.label_fetch", arguments)))
        written.append(relative)
    _transfer(args, "snapshot", items)
    result = {"snapshotid": snapshot["snapshotid"], "dir": _absolute(args.dir), "files": written}
    emit(args, result, [f"{len(written)} files -> {result['dir']}"])
    return 0


def _bind(args: argparse.Namespace, command: str, arguments: dict[str, Any]) -> Call:
    return lambda: _node_call(args, command, arguments)


def _snapshot_rm(args: argparse.Namespace) -> int:
    result = _node_call(args, "fs.snapshot_rm", {"snapshot": args.snapshot})
    emit(args, result, [f"removed snapshot {result['snapshotid']}"])
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
