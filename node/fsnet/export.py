"""Writing a fetched file or folder out while it is still arriving, atomically.

A get used to fetch every block into the store and only then export the
file, so the export (read back, verify, write ~the whole file) was a second,
serial pass. Here the export runs on a worker thread *during* the fetch:
its block reader is a :class:`BlockGate` that waits until the block it needs
is durable in the store (the fetch calls :meth:`BlockGate.stored` after each
batch), then reads it through the store's verified ``get``. The session asks
for blocks in discovery order, which is the export's order, so the export
trails the fetch closely and most of its work overlaps the network.

Guarantees kept: every byte written was verified against its CID on the
read from the store (data at rest is never trusted); memory is one block at
a time; the output appears at `dest` only complete -- written under a
temporary name in the same folder, every file fsynced, renamed into place,
the parent folder fsynced -- and a failed export leaves nothing behind.
A gate that is closed (the fetch ended, failed or was cancelled) wakes the
export at once; a block still absent then is `ChunkNotFoundError`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import threading
from collections.abc import Iterable

from colonymesh.fs.cid import Cid
from colonymesh.fs.errors import ChunkNotFoundError
from colonymesh.fs.local import export_path
from colonymesh.fs.store import ChunkStore


class BlockGate:
    """`get(cid)` for an export running beside a fetch: waits for the block, then reads it."""

    def __init__(self, store: ChunkStore) -> None:
        self.store = store
        self._changed = threading.Condition()
        self._closed = False
        self.waits = 0  # how often the export caught up with the fetch

    def stored(self, cids: Iterable[Cid]) -> None:
        """Blocks became durable (called by the fetch, on any thread)."""
        del cids  # the waiter re-checks the store itself
        with self._changed:
            self._changed.notify_all()

    def close(self) -> None:
        """No more blocks are coming: a waiting `get` reads what is there, or fails."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def get(self, cid: Cid) -> bytes:
        with self._changed:
            while not self._closed and not self.store.has(cid):
                self.waits += 1
                self._changed.wait()
        if not self.store.has(cid):
            raise ChunkNotFoundError(str(cid))
        return self.store.get(cid)  # verified read: raises CorruptChunkError on rot


# The suffix folder scans skip (node.colony.files uses it for its own part files).
PART_SUFFIX = ".cm-part"


def part_path(dest: str) -> str:
    """A fresh temporary name beside `dest` (same folder, so the rename is atomic)."""
    folder, name = os.path.split(os.path.abspath(dest))
    return os.path.join(folder, f".{name}.{secrets.token_hex(4)}{PART_SUFFIX}")


def export_atomic(gate: BlockGate, cid: Cid, dest: str) -> None:
    """Export `cid` to `dest` through `gate`: complete and durable at `dest`, or absent."""
    part = part_path(dest)
    try:
        export_path(gate.get, cid, part)
        _fsync_tree(part)
        if os.path.isfile(part) and not os.path.islink(part):
            os.link(part, dest)  # never replaces: fails if `dest` appeared meanwhile
            os.unlink(part)
        else:
            if os.path.lexists(dest):
                raise FileExistsError(f"{dest}: appeared during the get")
            os.rename(part, dest)
    except BaseException:
        remove_quietly(part)
        raise
    _fsync_folder(os.path.dirname(os.path.abspath(dest)))


def remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.unlink(path)


def _fsync_tree(path: str) -> None:
    """fsync every regular file and folder under `path` (symlinks are in their folder)."""
    if os.path.islink(path):
        return
    if not os.path.isdir(path):
        _fsync(path, os.O_RDONLY)
        return
    for folder, _, files in os.walk(path):
        for name in files:
            full = os.path.join(folder, name)
            if not os.path.islink(full):
                _fsync(full, os.O_RDONLY)
        _fsync_folder(folder)


def _fsync_folder(path: str) -> None:
    _fsync(path, os.O_RDONLY | os.O_DIRECTORY)


def _fsync(path: str, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
