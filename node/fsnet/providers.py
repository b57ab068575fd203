"""Provider records for the meta-filesystem: announce roots, find who holds them, over the DHT.

A peer that holds a root in full (pinned) announces it with the DHT's
``ADD_PROVIDER`` under :func:`~colonymesh.fs.replication.provider_key`; the
DHT core republishes every ``provider_republish_s`` and records expire after
``provider_ttl_s``, so a peer that dies stops being named within a TTL.
Only roots are announced (see :mod:`colonymesh.fs.replication` for why):
a lookup for a block inside a DAG falls back to the providers of the roots
being fetched, then to asking the connected peers (WANT_HAVES).

Addresses travel in the provider records; they are handed to the peer's
address book so the chunk exchange can dial a provider it never met.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from colonymesh.fs.cid import Cid
from colonymesh.fs.replication import provider_key
from colonymesh.node.dht.driver import DhtService
from colonymesh.node.dht.effects import DhtBusy, RecordRefused
from colonymesh.node.errors import ColonymeshError
from colonymesh.node.fsnet.fetch import Providers
from colonymesh.node.identity import peer_id_of
from colonymesh.node.peer.peer import Peer

log = logging.getLogger("colonymesh.node.fsnet")

_DHT_ERRORS = (ColonymeshError, DhtBusy, RecordRefused, RuntimeError)


class DhtProviders:
    """Announces roots and finds their providers through `dht`; `fallback` when it finds none."""

    def __init__(self, peer: Peer, dht: DhtService, fallback: Providers | None = None) -> None:
        self.peer = peer
        self.dht = dht
        self.fallback = fallback
        self.announced = 0
        self.lookups = 0

    async def announce(self, root: Cid) -> bool:
        """Publish a provider record for `root` (republished by the DHT until `withdraw`)."""
        try:
            result = await self.dht.provide(provider_key(root))
        except _DHT_ERRORS as error:
            log.info("fs: announcing %s failed: %s", root, error)
            return False
        self.announced += 1
        log.debug("fs: announced %s at %d peers", root, result.stored)
        return True

    def withdraw(self, root: Cid) -> None:
        """Stop republishing `root` (the records elsewhere expire with their TTL)."""
        self.dht.core.stop_providing(provider_key(root))

    async def find(self, cid: Cid) -> list[str]:
        """Peer ids the DHT names as providers of `cid` (addresses learnt), self excluded."""
        self.lookups += 1
        try:
            infos = await self.dht.get_providers(provider_key(cid))
        except _DHT_ERRORS as error:
            log.info("fs: provider lookup for %s failed: %s", cid, error)
            infos = ()
        found: list[str] = []
        for info in infos:
            peer_id = peer_id_of(info.public_key)
            if peer_id == self.peer.peer_id:
                continue
            for addr in info.addrs:
                self.peer.add_address(peer_id, addr)
            found.append(peer_id)
        return sorted(dict.fromkeys(found))

    def for_roots(self, roots: Sequence[Cid]) -> Providers:
        """The lookup a fetch of `roots` uses: the CID's providers, else the roots', else fallback."""

        async def lookup(cid: Cid) -> list[str]:
            found = await self.find(cid)
            for root in roots:
                if found:
                    break
                if root != cid:
                    found = await self.find(root)
            if not found and self.fallback is not None:
                found = await self.fallback(cid)
            return found

        return lookup
