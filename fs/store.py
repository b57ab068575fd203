"""The local chunk store: content-addressed blocks on disk, verified, pinned, bounded.

Owns one directory::

    <root>/blocks/<xy>/<cid>   one file per block, named by its CIDv1 (base32);
                               <xy> = the two characters before the last one
                               (flatfs's "next-to-last/2": 1024 evenly filled dirs)
    <root>/tmp/                half-written blocks; emptied at open
    <root>/pins.json           label -> root CIDs, replaced atomically

How it works and what it guarantees:

* **Atomic, durable writes.** A block is written to ``tmp/``, fsynced, renamed
  into place and its directory fsynced, so after a crash a block file is either
  absent or complete. Writes are idempotent (a present block is not rewritten).
  `put_batch` keeps the same order for a whole batch -- write every file, fsync
  them all, rename them all, fsync every touched directory -- issuing each
  round of fsyncs concurrently, so the journal commits them together: one
  block cost ~3 fsync round trips (~8 ms on this disk), a batch of 32 costs
  about the same as a few. The batch is durable, all of it, when it returns.
  The batch's files are written and fsynced *outside* the store's lock (they
  are not indexed until durable, so nothing else can see them), so reads --
  an export streaming behind a fetch, a provider serving -- do not wait out
  a batch's fsyncs; the space is reserved under the lock first.
* **Verified reads.** `get` hashes every block it returns. A block that no
  longer matches its CID (bit rot, a torn sector, a meddling user) raises
  `CorruptChunkError` *after* the file is removed, so the caller can re-fetch it
  from a peer and `put` it again. `put` refuses bytes that do not match their
  CID (`BlockMismatchError`), so corruption can only come from the disk.
* **Pins.** A label (a snapshot or file-label name) maps to root CIDs. Every
  block reachable from a pinned root through the blocks we hold is kept by `gc`
  and never evicted. A corrupt or unreadable pins file raises `StoreError` at
  open rather than be treated as "no pins" (which would let gc delete all).
* **Size bound.** `capacity_bytes` bounds the bytes of block files. When a
  `put` would pass it, unpinned blocks are **evicted in least-recently-used
  order** (recency = last put or verified get, kept in file mtimes so it
  survives restarts) until the block fits; if pinned and held blocks alone
  leave no room, the put is refused with `StoreFullError`. We evict rather than
  refuse because unpinned blocks are caches of content that lives elsewhere
  in the colony; what must stay is exactly what is pinned.
* **Holds.** ``with store.holding():`` protects every block put inside it from
  eviction until the block is pinned: an import whose root is not known yet
  cannot lose its first chunks to its last.

Contract for the driver: one `ChunkStore` per directory per process; calls are
blocking file I/O (run them in a worker thread from trio); methods are
serialised by an internal lock (a batch's disk writes excepted, see above),
so several threads may share the object.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

from colonymesh.fs.cid import CODEC_RAW, Cid
from colonymesh.fs.errors import (
    BlockMismatchError,
    ChunkNotFoundError,
    CidError,
    CorruptChunkError,
    FsDecodeError,
    StoreError,
    StoreFullError,
)
from colonymesh.fs.importer import Block, DagEntry
from colonymesh.fs.local import import_path
from colonymesh.fs.pb import BLOCK_BYTES_MAX
from colonymesh.fs.reader import child_cids

log = logging.getLogger("colonymesh.fs.store")

PINS_FILE: Final = "pins.json"
PINS_BYTES_MAX: Final = 64 * 1024 * 1024
LABEL_BYTES_MAX: Final = 1024
# fsyncs issued at once by `put_batch`: the filesystem journal commits concurrent
# fsyncs together (group commit), so N blocks cost a few journal commits, not N.
FSYNC_WORKERS: Final = 16


@dataclass(frozen=True, slots=True)
class GcReport:
    removed_blocks: int
    freed_bytes: int
    kept_blocks: int


@dataclass(frozen=True, slots=True)
class StoreStatistics:
    blocks: int
    used_bytes: int
    capacity_bytes: int
    pins: int
    evicted_blocks: int
    corrupt_blocks: int


def _key(cid: Cid) -> str:
    """Storage key: the canonical CIDv1 text (a v0 CID names the same block)."""
    return cid.to_v1().encode()


class ChunkStore:
    """Blocks on disk under `root`, at most `capacity_bytes` of them."""

    def __init__(self, root: str | os.PathLike[str], capacity_bytes: int) -> None:
        if capacity_bytes <= 0:
            raise StoreError("capacity_bytes must be positive")
        self.root = os.fspath(root)
        self.capacity_bytes = capacity_bytes
        self._blocks_dir = os.path.join(self.root, "blocks")
        self._tmp_dir = os.path.join(self.root, "tmp")
        self._lock = threading.RLock()
        self._lru: OrderedDict[str, int] = OrderedDict()  # key -> size, oldest first
        self._used = 0
        self._pins: dict[str, tuple[Cid, ...]] = {}
        self._holds: list[set[str]] = []
        self._reachable: set[str] | None = None  # cache of _reachable_from_pins
        self._tmp_ids = itertools.count(1)  # thread-safe: batches write without the lock
        self._fsync_pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._evicted = 0
        self._corrupt = 0
        for path in (self.root, self._blocks_dir, self._tmp_dir):
            os.makedirs(path, exist_ok=True)
        self._clear_tmp()
        self._load_index()
        self._pins = self._load_pins()

    # --- opening ------------------------------------------------------------

    def _clear_tmp(self) -> None:
        for name in os.listdir(self._tmp_dir):
            os.unlink(os.path.join(self._tmp_dir, name))

    def _load_index(self) -> None:
        found: list[tuple[int, str, int]] = []
        for shard in sorted(os.listdir(self._blocks_dir)):
            shard_dir = os.path.join(self._blocks_dir, shard)
            if not os.path.isdir(shard_dir):
                continue
            for name in sorted(os.listdir(shard_dir)):
                if not self._is_block_name(name) or name[-3:-1] != shard:
                    log.warning("ignoring stray file %s in %s", name, shard_dir)
                    continue
                st = os.stat(os.path.join(shard_dir, name))
                found.append((st.st_mtime_ns, name, st.st_size))
        for _, name, size in sorted(found):
            self._lru[name] = size
            self._used += size

    @staticmethod
    def _is_block_name(name: str) -> bool:
        try:
            return _key(Cid.parse(name)) == name
        except CidError:
            return False

    def _load_pins(self) -> dict[str, tuple[Cid, ...]]:
        path = os.path.join(self.root, PINS_FILE)
        try:
            with open(path, "rb") as handle:
                raw = handle.read(PINS_BYTES_MAX + 1)
        except FileNotFoundError:
            return {}
        try:
            doc = json.loads(raw)
            if len(raw) > PINS_BYTES_MAX or doc.get("version") != 1:
                raise ValueError("unsupported pins file")
            pins = {
                str(label): tuple(Cid.parse(text) for text in roots)
                for label, roots in doc["pins"].items()
            }
        except (ValueError, KeyError, TypeError, AttributeError, CidError) as exc:
            raise StoreError(f"unreadable pins file {path}: {exc}") from exc
        return pins

    # --- paths and durable writes -------------------------------------------

    def _path(self, key: str) -> str:
        return os.path.join(self._blocks_dir, key[-3:-1], key)

    def _atomic_write(self, final_path: str, data: bytes) -> None:
        tmp = os.path.join(self._tmp_dir, f"{os.getpid()}.{next(self._tmp_ids)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        parent = os.path.dirname(final_path)
        if not os.path.isdir(parent):
            os.mkdir(parent)
            _fsync_dir(os.path.dirname(parent))
        os.replace(tmp, final_path)
        _fsync_dir(parent)

    # --- blocks ---------------------------------------------------------------

    def has(self, cid: Cid) -> bool:
        with self._lock:
            return _key(cid) in self._lru

    def __contains__(self, cid: object) -> bool:
        return isinstance(cid, Cid) and self.has(cid)

    def __len__(self) -> int:
        with self._lock:
            return len(self._lru)

    def cids(self) -> list[Cid]:
        """Every stored CID, least recently used first."""
        with self._lock:
            return [Cid.parse(key) for key in self._lru]

    def put(self, block: Block) -> bool:
        """Store a block after checking it against its CID. True if it was new."""
        return self.put_bytes(block.cid, block.data)

    def put_bytes(self, cid: Cid, data: bytes) -> bool:
        if len(data) > BLOCK_BYTES_MAX:
            raise StoreError(f"block of {len(data)} bytes exceeds {BLOCK_BYTES_MAX}")
        if not cid.verify(data):
            raise BlockMismatchError(f"bytes do not hash to {cid}")
        key = _key(cid)
        with self._lock:
            for held in self._holds:
                held.add(key)
            if key in self._lru:
                self._touch(key)
                return False
            self._make_room(len(data))
            self._atomic_write(self._path(key), data)
            self._lru[key] = len(data)
            self._used += len(data)
            if cid.codec != CODEC_RAW:
                self._reachable = None  # may extend a pinned DAG
            return True

    def put_batch(self, items: Sequence[tuple[Cid, bytes]], *, verified: bool = False) -> int:
        """Store several blocks, each checked against its CID, durably as a whole.

        Same guarantees as `put_bytes` for each block (atomic: absent or complete
        after a crash), with one round of concurrent fsyncs per step instead of
        three fsyncs per block. Raises before writing anything if a block is over
        the size cap or does not hash to its CID. Returns how many were new.

        `verified=True` is the caller's word that every block was just checked
        against its CID in memory (the exchange session does so on receipt), so
        the hash is not computed a second time; reads still verify every block.
        """
        for cid, data in items:
            if len(data) > BLOCK_BYTES_MAX:
                raise StoreError(f"block of {len(data)} bytes exceeds {BLOCK_BYTES_MAX}")
            if not verified and not cid.verify(data):
                raise BlockMismatchError(f"bytes do not hash to {cid}")
        with self._lock:
            fresh: dict[str, tuple[Cid, bytes]] = {}
            for cid, data in items:
                key = _key(cid)
                for held in self._holds:
                    held.add(key)
                if key in self._lru:
                    self._touch(key)
                elif key not in fresh:
                    fresh[key] = (cid, data)
            if not fresh:
                return 0
            size = sum(len(data) for _, data in fresh.values())
            self._make_room(size)
            self._used += size  # reserved while the files are written without the lock
        # Without the lock: the fsyncs take a disk round trip or three, and readers
        # (an export streaming behind this fetch, a provider serving) must not queue
        # behind them. The files are unindexed until the batch is durable, so no one
        # reads, evicts or deletes them meanwhile; temporary names are unique.
        try:
            self._write_batch({self._path(key): data for key, (_, data) in fresh.items()})
        except BaseException:
            with self._lock:
                self._used -= size
            raise
        with self._lock:
            new = 0
            for key, (cid, data) in fresh.items():
                if key in self._lru:  # a concurrent put stored it first
                    self._used -= len(data)
                    continue
                new += 1
                self._lru[key] = len(data)
                if cid.codec != CODEC_RAW:
                    self._reachable = None
            return new

    def _write_batch(self, files: dict[str, bytes]) -> None:
        """Write, fsync (concurrently), rename, fsync the directories (concurrently)."""
        tmps: dict[str, str] = {}
        try:
            for final_path, data in files.items():
                tmp = os.path.join(self._tmp_dir, f"{os.getpid()}.{next(self._tmp_ids)}.tmp")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                tmps[final_path] = tmp
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                finally:
                    os.close(fd)
            self._fsync_all(list(tmps.values()), directory=False)
        except BaseException:
            for tmp in tmps.values():
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            raise
        parents: dict[str, None] = {}
        made_dir = False
        for final_path, tmp in tmps.items():
            parent = os.path.dirname(final_path)
            if parent not in parents and not os.path.isdir(parent):
                with contextlib.suppress(FileExistsError):  # a concurrent put made it
                    os.mkdir(parent)
                made_dir = True
            parents[parent] = None
            os.replace(tmp, final_path)
        if made_dir:
            parents[self._blocks_dir] = None
        self._fsync_all(list(parents), directory=True)

    def _fsync_all(self, paths: list[str], *, directory: bool) -> None:
        if len(paths) <= 1:
            for path in paths:
                _fsync_path(path, directory)
            return
        with self._pool_lock:
            if self._fsync_pool is None:
                self._fsync_pool = ThreadPoolExecutor(FSYNC_WORKERS, "colonymesh-fsync")
            pool = self._fsync_pool
        for _ in pool.map(lambda p: _fsync_path(p, directory), paths):
            pass  # re-raises the first OSError

    def close(self) -> None:
        """Stop the fsync workers (the store stays usable; they restart on demand)."""
        with self._pool_lock:
            if self._fsync_pool is not None:
                self._fsync_pool.shutdown()
                self._fsync_pool = None

    def get(self, cid: Cid) -> bytes:
        """The block's bytes, verified. Raises `ChunkNotFoundError` or `CorruptChunkError`."""
        key = _key(cid)
        with self._lock:
            if key not in self._lru:
                raise ChunkNotFoundError(str(cid))
            path = self._path(key)
            try:
                with open(path, "rb") as handle:
                    data = handle.read(BLOCK_BYTES_MAX + 1)
            except FileNotFoundError:
                self._forget(key)
                raise ChunkNotFoundError(str(cid)) from None
            if len(data) > BLOCK_BYTES_MAX or not cid.verify(data):
                self._drop(key)
                self._corrupt += 1
                log.warning("corrupt block %s removed (%d bytes on disk)", key, len(data))
                raise CorruptChunkError(f"block {cid} failed verification and was removed")
            self._touch(key)
            return data

    def delete(self, cid: Cid) -> bool:
        """Remove a block (pinned or not). True if it was present."""
        key = _key(cid)
        with self._lock:
            if key not in self._lru:
                return False
            self._drop(key)
            return True

    def verify_all(self) -> list[Cid]:
        """Scrub: read and verify every block; return the corrupt ones (now removed)."""
        corrupt: list[Cid] = []
        for cid in self.cids():
            try:
                self.get(cid)
            except CorruptChunkError:
                corrupt.append(cid)
            except ChunkNotFoundError:
                continue
        return corrupt

    def _touch(self, key: str) -> None:
        self._lru.move_to_end(key)
        with contextlib.suppress(FileNotFoundError):
            os.utime(self._path(key))  # recency survives restarts

    def _forget(self, key: str) -> None:
        self._used -= self._lru.pop(key)

    def _drop(self, key: str) -> None:
        self._forget(key)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(key))

    # --- size bound -------------------------------------------------------------

    @property
    def used_bytes(self) -> int:
        return self._used

    def _make_room(self, size: int) -> None:
        if self._used + size <= self.capacity_bytes:
            return
        keep = set(self._reachable_from_pins())
        for held in self._holds:
            keep |= held
        victims: list[str] = []
        freed = 0
        for key, block_size in self._lru.items():  # oldest first
            if self._used - freed + size <= self.capacity_bytes:
                break
            if key not in keep:
                victims.append(key)
                freed += block_size
        if self._used - freed + size > self.capacity_bytes:
            raise StoreFullError(
                f"{size} more bytes do not fit: {self._used} of {self.capacity_bytes} used, "
                f"only {freed} evictable"
            )
        for key in victims:
            self._drop(key)
        self._evicted += len(victims)
        if victims:
            log.debug("evicted %d unpinned blocks (%d bytes)", len(victims), freed)

    @contextlib.contextmanager
    def holding(self) -> Iterator[set[str]]:
        """Protect every block put inside the block from eviction (not from `gc`/`delete`)."""
        held: set[str] = set()
        with self._lock:
            self._holds.append(held)
        try:
            yield held
        finally:
            with self._lock:
                self._holds.remove(held)

    # --- pins and garbage collection ------------------------------------------

    def pin(self, label: str, roots: Sequence[Cid]) -> None:
        """Set `label` to pin `roots` (replacing what it pinned before). Durable on return."""
        if not label or len(label.encode("utf-8")) > LABEL_BYTES_MAX:
            raise StoreError("pin label must be 1..1024 bytes of UTF-8")
        with self._lock:
            pins = dict(self._pins)
            pins[label] = tuple(roots)
            self._save_pins(pins)

    def unpin(self, label: str) -> bool:
        with self._lock:
            if label not in self._pins:
                return False
            pins = dict(self._pins)
            del pins[label]
            self._save_pins(pins)
            return True

    def replace_pins(self, prefix: str, pins: dict[str, Sequence[Cid]]) -> None:
        """Make ``pins`` exactly the pins whose label starts with ``prefix``, in one durable write.

        For an owner of a family of pins (e.g. the labels and snapshots that the
        ledger says must be kept): stale ones go, new ones come, others stay.
        """
        if not prefix or any(not label.startswith(prefix) for label in pins):
            raise StoreError(f"every label must start with the non-empty prefix {prefix!r}")
        for label in pins:
            if len(label.encode("utf-8")) > LABEL_BYTES_MAX:
                raise StoreError("pin label must be 1..1024 bytes of UTF-8")
        with self._lock:
            kept = {k: v for k, v in self._pins.items() if not k.startswith(prefix)}
            new = {label: tuple(roots) for label, roots in pins.items()}
            if {**kept, **new} != self._pins:
                self._save_pins({**kept, **new})

    def pins(self) -> dict[str, tuple[Cid, ...]]:
        with self._lock:
            return dict(self._pins)

    def _save_pins(self, pins: dict[str, tuple[Cid, ...]]) -> None:
        doc = {
            "version": 1,
            "pins": {label: [c.encode() for c in pins[label]] for label in sorted(pins)},
        }
        self._atomic_write(os.path.join(self.root, PINS_FILE), json.dumps(doc).encode())
        self._pins = pins
        self._reachable = None

    def _reachable_from_pins(self) -> set[str]:
        """Keys reachable from any pinned root through the blocks we hold.

        Raw leaves are included whether present or not (they link to nothing, so
        need no reading); a missing dag-pb block ends its path. The result is cached
        until the pins change or a dag-pb block arrives -- raw-leaf puts, the bulk
        of all writes, cannot change it -- so a full store does not re-walk its
        pinned DAGs on every put.
        """
        if self._reachable is not None:
            return self._reachable
        seen: set[str] = set()
        stack: list[Cid] = [cid for label in sorted(self._pins) for cid in self._pins[label]]
        while stack:
            cid = stack.pop()
            key = _key(cid)
            if key in seen:
                continue
            if cid.codec == CODEC_RAW:
                seen.add(key)
                continue
            if key not in self._lru:
                continue
            seen.add(key)
            try:
                stack.extend(child_cids(cid, self.get(cid)))
            except (CorruptChunkError, ChunkNotFoundError):
                seen.discard(key)  # removed: once re-fetched, its put re-walks
            except FsDecodeError as exc:
                log.warning("pinned block %s does not decode: %s", key, exc)
        self._reachable = seen
        return seen

    def gc(self) -> GcReport:
        """Remove every block not reachable from a pin and not currently held."""
        with self._lock:
            self._reachable = None
            keep = set(self._reachable_from_pins())
            for held in self._holds:
                keep |= held
            victims = [key for key in self._lru if key not in keep]
            freed = sum(self._lru[key] for key in victims)
            for key in victims:
                self._drop(key)
            log.info("gc removed %d blocks (%d bytes)", len(victims), freed)
            return GcReport(len(victims), freed, len(self._lru))

    def statistics(self) -> StoreStatistics:
        with self._lock:
            return StoreStatistics(
                blocks=len(self._lru),
                used_bytes=self._used,
                capacity_bytes=self.capacity_bytes,
                pins=len(self._pins),
                evicted_blocks=self._evicted,
                corrupt_blocks=self._corrupt,
            )

    # --- convenience ------------------------------------------------------------

    def put_many(self, blocks: Iterable[Block]) -> int:
        """Store `blocks` in durable batches (see `batch`); how many were new."""
        with self.batch() as sink:
            for block in blocks:
                sink.put(block)
        return sink.new

    @contextlib.contextmanager
    def batch(self, blocks_max: int = 32) -> Iterator[BatchWriter]:
        """A sink that stores blocks `blocks_max` at a time; everything put is durable on exit."""
        writer = BatchWriter(self, blocks_max)
        yield writer
        writer.flush()

    def add_path(self, path: str | os.PathLike[str], label: str | None = None) -> DagEntry:
        """Import a local file or folder into the store; pin its root under `label` if given."""
        with self.holding(), self.batch() as sink:
            root = import_path(path, sink.put)
            sink.flush()
            if label is not None:
                roots = self.pins().get(label, ())
                if root.cid not in roots:
                    self.pin(label, [*roots, root.cid])
        return root


def _fsync_path(path: str, directory: bool) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BatchWriter:
    """Collects blocks and stores them with `ChunkStore.put_batch`, `blocks_max` at a time.

    Blocks put here are durable only after the next `flush` (the `batch()`
    context flushes on exit): a caller acknowledges the whole, never a part.
    """

    def __init__(self, store: ChunkStore, blocks_max: int) -> None:
        if blocks_max < 1:
            raise StoreError("blocks_max must be at least 1")
        self.store = store
        self.blocks_max = blocks_max
        self.new = 0
        self._pending: list[tuple[Cid, bytes]] = []

    def put(self, block: Block) -> None:
        self._pending.append((block.cid, block.data))
        if len(self._pending) >= self.blocks_max:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, []
            self.new += self.store.put_batch(pending)
