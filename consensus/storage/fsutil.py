"""Small, careful file-system helpers: whole writes and reads, fsync of directories,
atomic file replacement. The only place in ``consensus/storage`` that knows the
POSIX rules for making a rename or an unlink durable."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path


def pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    """Write all of ``data`` at ``offset`` (``os.pwrite`` may write less than asked)."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def pread_exact(fd: int, length: int, offset: int) -> bytes:
    """Read exactly ``length`` bytes at ``offset``; a short file raises EOFError."""
    chunks: list[bytes] = []
    remaining = length
    while remaining:
        chunk = os.pread(fd, remaining, offset)
        if not chunk:
            raise EOFError(f"file ends {remaining} bytes short of {offset + remaining}")
        chunks.append(chunk)
        offset += len(chunk)
        remaining -= len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def read_file(path: Path) -> bytes:
    with open(path, "rb", buffering=0) as f:
        return f.read()


def fsync_dir(directory: Path) -> None:
    """Make creations, renames and unlinks in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes | Sequence[bytes], *, fsync: bool) -> None:
    """Replace ``path`` with ``data`` (or the concatenation of its parts) so a crash leaves either the old or the new file.

    Write a temporary file, fsync it, rename it over ``path``, fsync the
    directory. Without the first fsync a crash could leave the new name
    pointing at an empty file; without the last, the old name could come back.
    """
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        offset = 0
        for part in [data] if isinstance(data, bytes) else data:
            pwrite_all(fd, part, offset)
            offset += len(part)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if fsync:
        fsync_dir(path.parent)
