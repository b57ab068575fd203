"""Import local paths into blocks and export blocks back: the I/O shell around the pure core.

Owns reading a path from the local disk and feeding it to the pure
`FileImporter` / `directory_node` / `symlink_node` builders. Files are read
in `READ_BYTES` pieces, so hashing a file of any size keeps memory bounded
(a few MiB). Every block produced is handed to an optional `sink` (the chunk
store's `put_block`, or nothing for `cid_of_path`), children before parents.

Walking rules match ``ipfs add -r --hidden --cid-version=1``: hidden entries
are included, symlinks are stored as UnixFS symlinks and never followed (the
root too), directories are read in full (empty ones included). Sockets,
FIFOs and devices raise `UnsupportedError`; so do names that are not valid
UTF-8 and directories large enough that IPFS would shard them.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from colonymesh.fs.cid import Cid
from colonymesh.fs.errors import UnsupportedError
from colonymesh.fs.importer import (
    MAX_LINKS_DEFAULT,
    Block,
    Chunker,
    DagEntry,
    FileImporter,
    directory_node,
    symlink_node,
)
from colonymesh.fs.pb import DataType
from colonymesh.fs.reader import GetBlock, decode_node, list_directory, read_file, read_symlink

READ_BYTES: Final = 1024 * 1024
DEPTH_MAX: Final = 256

BlockSink = Callable[[Block], object]
ChunkerFactory = Callable[[], Chunker]


def _emit(sink: BlockSink | None, blocks: list[Block]) -> None:
    if sink is not None:
        for block in blocks:
            sink(block)


def import_file(
    path: str | os.PathLike[str],
    sink: BlockSink | None = None,
    chunker_factory: ChunkerFactory | None = None,
    max_links: int = MAX_LINKS_DEFAULT,
) -> DagEntry:
    """Import one regular file, streaming; return its root entry."""
    chunker = chunker_factory() if chunker_factory is not None else None
    importer = FileImporter(chunker, max_links)
    buffer = bytearray(READ_BYTES)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while True:
            count = handle.readinto(buffer)
            if not count:
                break
            _emit(sink, importer.feed(view[:count]))
    root, blocks = importer.finish()
    _emit(sink, blocks)
    return root


def import_path(
    path: str | os.PathLike[str],
    sink: BlockSink | None = None,
    chunker_factory: ChunkerFactory | None = None,
    max_links: int = MAX_LINKS_DEFAULT,
) -> DagEntry:
    """Import a file, folder (recursively) or symlink; return its root entry."""
    return _import(os.fspath(path), _Options(sink, chunker_factory, max_links), 0)


@dataclass(frozen=True, slots=True)
class _Options:
    sink: BlockSink | None
    chunker_factory: ChunkerFactory | None
    max_links: int


def _import(path: str, opts: _Options, depth: int) -> DagEntry:
    if depth > DEPTH_MAX:
        raise UnsupportedError(f"directory nesting deeper than {DEPTH_MAX} at {path!r}")
    mode = os.lstat(path).st_mode
    if stat.S_ISLNK(mode):
        entry, block = symlink_node(os.fsencode(os.readlink(path)))
        _emit(opts.sink, [block])
        return entry
    if stat.S_ISREG(mode):
        return import_file(path, opts.sink, opts.chunker_factory, opts.max_links)
    if stat.S_ISDIR(mode):
        with os.scandir(path) as scan:
            names = sorted(item.name for item in scan)
        children = [(name, _import(os.path.join(path, name), opts, depth + 1)) for name in names]
        entry, block = directory_node(children)
        _emit(opts.sink, [block])
        return entry
    raise UnsupportedError(f"not a regular file, directory or symlink: {path!r}")


def cid_of_path(path: str | os.PathLike[str]) -> str:
    """The IPFS CIDv1 (base32) of a local file or folder, as ``ipfs add`` would print it.

    Equal to ``ipfs add -r --hidden --cid-version=1 --raw-leaves --chunker=size-262144``
    (balanced layout, 174 links per node). Needs no running node and writes nothing;
    memory stays bounded however big the file. Raises `OSError` for unreadable paths
    and `UnsupportedError` for what IPFS would encode differently (see module doc).
    """
    return import_path(path).cid.encode()


def export_path(get_block: GetBlock, cid: Cid, dest: str | os.PathLike[str]) -> None:
    """Write the file, folder or symlink `cid` names to `dest` (which must not exist)."""
    _export(get_block, cid, os.fspath(dest), 0)


def _export(get_block: GetBlock, cid: Cid, dest: str, depth: int) -> None:
    if depth > DEPTH_MAX:
        raise UnsupportedError(f"directory nesting deeper than {DEPTH_MAX} at {dest!r}")
    kind = decode_node(cid, get_block(cid)).kind
    if kind in (DataType.RAW, DataType.FILE):
        with open(dest, "xb") as handle:
            for piece in read_file(get_block, cid):
                handle.write(piece)
    elif kind == DataType.DIRECTORY:
        os.mkdir(dest)
        for entry in list_directory(get_block, cid):
            _export(get_block, entry.cid, os.path.join(dest, entry.name), depth + 1)
    elif kind == DataType.SYMLINK:
        os.symlink(os.fsdecode(read_symlink(get_block, cid)), dest)
    else:
        raise UnsupportedError(f"cannot export a UnixFS {kind.name} node")
