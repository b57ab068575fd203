"""The control-channel commands of a node's meta-filesystem: ``fs.put|get|ls|info|stats``.

A node that runs a :class:`ChunkService` adds ``fs_commands(service)`` to its
:class:`~colonymesh.node.control.ControlServer` commands; ``colonymesh fs
put|get|ls|info`` call them. Paths are taken as given (the CLI sends absolute
ones, since the node's working folder is not the caller's). Bad arguments are
`InputError`s: one line back to the CLI, the node unharmed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from colonymesh.fs.cid import Cid
from colonymesh.fs.errors import FsError
from colonymesh.node.errors import InputError
from colonymesh.node.fsnet.service import ChunkService

Command = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def _cid(args: dict[str, Any]) -> Cid:
    text = args.get("cid")
    if not isinstance(text, str):
        raise InputError("a cid is required")
    try:
        return Cid.parse(text)
    except FsError as error:
        raise InputError(f"{text!r} is not a CID: {error}") from None


def _path(args: dict[str, Any], key: str) -> Path:
    text = args.get(key)
    if not isinstance(text, str) or not text:
        raise InputError(f"a {key} is required")
    path = Path(text)
    if not path.is_absolute():
        raise InputError(f"{key} must be an absolute path, got {text!r}")
    return path


def fs_commands(service: ChunkService) -> dict[str, Command]:
    async def put(args: dict[str, Any]) -> dict[str, Any]:
        path = _path(args, "path")
        try:
            cid = await service.put_path(path)
        except FsError as error:
            raise InputError(f"{path}: {error}") from None
        except OSError as error:
            raise InputError(f"{path}: {error.strerror or error}") from None
        return {"cid": cid.encode(), "path": str(path)}

    async def get(args: dict[str, Any]) -> dict[str, Any]:
        cid, dest = _cid(args), _path(args, "dest")
        got = await service.get(cid, dest)
        return {
            "cid": cid.encode(),
            "dest": str(dest),
            "blocks_fetched": got.fetched.blocks_fetched,
            "bytes_fetched": got.fetched.bytes_fetched,
            "seconds": round(got.fetched.seconds, 6),
            "by_peer": got.fetched.by_peer,
            "refetched_corrupt": got.refetched_corrupt,
        }

    async def ls(args: dict[str, Any]) -> dict[str, Any]:
        cid = _cid(args)
        return {"cid": cid.encode(), "entries": await service.ls(cid)}

    async def info(args: dict[str, Any]) -> dict[str, Any]:
        return await service.info(_cid(args))

    async def stats(args: dict[str, Any]) -> dict[str, Any]:
        return service.statistics()

    return {"fs.put": put, "fs.get": get, "fs.ls": ls, "fs.info": info, "fs.stats": stats}
