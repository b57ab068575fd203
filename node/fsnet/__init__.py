"""The meta-filesystem on the network: the chunk-exchange driver and `ChunkService`.

* ``frames``  -- length-prefixed frames of ``/colonymesh/fs/1.0.0`` on a stream.
* ``serve``   -- `BlockServer`: answers peers' want-lists from the chunk store.
* ``fetch``   -- `Fetch`: drives one exchange session (parallel, verified) over streams.
* ``service`` -- `ChunkService`: put / get / ls / info for one peer and its store.
* ``providers`` -- `DhtProviders`: announce pinned roots, find providers (DHT records).
* ``replicate`` -- `ReplicationService`: keeps k replicas of every pinned root.

A node wires distribution with::

    chunks = ChunkService(peer, store)
    dht = await nursery.start(DhtService(peer, DhtServiceConfig()).run)
    await nursery.start(ReplicationService(chunks, chunks.use_dht(dht)).run)
"""

from colonymesh.node.fsnet.fetch import FetchResult, Providers
from colonymesh.node.fsnet.serve import PROTOCOL_ID
from colonymesh.node.fsnet.service import ChunkService, FetchFailed, GetResult, ServiceConfig

__all__ = [
    "PROTOCOL_ID",
    "ChunkService",
    "FetchFailed",
    "FetchResult",
    "GetResult",
    "Providers",
    "ServiceConfig",
]
