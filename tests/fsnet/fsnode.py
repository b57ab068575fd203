"""One file-serving peer in its own OS process, driven by JSON lines on stdin.

``python -m fsnode SECRET MEMBERS NOW INDEX STORE_DIR [dht]`` (with ``tests/fsnet`` on
the path) rebuilds the lab colony from SECRET (every process derives the same
one), opens member INDEX's peer on loopback with a chunk store in STORE_DIR and
a `ChunkService`, prints ``{"peer_id", "addr"}`` and then answers one JSON line
per command line::

    {"cmd": "connect", "addr": A}          -> {"peer_id": ...}
    {"cmd": "put", "path": P}              -> {"cid": ...}
    {"cmd": "get", "cid": C, "dest": D}    -> {"ok", "by_peer", "refetched", "blocks_fetched"}
    {"cmd": "stats"}                       -> ChunkService.statistics()
    {"cmd": "pins"}                        -> {"pins": {label: [cid, ...]}}
    {"cmd": "replication"}                 -> ReplicationService.statistics()

With ``dht`` the peer also joins the colony's DHT through the peers it connects
to, finds providers through provider records and keeps 3 replicas of every
pinned root (checks every 2 s, so tests see repair in seconds).
    {"cmd": "quit"}                        -> {} and the process exits 0

An error is answered ``{"error": "one line"}``; the process keeps serving.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import trio

from colonymesh.fs.cid import Cid
from colonymesh.fs.replication import ReplicationConfig
from colonymesh.fs.store import ChunkStore
from colonymesh.node.dht.driver import DhtService, DhtServiceConfig
from colonymesh.node.dht.effects import DhtConfig
from colonymesh.node.errors import ColonymeshError
from colonymesh.node.fsnet import ChunkService
from colonymesh.node.fsnet.lab import lab_colony
from colonymesh.node.fsnet.replicate import ReplicationService, ReplicationServiceConfig
from colonymesh.node.peer.peer import Peer

# Dead peers are found out in a second, not the default five: tests kill peers.
DHT_CONFIG = DhtServiceConfig(dht=DhtConfig(request_timeout_s=1.0), self_lookup_first_s=1.0)


def _reply(doc: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


async def _command(
    service: ChunkService, replication: ReplicationService | None, doc: dict[str, Any]
) -> dict[str, Any]:
    match doc.get("cmd"):
        case "pins":
            pins = service.store.pins()
            return {"pins": {label: [c.encode() for c in pins[label]] for label in sorted(pins)}}
        case "replication" if replication is not None:
            return replication.statistics()
        case "connect":
            return {"peer_id": await service.peer.connect(doc["addr"], timeout=10)}
        case "put":
            return {"cid": (await service.put_path(doc["path"])).encode()}
        case "get":
            got = await service.get(Cid.parse(doc["cid"]), doc["dest"])
            return {
                "ok": got.fetched.ok,
                "by_peer": got.fetched.by_peer,
                "refetched": got.refetched_corrupt,
                "blocks_fetched": got.fetched.blocks_fetched,
            }
        case "stats":
            return service.statistics()
    raise ColonymeshError(f"unknown command {doc.get('cmd')!r}")


async def main(secret: str, members: int, now: int, index: int, store_dir: Path, dht: bool) -> None:
    lab = lab_colony(secret, members, now)
    async with Peer.open(lab.peer_config(index)) as peer, trio.open_nursery() as nursery:
        service = ChunkService(peer, ChunkStore(store_dir, 2**33))
        replication = None
        if dht:
            dht_service = await nursery.start(DhtService(peer, DHT_CONFIG).run)
            fast = ReplicationConfig(
                check_interval_s=2.0,
                check_jitter_s=0.5,
                repair_timeout_s=10.0,
                failed_cooldown_s=10.0,
            )
            replication = await nursery.start(
                ReplicationService(
                    service, service.use_dht(dht_service), ReplicationServiceConfig(fast)
                ).run
            )
        await _serve_commands(peer, service, replication)
        nursery.cancel_scope.cancel()


async def _serve_commands(
    peer: Peer, service: ChunkService, replication: ReplicationService | None
) -> None:
    _reply({"peer_id": peer.peer_id, "addr": peer.listen_addrs[0]})
    while True:
        line = await trio.to_thread.run_sync(sys.stdin.readline)
        if not line:
            return
        doc = json.loads(line)
        if doc.get("cmd") == "quit":
            _reply({})
            return
        try:
            _reply(await _command(service, replication, doc))
        except (ColonymeshError, OSError, ValueError) as error:
            _reply({"error": f"{type(error).__name__}: {error}"})


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    secret_arg, members_arg, now_arg, index_arg, store_arg = sys.argv[1:6]
    with_dht = sys.argv[6:7] == ["dht"]
    trio.run(
        main, secret_arg, int(members_arg), int(now_arg), int(index_arg), Path(store_arg), with_dht
    )
