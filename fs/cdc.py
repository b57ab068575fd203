"""FastCDC: a content-defined chunker, optional alternative to fixed-size chunks.

Owns cutting a byte stream where its *content* says so, so that inserting or
deleting bytes in a file moves only the chunk boundaries near the edit and
the rest of the chunks (and their CIDs) stay the same -- better deduplication
of edited files across snapshots than 256 KiB fixed chunks, whose boundaries
all shift after an insertion.

How it works (Xia et al., "FastCDC", USENIX ATC 2016): a Gear rolling hash
``fp = (fp << 1) + GEAR[byte]`` (64-bit) runs over the data; a chunk ends
where ``fp & mask == 0``. Three refinements from the paper:
* cut-point skipping: the first `min_bytes` of a chunk are not examined;
* normalized chunking: before `avg_bytes` a harder mask (2 more bits) is
  used, after it an easier one (2 fewer bits), which tightens the size
  distribution around the average;
* masks take the hash's *high* bits, which depend on the last ~64 bytes,
  rather than the low bits, which depend on only a few.
A chunk is cut at `max_bytes` when no boundary shows up.

The Gear table is ours: entry i is the first 8 bytes of
sha256(b"colonymesh fastcdc gear" + bytes([i])), so it is reproducible from
this docstring. CIDs built with this chunker are valid IPFS CIDs of a
UnixFS DAG, but IPFS's own chunkers would cut differently: they are not the
``ipfs add`` CID (that is what `FixedSizeChunker` is for).

Invariants: chunks depend only on the content from the chunk's start, never
on how the stream was split into `feed` calls; no chunk is empty or longer
than `max_bytes`; only the final chunk may be shorter than `min_bytes`.
Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Final

from colonymesh.fs.errors import FsUsageError

_M64: Final = (1 << 64) - 1
GEAR: Final = tuple(
    int.from_bytes(hashlib.sha256(b"colonymesh fastcdc gear" + bytes([i])).digest()[:8], "big")
    for i in range(256)
)


def _high_mask(bits: int) -> int:
    return ((1 << bits) - 1) << (64 - bits)


class FastCdcChunker:
    """Content-defined chunks averaging `avg_bytes` (a power of two)."""

    def __init__(
        self,
        avg_bytes: int = 256 * 1024,
        min_bytes: int | None = None,
        max_bytes: int | None = None,
    ) -> None:
        if avg_bytes < 64 or avg_bytes & (avg_bytes - 1):
            raise FsUsageError("avg_bytes must be a power of two >= 64")
        self.avg_bytes = avg_bytes
        self.min_bytes = min_bytes if min_bytes is not None else avg_bytes // 4
        self.max_bytes = max_bytes if max_bytes is not None else avg_bytes * 4
        if not 0 < self.min_bytes <= avg_bytes <= self.max_bytes:
            raise FsUsageError("need 0 < min_bytes <= avg_bytes <= max_bytes")
        bits = avg_bytes.bit_length() - 1
        self._mask_small = _high_mask(bits + 2)
        self._mask_large = _high_mask(max(bits - 2, 1))
        self._pending = bytearray()

    def _cut(self, data: bytes) -> int:
        """Length of the chunk that starts at data[0] (data may hold less than max)."""
        n = len(data)
        if n <= self.min_bytes:
            return n
        end = min(n, self.max_bytes)
        normal = min(end, self.avg_bytes)
        gear = GEAR
        fp = 0
        mask = self._mask_small
        i = self.min_bytes
        for byte in data[i:normal]:
            fp = ((fp << 1) + gear[byte]) & _M64
            i += 1
            if not fp & mask:
                return i
        mask = self._mask_large
        for byte in data[i:end]:
            fp = ((fp << 1) + gear[byte]) & _M64
            i += 1
            if not fp & mask:
                return i
        return end

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        self._pending += data
        out: list[bytes] = []
        start = 0
        # Only cut when a full max_bytes window is buffered: then the cut cannot
        # depend on where this feed happened to end.
        while len(self._pending) - start >= self.max_bytes:
            window = bytes(self._pending[start : start + self.max_bytes])
            length = self._cut(window)
            out.append(window[:length])
            start += length
        del self._pending[:start]
        return out

    def finish(self) -> list[bytes]:
        out: list[bytes] = []
        rest = bytes(self._pending)
        self._pending.clear()
        while rest:
            length = self._cut(rest)
            out.append(rest[:length])
            rest = rest[length:]
        return out


def chunk_all(chunker: FastCdcChunker, data: bytes) -> list[bytes]:
    """All chunks of an in-memory buffer (convenience for measurements and tests)."""
    return chunker.feed(data) + chunker.finish()


def shared_bytes_ratio(old: Iterable[bytes], new: Iterable[bytes]) -> float:
    """Fraction of `new`'s bytes that lie in chunks `old` already has (the dedup ratio)."""
    known = {hashlib.sha256(chunk).digest() for chunk in old}
    total = shared = 0
    for chunk in new:
        total += len(chunk)
        if hashlib.sha256(chunk).digest() in known:
            shared += len(chunk)
    return shared / total if total else 1.0
