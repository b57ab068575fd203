"""One colony peer running the DHT and gossip services, driven over stdin/stdout.

    python -m dhtproc FOLDER [--bootstrap MULTIADDR]

``FOLDER`` holds ``member.key``, ``member.cert`` and ``colony.cbor``. The
process prints one JSON line ``{"ready": ..., "addr": ...}`` once it listens,
then answers each JSON command line on stdin with one JSON line on stdout:

    {"op": "stats"}                              -> contacts, neighbours, ...
    {"op": "find", "keys": [hex, ...]}           -> found, missing, latencies_s
    {"op": "put", "key": hex, "value": hex}      -> stored, attempted
    {"op": "provide", "key": hex}                -> stored, attempted
    {"op": "get", "key": hex}                    -> value (hex or null), latency_s
    {"op": "subscribe", "topic": t}
    {"op": "publish", "topic": t, "data": hex}   -> msg_id
    {"op": "received", "topic": t}               -> data: [hex, ...]
    {"op": "count", "msg_id": hex}               -> delivered
    {"op": "ping", "peers": [peer id, ...]}      -> latencies_s (signed request/response)
    {"op": "quit"}

Used by the real-process tests in this folder and by ``bench/dht.py``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import trio

from colonymesh.node.certs import Certificate, Membership, decode_record
from colonymesh.node.colonyfiles import read_colony
from colonymesh.node.dht.driver import DhtService, DhtServiceConfig
from colonymesh.node.dht.effects import DhtConfig
from colonymesh.node.gossip.driver import GossipService
from colonymesh.node.gossip.effects import Delivered
from colonymesh.node.identity import peer_id_of, read_key_file
from colonymesh.node.peer.peer import Peer, PeerConfig


def peer_config(folder: Path, bootstrap: tuple[str, ...]) -> PeerConfig:
    return PeerConfig(
        keys=read_key_file(folder / "member.key"),
        membership=Membership(read_colony(folder)),
        certificate=decode_record(Certificate, (folder / "member.cert").read_bytes()),
        bootstrap=bootstrap,
    )


def reply(document: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(document) + "\n")
    sys.stdout.flush()


async def serve(folder: Path, bootstrap: tuple[str, ...]) -> None:
    received: dict[str, list[str]] = {}
    async with Peer.open(peer_config(folder, bootstrap)) as peer, trio.open_nursery() as nursery:
        dht_config = DhtServiceConfig(dht=DhtConfig(request_timeout_s=2.0))
        dht: DhtService = await nursery.start(DhtService(peer, dht_config).run)
        gossip: GossipService = await nursery.start(GossipService(peer).run)
        reply({"ready": peer.peer_id, "addr": f"{peer.listen_addrs[0]}/p2p/{peer.peer_id}"})

        async def find(keys: list[str]) -> dict[str, Any]:
            missing, latencies = [], []
            for key in keys:
                started = trio.current_time()
                found = await dht.find_peer(bytes.fromhex(key))
                latencies.append(trio.current_time() - started)
                if found is None:
                    missing.append(key)
            return {"found": len(keys) - len(missing), "missing": missing, "latencies_s": latencies}

        async def ping(peers: list[str]) -> dict[str, Any]:
            return {"latencies_s": [await peer.ping(p, timeout=5.0) for p in peers]}

        while True:
            line = await trio.to_thread.run_sync(sys.stdin.readline)
            if not line:
                break
            command = json.loads(line)
            op = command["op"]
            if op == "quit":
                break
            if op == "stats":
                reply(
                    {
                        "peer_id": peer.peer_id,
                        "contacts": len(dht.core.table),
                        "neighbours": len(gossip.neighbours()),
                        "dht": dht.statistics(),
                        "gossip": gossip.statistics(),
                    }
                )
            elif op == "find":
                reply(await find(command["keys"]))
            elif op == "put":
                stored = await dht.put_value(
                    bytes.fromhex(command["key"]), bytes.fromhex(command["value"])
                )
                reply({"stored": stored.stored, "attempted": stored.attempted})
            elif op == "provide":
                provided = await dht.provide(bytes.fromhex(command["key"]))
                reply({"stored": provided.stored, "attempted": provided.attempted})
            elif op == "get":
                started = trio.current_time()
                record = await dht.get_value(bytes.fromhex(command["key"]))
                reply(
                    {
                        "value": None if record is None else record.value.hex(),
                        "publisher": None if record is None else peer_id_of(record.publisher),
                        "latency_s": trio.current_time() - started,
                    }
                )
            elif op == "subscribe":
                topic = command["topic"]
                box = received.setdefault(topic, [])

                def take(delivered: Delivered, box: list[str] = box) -> None:
                    box.append(delivered.data.hex())

                gossip.subscribe(topic, take)
                reply({"subscribed": topic})
            elif op == "publish":
                msg_id = await gossip.publish(command["topic"], bytes.fromhex(command["data"]))
                reply({"msg_id": msg_id.hex()})
            elif op == "received":
                reply({"data": received.get(command["topic"], [])})
            elif op == "count":
                reply({"delivered": gossip.delivery_count(bytes.fromhex(command["msg_id"]))})
            elif op == "ping":
                reply(await ping(command["peers"]))
            else:
                reply({"error": f"unknown op {op}"})
        nursery.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    parser.add_argument("--bootstrap", action="append", default=[])
    args = parser.parse_args()
    if os.environ.get("DHTPROC_LOG"):
        logging.basicConfig(
            level=os.environ["DHTPROC_LOG"].upper(),
            format="%(relativeCreated)d %(name)s %(message)s",
        )
    trio.run(serve, args.folder, tuple(args.bootstrap))


if __name__ == "__main__":
    main()
