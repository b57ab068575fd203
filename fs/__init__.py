"""The meta-filesystem: content addressing, the local chunk store and (later) chunk exchange.

Public entry points
-------------------

``cid_of_path(path) -> str``
    The IPFS CIDv1 (base32, ``bafy...``/``bafk...``) of a local file or folder,
    exactly as ``ipfs add -r --hidden --cid-version=1 --raw-leaves`` prints it
    (256 KiB fixed-size chunks, raw leaves, balanced layout of 174 links per
    node, sha2-256). Needs no node, writes nothing, streams the file so memory
    stays bounded. Backs ``colonymesh fs cid PATH``. Raises ``OSError`` for an
    unreadable path and ``UnsupportedError`` for entries IPFS would encode in a
    way we do not (sockets/devices, non-UTF-8 names, directories big enough for
    HAMT sharding).

Modules
-------

* ``cid``      -- varints, multihash, multibase, ``Cid`` (pure).
* ``pb``       -- strict dag-pb PBNode/PBLink and UnixFS Data codec (pure).
* ``importer`` -- streaming UnixFS importer: chunks -> blocks -> root (pure).
* ``cdc``      -- FastCDC content-defined chunker, an optional ``Chunker`` (pure).
* ``reader``   -- walks a DAG back into bytes / directory entries (pure).
* ``local``    -- imports local paths into blocks (disk reads).
* ``store``    -- the on-disk chunk store: atomic writes, verified reads, pins,
  garbage collection, a size bound (disk I/O).
* ``syncplan`` -- what to download and upload to make a folder and a label agree (pure).
* ``errors``   -- the typed errors; everything raised on bad input is an ``FsError``.

``fs`` imports nothing else of colonymesh.
"""

from colonymesh.fs.local import cid_of_path

__all__ = ["cid_of_path"]
