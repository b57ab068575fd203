"""`ChunkService`: a peer's meta-filesystem -- put, get, ls, info over the chunk exchange.

Binds a :class:`~colonymesh.fs.store.ChunkStore` to a :class:`Peer`: serves
``/colonymesh/fs/1.0.0`` from the store (:mod:`.serve`) and fetches what it
lacks from providers (:mod:`.fetch`). Who provides a CID is an injected
lookup ``providers(cid) -> [peer_id]``; the default, :meth:`ChunkService.ask_connected`,
asks every connected peer "do you have it" (WANT_HAVES), which the DHT's
provider records replace later without touching the rest.

Integrity end to end: every block is verified against its CID when it
arrives (the session core), when it is stored (`put_bytes`) and whenever it
is read (`get`). A block that rots on our disk is dropped by the store on
the read that finds it; `get` then fetches it again from a provider and
carries on, so the caller only ever sees the bytes the CID names.

Blocking store calls run on worker threads; the store serialises them.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from colonymesh.fs.cid import Cid
from colonymesh.fs.errors import CorruptChunkError, FsError
from colonymesh.fs.exchange import messages
from colonymesh.fs.exchange.messages import Haves, WantHaves
from colonymesh.fs.exchange.session import SessionConfig
from colonymesh.fs.local import import_path
from colonymesh.fs.pb import DataType
from colonymesh.fs.reader import decode_node, list_directory
from colonymesh.fs.store import ChunkStore
from colonymesh.node.dht.driver import DhtService
from colonymesh.node.errors import ColonymeshError, InputError
from colonymesh.node.fsnet.export import BlockGate, export_atomic
from colonymesh.node.fsnet.fetch import Fetch, FetchResult, Providers
from colonymesh.node.fsnet.frames import FrameReader, frame_prefix
from colonymesh.node.fsnet.providers import DhtProviders
from colonymesh.node.fsnet.serve import PROTOCOL_ID, BlockServer, read_block
from colonymesh.node.peer.peer import Peer

log = logging.getLogger("colonymesh.node.fsnet")

PIN_PREFIX = "fs:"
_GET_ATTEMPTS = 3


class FetchFailed(ColonymeshError):
    """The content could not be fetched from any provider."""


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    session: SessionConfig = field(default_factory=SessionConfig)
    have_timeout_s: float = 3.0
    connect_timeout_s: float = 5.0
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class GetResult:
    cid: Cid
    dest: Path
    fetched: FetchResult
    refetched_corrupt: int


class ChunkService:
    """Meta-filesystem operations of one peer over one chunk store."""

    def __init__(
        self,
        peer: Peer,
        store: ChunkStore,
        providers: Providers | None = None,
        config: ServiceConfig | None = None,
    ) -> None:
        self.peer = peer
        self.store = store
        self.config = config or ServiceConfig()
        self.providers: Providers = providers or self.ask_connected
        self.server = BlockServer(store)
        # Called (on the trio thread) with each root this service pins: the
        # replication driver tracks and announces it at once.
        self.pin_hooks: list[Callable[[Cid], object]] = []
        self.dht_providers: DhtProviders | None = None
        self._rng = random.Random(
            self.config.seed if self.config.seed is not None else os.urandom(8)
        )
        peer.set_stream_handler(PROTOCOL_ID, self.server.serve)

    # --- put ------------------------------------------------------------------------

    async def put_path(self, path: str | os.PathLike[str]) -> Cid:
        """Import a local file or folder into the store, pinned; its root CID."""
        root = await trio.to_thread.run_sync(self._put_path_sync, os.fspath(path))
        self._pinned(root)
        return root

    def use_dht(self, dht: DhtService) -> DhtProviders:
        """Find providers through the DHT's provider records (then the connected peers)."""
        self.dht_providers = DhtProviders(self.peer, dht, fallback=self.ask_connected)
        return self.dht_providers

    def _pinned(self, root: Cid) -> None:
        for hook in self.pin_hooks:
            hook(root)

    def _put_path_sync(self, path: str) -> Cid:
        if not os.path.lexists(path):
            raise InputError(f"{path}: no such file or folder")
        with self.store.holding(), self.store.batch() as sink:
            root = import_path(path, sink.put).cid
            sink.flush()  # every block durable before the pin names them
            self.store.pin(PIN_PREFIX + root.encode(), [root])
        return root

    # --- fetch and get --------------------------------------------------------------

    async def fetch(
        self,
        roots: Sequence[Cid],
        *,
        walk: bool = True,
        providers: Providers | None = None,
        on_stored: Callable[[list[Cid]], None] | None = None,
    ) -> FetchResult:
        """Make every block under `roots` local (only the roots if not `walk`).

        `providers` replaces the service's lookup for this fetch (e.g. one that
        also asks the peers a label's revision names).
        """
        session = self.config.session
        if not walk:
            session = SessionConfig(
                per_peer_inflight_max=session.per_peer_inflight_max,
                inflight_max=session.inflight_max,
                peer_timeout_s=session.peer_timeout_s,
                blocks_max=session.blocks_max,
                walk=False,
            )
        if providers is None and self.dht_providers is not None:
            providers = self.dht_providers.for_roots(roots)
        fetch = Fetch(
            self.peer,
            self.store,
            providers or self.providers,
            roots,
            session,
            random.Random(self._rng.getrandbits(64)),
            self.config.connect_timeout_s,
            on_stored=on_stored,
        )
        return await fetch.run()

    async def get(
        self,
        cid: Cid,
        dest: str | os.PathLike[str],
        *,
        providers: Providers | None = None,
        pin: bool = True,
    ) -> GetResult:
        """Fetch `cid` (pinning it unless not `pin`) and write it to `dest`, which must not exist.

        The export runs beside the fetch (:mod:`.export`): it writes each block
        as soon as it is durable in the store, read back verified, into a
        temporary name that is fsynced and renamed to `dest` once complete.
        """
        target = Path(dest)
        if target.exists() or target.is_symlink():
            raise InputError(f"{target}: already exists")
        refetched = 0
        for _ in range(_GET_ATTEMPTS):
            gate = BlockGate(self.store)
            exported: list[Exception | None] = []

            async with trio.open_nursery() as nursery:
                nursery.start_soon(_export, gate, cid, target, exported)
                try:
                    fetched = await self.fetch([cid], providers=providers, on_stored=gate.stored)
                    if fetched.ok and pin:
                        await trio.to_thread.run_sync(
                            self.store.pin, PIN_PREFIX + cid.encode(), [cid]
                        )
                        self._pinned(cid)
                finally:
                    gate.close()  # the export reads what is there, or fails, and ends
            if not fetched.ok:
                raise FetchFailed(f"{cid}: {fetched.error}")
            error = exported[0] if exported else None
            if isinstance(error, CorruptChunkError):
                # The store dropped the rotten block; fetch it again and start over.
                log.warning("fs: get %s: %s; fetching it again", cid, error)
                refetched += 1
                continue
            if error is not None:
                raise error
            return GetResult(cid, target, fetched, refetched)
        raise FetchFailed(f"{cid}: blocks kept failing verification after {_GET_ATTEMPTS} tries")

    # --- ls and info ----------------------------------------------------------------

    async def _root_block(self, cid: Cid) -> bytes:
        data = await trio.to_thread.run_sync(read_block, self.store, cid)
        if data is None:
            fetched = await self.fetch([cid], walk=False)
            if not fetched.ok:
                raise FetchFailed(f"{cid}: {fetched.error}")
            data = await trio.to_thread.run_sync(read_block, self.store, cid)
            if data is None:
                raise FetchFailed(f"{cid}: fetched but not readable from the store")
        return data

    async def ls(self, cid: Cid) -> list[dict[str, Any]]:
        """The entries of a directory (or the one entry of a file), fetching only the root."""
        data = await self._root_block(cid)
        try:
            node = decode_node(cid, data)
            if node.kind != DataType.DIRECTORY:
                return [{"name": "", "cid": cid.encode(), "size": _size(cid, data)}]
            entries = list_directory(lambda _: data, cid)
        except FsError as error:
            raise InputError(f"{cid}: {error}") from None
        return [{"name": e.name, "cid": e.cid.encode(), "size": e.tsize} for e in entries]

    async def info(self, cid: Cid) -> dict[str, Any]:
        data = await self._root_block(cid)
        try:
            node = decode_node(cid, data)
        except FsError as error:
            raise InputError(f"{cid}: {error}") from None
        return {
            "cid": cid.encode(),
            "type": node.kind.name.lower(),
            "size": _size(cid, data),
            "links": len(node.links),
            "pinned": PIN_PREFIX + cid.encode() in self.store.pins(),
            "local_root": True,
        }

    # --- providers ------------------------------------------------------------------

    async def ask_connected(self, cid: Cid) -> list[str]:
        """The connected peers that say they hold `cid` (HAVE), asked in parallel."""
        found: list[str] = []

        async def ask(peer_id: str) -> None:
            with trio.move_on_after(self.config.have_timeout_s):
                try:
                    if await self._ask_have(peer_id, cid):
                        found.append(peer_id)
                except (ColonymeshError, FsError, trio.BrokenResourceError, OSError) as error:
                    log.debug("fs: HAVE %s to %s failed: %s", cid, peer_id, error)

        async with trio.open_nursery() as nursery:
            for peer_id in sorted(self.peer.connected_peers()):
                if peer_id != self.peer.peer_id:
                    nursery.start_soon(ask, peer_id)
        return sorted(found)

    async def ask_have(self, peer_id: str, cid: Cid) -> bool:
        """Whether `peer_id` says it holds the block `cid` (one WANT_HAVES on a new stream)."""
        return await self._ask_have(peer_id, cid)

    async def _ask_have(self, peer_id: str, cid: Cid) -> bool:
        stream = await self.peer.open_stream(peer_id, [PROTOCOL_ID], self.config.have_timeout_s)
        async with stream:
            payload = messages.encode(WantHaves((cid,)))
            await stream.send_all(frame_prefix(len(payload)) + payload)
            frame = await FrameReader(stream).read()
            if frame is None:
                return False
            answer = messages.decode(frame)
            return isinstance(answer, Haves) and cid in answer.cids

    def statistics(self) -> dict[str, Any]:
        store = self.store.statistics()
        return {
            "blocks": store.blocks,
            "used_bytes": store.used_bytes,
            "corrupt_blocks": store.corrupt_blocks,
            "served_blocks": self.server.core.stats.blocks_sent,
            "served_bytes": self.server.core.stats.bytes_sent,
            "dont_haves_sent": self.server.core.stats.dont_haves_sent,
            "streams": self.server.stats.streams,
        }


def _size(cid: Cid, data: bytes) -> int:
    node = decode_node(cid, data)
    if node.raw is not None:
        return len(node.raw)
    if node.unixfs is not None and node.unixfs.filesize is not None:
        return node.unixfs.filesize
    return sum(link.tsize or 0 for link in node.links)


async def _export(gate: BlockGate, cid: Cid, target: Path, out: list[Exception | None]) -> None:
    """Run `export_atomic` on a worker thread; its outcome (None or the error) into `out`."""
    try:
        await trio.to_thread.run_sync(export_atomic, gate, cid, os.fspath(target))
        out.append(None)
    except (FsError, OSError) as failure:
        out.append(failure)
