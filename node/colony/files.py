"""`ColonyFiles`: ColonyOS's CFS on colonymesh -- metadata in the ledger, bytes on peers.

A member's handle on labelled files, composed of its :class:`ColonyClient`
(the ledger: labels, revisions, snapshots; ``node/ledger/fsmeta.py``) and its
:class:`ChunkService` (the bytes: a local chunk store, fetched from and served
to peers; ``node/fsnet``).

* ``put``: import a file into the local store (pinned at once), then commit
  the revision to the ledger, naming where this peer listens as a first
  provider. The bytes stay with this peer (and whoever fetches them).
* ``get``: read the latest revision from the ledger, fetch its blocks from
  providers (the revision's adder first, then whoever the chunk service's
  lookup finds), verify them, write the file to a temporary name next to the
  destination and rename it into place (atomic: a reader sees the old file
  or the new one, never half of one).
* ``sync``: make a local folder and a label agree (``fs/syncplan.py``):
  sub-folders map to sub-labels (``dir/a/b/f`` <-> label ``L/a/b``, name ``f``).
* snapshots: create, list, read, download into a folder, remove.
* ``keep_pins``: pin in the local store every CID the ledger references (a
  file's kept revisions, a snapshot's files) that this store holds, and unpin
  those no longer referenced, so the store's GC keeps exactly what the
  colony still names. Every operation that adds or drops references calls it.

Store pins owned here are labelled ``cfs:<cid>``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from colonymesh.fs.cid import Cid
from colonymesh.fs.errors import FsError, StoreError
from colonymesh.fs.local import import_file, import_path
from colonymesh.fs.syncplan import SyncPlan, check_relpath, plan_sync
from colonymesh.node.colony.client import ColonyClient, CommandRefused
from colonymesh.node.colony.protocol import FsQuery
from colonymesh.node.errors import ColonymeshError, InputError
from colonymesh.node.fsnet.fetch import Providers
from colonymesh.node.fsnet.service import ChunkService
from colonymesh.node.ledger.commands import (
    AddFile,
    CreateSnapshot,
    RemoveFile,
    RemoveLabel,
    RemoveSnapshot,
)
from colonymesh.node.ledger.fsmeta import FsMetaRefused, check_label, check_name

log = logging.getLogger("colonymesh.node.files")

PIN_PREFIX = "cfs:"
PART_SUFFIX = ".cm-part"


class FileNotInColony(ColonymeshError):
    """The label, file or snapshot named does not exist in the ledger."""


@dataclass(slots=True)
class SyncReport:
    label: str
    dir: str
    downloaded: list[str] = field(default_factory=list)
    uploaded: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    unchanged: int = 0

    def to_json_obj(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "dir": self.dir,
            "downloaded": self.downloaded,
            "uploaded": self.uploaded,
            "conflicts": self.conflicts,
            "unchanged": self.unchanged,
        }


def _label(label: str) -> str:
    try:
        return check_label(label)
    except FsMetaRefused as error:
        raise InputError(error.reason) from None


def _name(name: str) -> str:
    try:
        return check_name(name)
    except FsMetaRefused as error:
        raise InputError(error.reason) from None


def join_label(label: str, relative_dir: str) -> str:
    """The label of a sub-folder: ``/a`` + ``b/c`` -> ``/a/b/c``."""
    if not relative_dir:
        return label
    return (label.rstrip("/") + "/" + relative_dir) if label != "/" else "/" + relative_dir


class ColonyFiles:
    """Labelled files of the colony, for one member; see the module docs."""

    def __init__(self, client: ColonyClient, chunks: ChunkService) -> None:
        self.client = client
        self.chunks = chunks
        self.peer = client.peer
        # CIDs a put pinned that the ledger may not reference yet: keep_pins
        # must not drop them. The lock orders a put's pin against keep_pins'
        # replacement (both run on worker threads).
        self._fresh: set[str] = set()
        self._pin_lock = threading.Lock()

    # --- reading the ledger ---------------------------------------------------------

    async def query(self, op: str, label: str = "", name: str = "") -> dict[str, Any] | None:
        view = await self.client.query(FsQuery(op, label, name))
        if not view.found:
            return None
        document: dict[str, Any] = json.loads(view.json)
        return document

    async def ls(self, label: str = "/") -> dict[str, Any]:
        found = await self.query("ls", _label(label))
        return found if found is not None else {"label": label, "files": [], "truncated": False}

    async def info(self, label: str, name: str) -> dict[str, Any]:
        found = await self.query("revisions", _label(label), _name(name))
        if found is None:
            raise FileNotInColony(f"no file {name!r} under label {label}")
        return found

    async def labels(self, under: str = "/") -> list[dict[str, Any]]:
        found = await self.query("labels", _label(under))
        return list(found["labels"]) if found is not None else []

    async def snapshots(self, label: str = "/") -> list[dict[str, Any]]:
        found = await self.query("snapshots", _label(label))
        return list(found["snapshots"]) if found is not None else []

    async def snapshot(self, id_or_name: str) -> dict[str, Any]:
        found = await self.query("snapshot", "", id_or_name)
        if found is None:
            raise FileNotInColony(f"no snapshot {id_or_name!r}")
        return found

    # --- changing it -------------------------------------------------------------------

    async def put(self, path: str | os.PathLike[str], label: str, name: str = "") -> dict[str, Any]:
        """Add the file at ``path`` as the newest revision of ``name`` under ``label``."""
        source = Path(path)
        name = _name(name or source.name)
        _label(label)
        if not source.is_file():
            raise InputError(f"{source}: not a regular file")
        cid, size = await trio.to_thread.run_sync(self._import_file, source)
        try:
            self._announce(cid)
            # Adding the latest CID again changes nothing, so a delivery whose
            # answer was lost (the client's LOST_ANSWER) needs no reconciling.
            await self.client.run(
                AddFile(label, name, size, cid.encode(), tuple(self.peer.listen_addrs[:8]))
            )
        finally:
            with self._pin_lock:
                self._fresh.discard(cid.encode())
        return {"label": label, "name": name, "cid": cid.encode(), "size": size}

    def _announce(self, cid: Cid) -> None:
        """Tell the chunk service's pin hooks (provider records, replication) we hold ``cid``."""
        for hook in self.chunks.pin_hooks:
            hook(cid)

    def _import_file(self, source: Path) -> tuple[Cid, int]:
        store = self.chunks.store
        try:
            with store.holding(), store.batch() as sink:
                root = import_file(source, sink.put)
                sink.flush()  # every block durable before the pin names them
                with self._pin_lock:
                    self._fresh.add(root.cid.encode())
                    store.pin(PIN_PREFIX + root.cid.encode(), [root.cid])
        except FsError as error:
            raise InputError(f"{source}: {error}") from None
        except OSError as error:
            raise InputError(f"{source}: {error.strerror or error}") from None
        return root.cid, root.filesize

    async def remove(self, label: str, name: str) -> None:
        await self._run(RemoveFile(_label(label), _name(name)))
        await self.keep_pins()

    async def remove_label(self, label: str) -> None:
        await self._run(RemoveLabel(_label(label)))
        await self.keep_pins()

    async def snapshot_create(self, label: str, name: str) -> dict[str, Any]:
        await self._run(CreateSnapshot(_label(label), name))
        return await self.snapshot(name)

    async def snapshot_remove(self, id_or_name: str) -> str:
        removed = await self._run(RemoveSnapshot(id_or_name))
        await self.keep_pins()
        return removed

    async def _run(self, body: object) -> str:
        try:
            return await self.client.run(body)
        except CommandRefused as refusal:
            text = str(refusal)
            if text.startswith("no "):
                raise FileNotInColony(text) from None
            raise

    # --- bytes -------------------------------------------------------------------------

    def _providers(self, views: Iterable[dict[str, Any]]) -> Providers:
        """Ask the revisions' adders first (where they listened), then the usual lookup."""
        hinted: dict[str, None] = {}
        for view in views:
            adder = view.get("adder", "")
            if adder and adder != self.peer.peer_id:
                hinted[adder] = None
                for address in view.get("addrs", ()):
                    self.peer.add_address(adder, address)

        async def lookup(cid: Cid) -> list[str]:
            found = list(hinted)
            try:
                others = await self.chunks.providers(cid)
            except (ColonymeshError, FsError, OSError) as error:
                log.debug("fs: provider lookup for %s failed: %s", cid, error)
                others = []
            return found + [p for p in others if p not in hinted and p != self.peer.peer_id]

        return lookup

    async def fetch_to(self, view: dict[str, Any], dest: Path) -> dict[str, Any]:
        """Fetch the revision ``view`` names and write it at ``dest`` atomically (replacing it)."""
        cid = Cid.parse(view["cid"])
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(f".{dest.name}.{os.getpid()}{PART_SUFFIX}")
        await trio.to_thread.run_sync(_remove, part)
        got = await self.chunks.get(cid, part, providers=self._providers([view]), pin=False)
        try:
            await trio.to_thread.run_sync(self.chunks.store.pin, PIN_PREFIX + cid.encode(), [cid])
            self._announce(cid)
            await trio.to_thread.run_sync(_replace, part, dest)
        finally:
            await trio.to_thread.run_sync(_remove, part)
        return {
            "cid": view["cid"],
            "dest": str(dest),
            "size": view.get("size"),
            "blocks_fetched": got.fetched.blocks_fetched,
            "bytes_fetched": got.fetched.bytes_fetched,
            "by_peer": got.fetched.by_peer,
        }

    async def get(
        self, label: str, name: str, dest: str | os.PathLike[str], *, revision: str = ""
    ) -> dict[str, Any]:
        """Write the latest revision of ``name`` under ``label`` (or the one whose CID is
        ``revision``) to ``dest``, atomically."""
        revisions = (await self.info(label, name))["revisions"]
        chosen = [r for r in revisions if r["cid"] == revision] if revision else revisions[-1:]
        if not chosen:
            raise FileNotInColony(f"{label}/{name} has no revision {revision}")
        return await self.fetch_to(chosen[-1], Path(dest))

    async def snapshot_get(
        self, id_or_name: str, dest_dir: str | os.PathLike[str]
    ) -> dict[str, Any]:
        """Download every file of a snapshot into ``dest_dir`` (sub-labels as sub-folders)."""
        snapshot = await self.snapshot(id_or_name)
        root = Path(dest_dir)
        written = []
        for view in snapshot["files"]:
            relative = relative_path(snapshot["label"], view["label"], view["name"])
            await self.fetch_to(view, root / relative)
            written.append(relative)
        return {"snapshotid": snapshot["snapshotid"], "dir": str(root), "files": written}

    async def sync(
        self,
        label: str,
        directory: str | os.PathLike[str],
        *,
        keeplocal: bool = False,
        download: bool = True,
        upload: bool = True,
    ) -> SyncReport:
        """Make ``directory`` and ``label`` agree (see ``fs/syncplan.py``)."""
        _label(label)
        root = Path(directory)
        await trio.to_thread.run_sync(lambda: root.mkdir(parents=True, exist_ok=True))
        local = await trio.to_thread.run_sync(_local_cids, root)
        listing = await self.ls(label)
        remote: dict[str, dict[str, Any]] = {
            relative_path(label, view["label"], view["name"]): view for view in listing["files"]
        }
        try:
            plan: SyncPlan = plan_sync(
                local,
                {path: view["cid"] for path, view in remote.items()},
                keeplocal=keeplocal,
                download=download,
                upload=upload,
            )
        except FsError as error:
            raise InputError(f"{root}: {error}") from None
        report = SyncReport(label, str(root), conflicts=list(plan.conflicts))
        report.unchanged = plan.unchanged
        for path, _ in plan.downloads:
            await self.fetch_to(remote[path], root / path)
            report.downloaded.append(path)
        for path in plan.uploads:
            folder, _, name = path.rpartition("/")
            await self.put(root / path, join_label(label, folder), name)
            report.uploaded.append(path)
        return report

    # --- pins ----------------------------------------------------------------------------

    async def keep_pins(self) -> dict[str, int]:
        """Pin what the ledger references and this store holds; drop the rest (module docs)."""
        found = await self.query("refs")
        if found is None:
            return {"pinned": 0}
        store = self.chunks.store

        def apply() -> int:
            pins: dict[str, list[Cid]] = {}
            for text in found["cids"]:
                try:
                    cid = Cid.parse(text)
                except FsError:
                    continue
                if store.has(cid):
                    pins[PIN_PREFIX + text] = [cid]
            with self._pin_lock:
                for text in self._fresh:  # pinned by a put whose commit is under way
                    pins[PIN_PREFIX + text] = [Cid.parse(text)]
                try:
                    store.replace_pins(PIN_PREFIX, dict(pins))
                except StoreError as error:
                    log.warning("fs: could not update pins: %s", error)
            return len(pins)

        return {"pinned": await trio.to_thread.run_sync(apply)}

    async def keep_pins_forever(self, interval_s: float = 60.0) -> None:
        """Run :meth:`keep_pins` every ``interval_s`` (references change at other members too)."""
        while True:
            try:
                await self.keep_pins()
            except ColonymeshError as error:
                log.info("fs: pins not updated: %s", error)
            await trio.sleep(interval_s)


def relative_path(base_label: str, label: str, name: str) -> str:
    """The path of file ``name`` under ``label`` relative to a folder synced with ``base_label``."""
    if base_label == "/":
        inner = label.lstrip("/")
    elif label == base_label:
        inner = ""
    else:
        inner = label[len(base_label) + 1 :]
    return f"{inner}/{name}" if inner else name


def _local_cids(root: Path) -> dict[str, str]:
    """Every regular file under ``root`` (symlinks skipped, part files ignored) -> its CID."""
    found: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = Path(folder) / name
            if name.endswith(PART_SUFFIX) or path.is_symlink() or not path.is_file():
                continue
            relative = path.relative_to(root).as_posix()
            try:
                check_relpath(relative)
            except FsError:
                continue
            found[relative] = import_path(path).cid.encode()
    return found


def _replace(part: Path, dest: Path) -> None:
    """Durably move the written ``part`` over ``dest``: data fsynced, then renamed, then the folder."""
    fd = os.open(part, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(part, dest)
    fd = os.open(dest.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
