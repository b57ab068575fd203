"""Sync directives: a spec's ``fs`` section, carried out before and after its process.

ColonyOS's CFS directives (``FunctionSpec.fs``), executed by the executor
runtime (``worker.py``) around every process whose spec has them:

* ``{processid}`` in a label, a folder or a snapshot id is replaced by the
  process id first (so parallel processes get folders and labels of their own).
* Folders are local: a directive's ``dir`` names ``<root>/<dir>`` where
  ``root`` is the executor's meta-filesystem folder (``fs.mount`` is where the
  process sees it: ``<root>/<mount>``; both given to the process as
  ``fs_root`` / ``fs_mount`` on its context).
* before the run: every ``snapshots[i]`` is downloaded into its folder. Its
  ``snapshotid`` names an existing snapshot (by id or name); without one, the
  executor snapshots ``label`` itself, named ``<processid>:<label>``, so a
  retry of the process reads the very same files. Every ``dirs[i]`` is synced
  both ways with its label, conflicts going to the local copy only with
  ``onconflicts.onstart.keeplocal``.
* after a successful run: every ``dirs[i]`` is synced again (new and changed
  files become new revisions), conflicts going to the local copy with
  ``onconflicts.onclose.keeplocal``, else to the label's. After a failed run
  nothing is uploaded (a failed process's outputs do not become the latest
  revisions).
* cleanup after any run: a folder is deleted unless ``keepfiles``; a snapshot
  is removed after a *successful* run unless ``keepsnapshot``. After a failed
  run the snapshot is always kept, so a retry (or a person) still finds the
  exact inputs: ColonyOS removes it even when the process failed, losing them.

A directive that cannot be carried out (an unknown snapshot, a transfer that
fails) fails the process with a message that names the directive.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from colonymesh.fs.errors import FsError
from colonymesh.node.colony.files import ColonyFiles, FileNotInColony
from colonymesh.node.errors import ColonymeshError
from colonymesh.node.spec import FunctionSpec

log = logging.getLogger("colonymesh.node.fssync")


class SyncFailed(ColonymeshError):
    """A sync directive could not be carried out; the message names it."""


def substitute(text: str, process_id: str) -> str:
    return text.replace("{processid}", process_id)


def has_directives(spec: FunctionSpec) -> bool:
    return bool(spec.fs.snapshots or spec.fs.dirs)


def local_dir(root: Path, directory: str) -> Path:
    """``<root>/<directory>``; the spec parser already refused ``..`` segments."""
    return root / directory.lstrip("/")


@dataclass(slots=True)
class ProcessFs:
    """What ``before`` did for one process, for ``after`` to finish."""

    process_id: str
    spec: FunctionSpec
    root: Path
    snapshot_ids: list[str] = field(default_factory=list)
    report: list[dict[str, Any]] = field(default_factory=list)

    @property
    def mount(self) -> Path:
        return local_dir(self.root, substitute(self.spec.fs.mount, self.process_id))


class FsSync:
    """Carries out sync directives with ``files`` under the local folder ``root``."""

    def __init__(self, files: ColonyFiles, root: Path) -> None:
        self.files = files
        self.root = root

    async def before(self, process_id: str, spec: FunctionSpec) -> ProcessFs:
        state = ProcessFs(process_id, spec, self.root)
        for i, mount in enumerate(spec.fs.snapshots):
            where = f"fs.snapshots[{i}]"
            target = local_dir(self.root, substitute(mount.dir, process_id))
            try:
                snapshot_id = await self._snapshot_for(process_id, mount.snapshotid, mount.label)
                state.snapshot_ids.append(snapshot_id)
                got = await self.files.snapshot_get(snapshot_id, target)
            except (ColonymeshError, FsError, OSError) as error:
                raise SyncFailed(f"{where}: {error}") from None
            state.report.append({"directive": where, **got})
        await self._sync_dirs(state, start=True)
        return state

    async def _snapshot_for(self, process_id: str, snapshot_id: str, label: str) -> str:
        if snapshot_id:
            return str(
                (await self.files.snapshot(substitute(snapshot_id, process_id)))["snapshotid"]
            )
        if not label:
            raise SyncFailed("a snapshot directive needs a snapshotid or a label")
        label = substitute(label, process_id)
        name = f"{process_id}:{label}"
        try:  # a retry of this process finds the snapshot its first run made
            return str((await self.files.snapshot(name))["snapshotid"])
        except FileNotInColony:
            return str((await self.files.snapshot_create(label, name))["snapshotid"])

    async def _sync_dirs(self, state: ProcessFs, *, start: bool) -> None:
        for i, mount in enumerate(state.spec.fs.dirs):
            where = f"fs.dirs[{i}]"
            keeplocal = (
                mount.onconflicts.onstart_keeplocal
                if start
                else mount.onconflicts.onclose_keeplocal
            )
            label = substitute(mount.label, state.process_id)
            target = local_dir(self.root, substitute(mount.dir, state.process_id))
            try:
                report = await self.files.sync(label, target, keeplocal=keeplocal)
            except (ColonymeshError, FsError, OSError) as error:
                raise SyncFailed(f"{where}: {error}") from None
            state.report.append(
                {"directive": where, "at": "start" if start else "close", **report.to_json_obj()}
            )

    async def after(self, state: ProcessFs, *, succeeded: bool) -> None:
        """Upload (after success) and clean up; see the module docs."""
        try:
            if succeeded:
                await self._sync_dirs(state, start=False)
        finally:
            with trio.CancelScope(shield=True):
                await self._clean_up(state, succeeded=succeeded)

    async def _clean_up(self, state: ProcessFs, *, succeeded: bool) -> None:
        spec, pid = state.spec, state.process_id
        folders = [(d.dir, d.keepfiles) for d in spec.fs.dirs]
        folders += [(s.dir, s.keepfiles) for s in spec.fs.snapshots]
        for directory, keep in folders:
            if not keep:
                target = local_dir(self.root, substitute(directory, pid))
                await trio.to_thread.run_sync(_remove_tree, target, self.root)
        for mount, snapshot_id in zip(spec.fs.snapshots, state.snapshot_ids, strict=False):
            if succeeded and not mount.keepsnapshot:
                try:
                    await self.files.snapshot_remove(snapshot_id)
                except (ColonymeshError, FsError) as error:
                    log.warning(
                        "process %s: could not remove snapshot %s: %s", pid, snapshot_id, error
                    )
            elif not succeeded:
                log.info("process %s failed: keeping snapshot %s", pid, snapshot_id)
        try:
            await self.files.keep_pins()
        except ColonymeshError as error:
            log.warning("process %s: could not update pins: %s", pid, error)


def _remove_tree(target: Path, root: Path) -> None:
    """Remove ``target`` and then its parents that it leaves empty, up to ``root``."""
    shutil.rmtree(target, ignore_errors=True)
    for parent in target.parents:
        if parent == root or root not in parent.parents:
            return
        try:
            parent.rmdir()
        except OSError:  # not empty (another directive's folder), or gone
            return
