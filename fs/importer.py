"""The UnixFS importer: bytes in, IPFS-compatible blocks and CIDs out.

Owns turning a file's bytes, a directory's entries or a symlink's target into
the dag-pb/raw blocks IPFS would build with ``--cid-version=1 --raw-leaves``
(js `ipfs-unixfs-importer` with cidVersion 1, rawLeaves, 256 KiB fixed-size
chunks and the balanced layout of at most 174 links per node; the same as
Kubo's legacy defaults for v1 CIDs).

How it works. A `Chunker` cuts the stream; each chunk becomes a raw block
(codec 0x55) whose CID is its sha2-256. The balanced layout groups the
leaves 174 at a time into dag-pb file nodes, then groups those nodes 174 at
a time, and so on until one root remains. We do that *streaming*: `levels[i]`
holds at most 173 pending entries; when one reaches 174 it is folded into a
node that is pushed to level i+1, so memory is O(levels * 174) whatever the
file size. `finish()` folds the remainders bottom-up; an item that is alone
at its level is the root. Because every full group is folded exactly as the
batch-wise algorithm folds it, and remainders are folded in level order, the
result is identical to IPFS's.

IPFS details kept on purpose:
* a file of one chunk is that raw leaf (no wrapping node); an empty file is
  the raw leaf of zero bytes (``bafkreihdwdcefgh4...``);
* a file node's Data is UnixFS {Type=File, filesize, blocksizes[]} with no
  inline data; each link has an empty Name and Tsize = the child's
  cumulative encoded size (its block plus all blocks below);
* a tail group of one item at an upper level still gets its own node;
* directory links are sorted by the bytes of their UTF-8 names; the
  directory's own Data is UnixFS {Type=Directory}.

Invariants: pure (no I/O, no clock, no randomness); the caller gets every
block exactly once, children before parents; `feed` after `finish` raises.
Not done: HAMT-sharded directories -- a directory whose link estimate passes
IPFS's 256 KiB sharding threshold raises `UnsupportedError` rather than get a
CID IPFS would not give.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Protocol

from colonymesh.fs.cid import CODEC_DAG_PB, CODEC_RAW, Cid
from colonymesh.fs.errors import FsUsageError, UnsupportedError
from colonymesh.fs.pb import DataType, PBLink, PBNode, UnixFsData, encode_pbnode, encode_unixfs

CHUNK_BYTES_DEFAULT: Final = 256 * 1024
MAX_LINKS_DEFAULT: Final = 174
SHARD_SPLIT_THRESHOLD_BYTES: Final = 256 * 1024


@dataclass(frozen=True, slots=True)
class Block:
    """One content-addressed block: `cid` names `data`."""

    cid: Cid
    data: bytes


@dataclass(frozen=True, slots=True)
class DagEntry:
    """A built DAG root as its parent links to it."""

    cid: Cid
    tsize: int  # cumulative encoded bytes of the DAG (PBLink.Tsize)
    filesize: int  # content bytes under it (UnixFS blocksizes entry); 0 for directories


class Chunker(Protocol):
    """Cuts a byte stream into chunks. Never returns empty chunks."""

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]: ...

    def finish(self) -> list[bytes]: ...


class FixedSizeChunker:
    """Chunks of exactly `chunk_bytes`, the last one shorter (IPFS's `size-N`)."""

    def __init__(self, chunk_bytes: int = CHUNK_BYTES_DEFAULT) -> None:
        if chunk_bytes <= 0:
            raise FsUsageError("chunk_bytes must be positive")
        self.chunk_bytes = chunk_bytes
        self._pending = bytearray()

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        size = self.chunk_bytes
        view = memoryview(data).cast("B")
        out: list[bytes] = []
        if self._pending:
            need = size - len(self._pending)
            self._pending += view[:need]
            view = view[need:]
            if len(self._pending) < size:
                return out
            out.append(bytes(self._pending))
            self._pending.clear()
        full = len(view) - len(view) % size
        out.extend(bytes(view[i : i + size]) for i in range(0, full, size))
        self._pending += view[full:]
        return out

    def finish(self) -> list[bytes]:
        out = [bytes(self._pending)] if self._pending else []
        self._pending.clear()
        return out


def raw_block(data: bytes) -> Block:
    return Block(Cid.of(CODEC_RAW, data), data)


def _dag_pb_block(node: PBNode) -> Block:
    encoded = encode_pbnode(node)
    return Block(Cid.of(CODEC_DAG_PB, encoded), encoded)


def file_node(children: list[DagEntry]) -> tuple[DagEntry, Block]:
    """The dag-pb file node over `children` (leaves or lower file nodes), in order."""
    data = UnixFsData(
        type=DataType.FILE,
        filesize=sum(c.filesize for c in children),
        blocksizes=tuple(c.filesize for c in children),
    )
    links = tuple(PBLink(c.cid, "", c.tsize) for c in children)
    block = _dag_pb_block(PBNode(links, encode_unixfs(data)))
    tsize = len(block.data) + sum(c.tsize for c in children)
    return DagEntry(block.cid, tsize, data.filesize or 0), block


class FileImporter:
    """Streaming builder of one file's DAG. Feed bytes, collect blocks, then finish."""

    def __init__(self, chunker: Chunker | None = None, max_links: int = MAX_LINKS_DEFAULT) -> None:
        if max_links < 2:
            raise FsUsageError("max_links must be at least 2")
        self._chunker: Chunker = chunker if chunker is not None else FixedSizeChunker()
        self._max_links = max_links
        self._levels: list[list[DagEntry]] = [[]]
        self._counts: list[int] = [0]  # items ever appended per level
        self._finished = False

    def feed(self, data: bytes | bytearray | memoryview) -> list[Block]:
        """Consume more bytes; return the blocks that became complete."""
        if self._finished:
            raise FsUsageError("feed after finish")
        blocks: list[Block] = []
        for chunk in self._chunker.feed(data):
            self._add_leaf(chunk, blocks)
        return blocks

    def finish(self) -> tuple[DagEntry, list[Block]]:
        """End of input: return the root entry and the last blocks (the root's last)."""
        if self._finished:
            raise FsUsageError("finish called twice")
        self._finished = True
        blocks: list[Block] = []
        for chunk in self._chunker.finish():
            self._add_leaf(chunk, blocks)
        if self._counts[0] == 0:
            empty = raw_block(b"")
            return DagEntry(empty.cid, 0, 0), [empty]
        level = 0
        while True:
            if self._counts[level] == 1:
                # Alone at its level (lower levels are folded by now): the root.
                if len(self._levels[level]) != 1:
                    raise FsUsageError("layout invariant broken: root not pending")
                return self._levels[level][0], blocks
            if self._levels[level]:
                pending = self._levels[level]
                self._levels[level] = []
                self._push(level + 1, pending, blocks)
            level += 1

    def _add_leaf(self, chunk: bytes, blocks: list[Block]) -> None:
        block = raw_block(chunk)
        blocks.append(block)
        self._append(0, DagEntry(block.cid, len(chunk), len(chunk)), blocks)

    def _append(self, level: int, entry: DagEntry, blocks: list[Block]) -> None:
        if level == len(self._levels):
            self._levels.append([])
            self._counts.append(0)
        self._levels[level].append(entry)
        self._counts[level] += 1
        if len(self._levels[level]) == self._max_links:
            full = self._levels[level]
            self._levels[level] = []
            self._push(level + 1, full, blocks)

    def _push(self, level: int, children: list[DagEntry], blocks: list[Block]) -> None:
        entry, block = file_node(children)
        blocks.append(block)
        self._append(level, entry, blocks)


def import_bytes(data: bytes, chunker: Chunker | None = None) -> tuple[DagEntry, list[Block]]:
    """Import an in-memory file in one call (convenience for small inputs and tests)."""
    importer = FileImporter(chunker)
    blocks = importer.feed(data)
    root, tail = importer.finish()
    return root, blocks + tail


def _check_name(name: str) -> bytes:
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise FsUsageError(f"invalid directory entry name {name!r}")
    try:
        return name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UnsupportedError(f"entry name is not valid UTF-8: {name!r}") from exc


def directory_node(entries: Iterable[tuple[str, DagEntry]]) -> tuple[DagEntry, Block]:
    """The flat UnixFS directory node over named children."""
    named: list[tuple[bytes, str, DagEntry]] = []
    seen: set[bytes] = set()
    estimate = 0
    for name, entry in entries:
        raw = _check_name(name)
        if raw in seen:
            raise FsUsageError(f"duplicate directory entry {name!r}")
        seen.add(raw)
        named.append((raw, name, entry))
        estimate += len(raw) + len(entry.cid.to_bytes())
    if estimate > SHARD_SPLIT_THRESHOLD_BYTES:
        raise UnsupportedError(
            f"directory needs HAMT sharding ({len(named)} entries, ~{estimate} link bytes)"
        )
    named.sort(key=lambda item: item[0])
    links = tuple(PBLink(e.cid, name, e.tsize) for _, name, e in named)
    block = _dag_pb_block(PBNode(links, encode_unixfs(UnixFsData(type=DataType.DIRECTORY))))
    tsize = len(block.data) + sum(e.tsize for _, _, e in named)
    return DagEntry(block.cid, tsize, sum(e.filesize for _, _, e in named)), block


def symlink_node(target: bytes) -> tuple[DagEntry, Block]:
    """A UnixFS symlink: the link target as data, not followed."""
    block = _dag_pb_block(PBNode((), encode_unixfs(UnixFsData(DataType.SYMLINK, data=target))))
    return DagEntry(block.cid, len(block.data), 0), block
