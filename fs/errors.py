"""Typed errors of the meta-filesystem.

Split by blame, as h11 does: `FsDecodeError` and its subclasses mean the
bytes we were handed (from a peer or from disk) are malformed; `FsUsageError`
means our own caller asked for something impossible; store errors describe
the local chunk store. Every error here is an `FsError`, so a driver can close
the offending connection with one `except FsError` and keep the node running.
"""

from __future__ import annotations


class FsError(Exception):
    """Base of every error raised by `colonymesh.fs`."""


class FsDecodeError(FsError, ValueError):
    """Bytes that should encode a CID, multihash, protobuf or DAG node do not."""


class CidError(FsDecodeError):
    """A malformed or unsupported CID, multibase string or multihash."""


class ProtobufError(FsDecodeError):
    """A malformed protobuf message (dag-pb PBNode/PBLink or UnixFS Data)."""


class UnixFsError(FsDecodeError):
    """A structurally valid block whose UnixFS meaning is inconsistent."""


class BlockMismatchError(FsDecodeError):
    """Bytes offered for a CID do not hash to it (a lying or broken peer)."""


class FsUsageError(FsError):
    """We asked the library for something it cannot do (a local bug or bad argument)."""


class UnsupportedError(FsUsageError):
    """Well-formed input that this implementation deliberately does not handle."""


class StoreError(FsError):
    """Base of the local chunk store's errors."""


class ChunkNotFoundError(StoreError, KeyError):
    """The store holds no block for this CID."""


class CorruptChunkError(StoreError):
    """A stored block no longer matches its CID; it has been removed so it can be re-fetched."""


class StoreFullError(StoreError):
    """The block does not fit: the size bound is reached and nothing unpinned is left to evict."""
