"""The control-channel commands of labelled files: what ``colonymesh fs --label ...`` asks a node.

A node that keeps a chunk store adds ``NodeFiles(chunks, find_servers).commands()``
to its control server (and runs its ``keep_pins_forever``). The node does the work with a :class:`ColonyFiles`
made on first use (finding the colony's servers then), so the bytes of a
``put`` stay on the long-lived node, not on the short-lived CLI. Paths must
be absolute (the node's working folder is not the caller's). Bad arguments
are :class:`InputError`: one line back to the CLI, the node unharmed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from colonymesh.node.colony.client import ColonyClient
from colonymesh.node.colony.files import ColonyFiles
from colonymesh.node.errors import ColonymeshError, InputError
from colonymesh.node.fsnet.service import ChunkService

log = logging.getLogger("colonymesh.node.files")

Command = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
FindServers = Callable[[], Awaitable[list[str]]]


def _text(args: dict[str, Any], key: str, default: str | None = None) -> str:
    value = args.get(key, default)
    if not isinstance(value, str) or (default is None and not value):
        raise InputError(f"a {key} is required")
    return value


def _path(args: dict[str, Any], key: str) -> Path:
    path = Path(_text(args, key))
    if not path.is_absolute():
        raise InputError(f"{key} must be an absolute path, got {str(path)!r}")
    return path


def _flag(args: dict[str, Any], key: str, default: bool = False) -> bool:
    value = args.get(key, default)
    if not isinstance(value, bool):
        raise InputError(f"{key} must be true or false")
    return value


class NodeFiles:
    """A node's :class:`ColonyFiles`, made on first use (the colony's servers found then)."""

    def __init__(self, chunks: ChunkService, find_servers: FindServers) -> None:
        self.chunks = chunks
        self.find_servers = find_servers
        self._files: ColonyFiles | None = None
        self._lock = trio.Lock()

    async def files(self) -> ColonyFiles:
        async with self._lock:
            if self._files is None:
                servers = await self.find_servers()
                self._files = ColonyFiles(ColonyClient(self.chunks.peer, servers), self.chunks)
            return self._files

    async def keep_pins_forever(self, interval_s: float = 60.0) -> None:
        """Keep this node's store pinned as the ledger references (``ColonyFiles.keep_pins``)."""
        while True:
            try:
                files = await self.files()
            except ColonymeshError as error:  # no colony servers yet: try again later
                log.debug("fs: pin keeper waits for the colony: %s", error)
                await trio.sleep(interval_s)
                continue
            await files.keep_pins_forever(interval_s)

    def commands(self) -> dict[str, Command]:
        return files_commands(self.chunks, self.find_servers, self)


def files_commands(
    chunks: ChunkService, find_servers: FindServers, node: NodeFiles | None = None
) -> dict[str, Command]:
    files = (node or NodeFiles(chunks, find_servers)).files

    async def put(args: dict[str, Any]) -> dict[str, Any]:
        path, label = _path(args, "path"), _text(args, "label")
        result = await (await files()).put(path, label, _text(args, "name", ""))
        return {**result, "path": str(path)}

    async def get(args: dict[str, Any]) -> dict[str, Any]:
        return await (await files()).get(
            _text(args, "label"), _text(args, "name"), _path(args, "dest")
        )

    async def fetch(args: dict[str, Any]) -> dict[str, Any]:
        view = args.get("view")
        if not isinstance(view, dict) or not isinstance(view.get("cid"), str):
            raise InputError("a revision view (with its cid) is required")
        return await (await files()).fetch_to(view, _path(args, "dest"))

    async def ls(args: dict[str, Any]) -> dict[str, Any]:
        return await (await files()).ls(_text(args, "label", "/"))

    async def info(args: dict[str, Any]) -> dict[str, Any]:
        return await (await files()).info(_text(args, "label"), _text(args, "name"))

    async def rm(args: dict[str, Any]) -> dict[str, Any]:
        label, name = _text(args, "label"), _text(args, "name")
        await (await files()).remove(label, name)
        return {"label": label, "name": name, "removed": True}

    async def sync(args: dict[str, Any]) -> dict[str, Any]:
        report = await (await files()).sync(
            _text(args, "label"),
            _path(args, "dir"),
            keeplocal=_flag(args, "keeplocal"),
            download=_flag(args, "download", True),
            upload=_flag(args, "upload", True),
        )
        return report.to_json_obj()

    async def labels(args: dict[str, Any]) -> dict[str, Any]:
        return {"labels": await (await files()).labels(_text(args, "label", "/"))}

    async def label_rm(args: dict[str, Any]) -> dict[str, Any]:
        label = _text(args, "label")
        await (await files()).remove_label(label)
        return {"label": label, "removed": True}

    async def snapshot_create(args: dict[str, Any]) -> dict[str, Any]:
        return await (await files()).snapshot_create(_text(args, "label"), _text(args, "name"))

    async def snapshots(args: dict[str, Any]) -> dict[str, Any]:
        return {"snapshots": await (await files()).snapshots(_text(args, "label", "/"))}

    async def snapshot(args: dict[str, Any]) -> dict[str, Any]:
        return await (await files()).snapshot(_text(args, "snapshot"))

    async def snapshot_rm(args: dict[str, Any]) -> dict[str, Any]:
        return {"snapshotid": await (await files()).snapshot_remove(_text(args, "snapshot"))}

    async def keep_pins(args: dict[str, Any]) -> dict[str, Any]:
        return await (await files()).keep_pins()

    return {
        "fs.label_put": put,
        "fs.label_get": get,
        "fs.label_fetch": fetch,
        "fs.label_ls": ls,
        "fs.label_info": info,
        "fs.label_rm": rm,
        "fs.label_sync": sync,
        "fs.labels": labels,
        "fs.labels_rm": label_rm,
        "fs.snapshot_create": snapshot_create,
        "fs.snapshots": snapshots,
        "fs.snapshot": snapshot,
        "fs.snapshot_rm": snapshot_rm,
        "fs.keep_pins": keep_pins,
    }
