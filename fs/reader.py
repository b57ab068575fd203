"""Reading UnixFS DAGs back: file bytes and directory listings from blocks.

Owns the inverse of `importer`. The caller supplies `get_block(cid) -> bytes`
(the chunk store, which verifies hashes on read; a test dict; later the
exchange) and these functions walk the DAG depth-first, in link order.

Invariants: a block is decoded strictly (`pb`), a file's bytes are checked
against the sizes its nodes declare (`filesize`, `blocksizes`), depth is
capped, and any inconsistency raises `UnixFsError`; so a peer cannot make us
emit bytes other than those the root CID commits to, nor loop forever.
Memory is bounded by the depth times the links of one node. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

from colonymesh.fs.cid import CODEC_DAG_PB, CODEC_RAW, Cid
from colonymesh.fs.errors import UnixFsError, UnsupportedError
from colonymesh.fs.pb import DataType, PBLink, UnixFsData, decode_pbnode, decode_unixfs

DEPTH_MAX: Final = 64

GetBlock = Callable[[Cid], bytes]


@dataclass(frozen=True, slots=True)
class Node:
    """A decoded block: its UnixFS meaning and its links."""

    kind: DataType
    links: tuple[PBLink, ...]
    unixfs: UnixFsData | None  # None for raw blocks
    raw: bytes | None  # the bytes of a raw block


def decode_node(cid: Cid, block: bytes) -> Node:
    """Interpret one block by its CID's codec."""
    if cid.codec == CODEC_RAW:
        return Node(DataType.RAW, (), None, block)
    if cid.codec != CODEC_DAG_PB:
        raise UnsupportedError(f"codec 0x{cid.codec:x} is not UnixFS")
    node = decode_pbnode(block)
    if node.data is None:
        raise UnixFsError("dag-pb node without UnixFS Data")
    unixfs = decode_unixfs(node.data)
    return Node(unixfs.type, node.links, unixfs, None)


def child_cids(cid: Cid, block: bytes) -> list[Cid]:
    """The CIDs a block links to (none for raw blocks)."""
    if cid.codec == CODEC_RAW:
        return []
    if cid.codec != CODEC_DAG_PB:
        return []
    return [link.cid for link in decode_pbnode(block).links]


def read_file(get_block: GetBlock, root: Cid) -> Iterator[bytes]:
    """Yield the bytes of the file `root` names, in order, verifying declared sizes."""
    yield from _read(get_block, root, None, 0)


def _read(get_block: GetBlock, cid: Cid, expected: int | None, depth: int) -> Iterator[bytes]:
    if depth > DEPTH_MAX:
        raise UnixFsError(f"file DAG deeper than {DEPTH_MAX}")
    node = decode_node(cid, get_block(cid))
    if node.raw is not None:
        if expected is not None and len(node.raw) != expected:
            raise UnixFsError(f"raw leaf {cid} is {len(node.raw)} bytes, parent says {expected}")
        yield node.raw
        return
    if node.unixfs is None or node.kind not in (DataType.FILE, DataType.RAW):
        raise UnixFsError(f"{cid} is a {node.kind.name}, not a file")
    data = node.unixfs.data or b""
    sizes = node.unixfs.blocksizes
    if len(sizes) != len(node.links):
        raise UnixFsError(f"{cid}: {len(node.links)} links but {len(sizes)} blocksizes")
    total = len(data) + sum(sizes)
    declared = node.unixfs.filesize
    if declared is not None and declared != total:
        raise UnixFsError(f"{cid}: filesize {declared} but parts add to {total}")
    if expected is not None and total != expected:
        raise UnixFsError(f"{cid}: {total} bytes, parent says {expected}")
    if data:
        yield data
    for link, size in zip(node.links, sizes, strict=True):
        yield from _read(get_block, link.cid, size, depth + 1)


@dataclass(frozen=True, slots=True)
class DirEntry:
    name: str
    cid: Cid
    tsize: int | None


def list_directory(get_block: GetBlock, root: Cid) -> list[DirEntry]:
    """The entries of a flat UnixFS directory, in stored (name-sorted) order."""
    node = decode_node(root, get_block(root))
    if node.kind != DataType.DIRECTORY:
        raise UnixFsError(f"{root} is a {node.kind.name}, not a directory")
    entries: list[DirEntry] = []
    for link in node.links:
        name = link.name or ""
        if not name or name in (".", "..") or "/" in name:
            raise UnixFsError(f"{root}: unsafe entry name {name!r}")
        entries.append(DirEntry(name, link.cid, link.tsize))
    return entries


def read_symlink(get_block: GetBlock, cid: Cid) -> bytes:
    node = decode_node(cid, get_block(cid))
    if node.kind != DataType.SYMLINK or node.unixfs is None:
        raise UnixFsError(f"{cid} is a {node.kind.name}, not a symlink")
    return node.unixfs.data or b""
