"""One replicated key-value server as an OS process: the real Raft core, driver and transport.

    python kvnode.py FOLDER

``FOLDER`` holds ``member.key``, ``member.cert``, ``colony.cbor`` and
``kvnode.json``::

    {"listen": "/ip4/127.0.0.1/tcp/P", "client_host": "127.0.0.1", "client_port": C,
     "peers": {peer_id: "/ip4/127.0.0.1/tcp/Q", ...},   # every voter, this one included
     "election_timeout_s": 0.3, "heartbeat_interval_s": 0.05}

The node is a colony peer (Noise, certificates) with the ``server`` role; its
Raft messages travel on :class:`~colonymesh.node.raft.network.PeerRaftNetwork`
and its log lives in a :class:`~colonymesh.consensus.storage.LogStore` under
``FOLDER/raft`` (fsync before anything is acknowledged). The state machine is
the simulator's :class:`~colonymesh.simulations.kv.KvStore`, whose client
sessions make a retried command take effect at most once.

Clients speak JSON lines on ``client_host:C`` (one request at a time per
connection)::

    {"op": "put"|"get", "client": c, "seq": s, "key": k, "value": v}
        -> {"ok": true, "value": ...} | {"ok": false, "leader": peer_id|null, "error": "..."}
    {"op": "status"} -> {"id", "role", "term", "leader", "commit", "applied"}
    {"op": "dump"}   -> status plus "log": [[index, client, seq, effective], ...], "data": {...}

Both reads and writes go through the log, so both are linearizable. The
process prints ``{"ready": peer_id}`` once it listens and runs until killed.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import trio

from colonymesh.consensus import NotLeader, RaftConfig
from colonymesh.consensus.storage import LogStore
from colonymesh.consensus.types import Entry, NodeId
from colonymesh.node.certs import Certificate, Membership, decode_record
from colonymesh.node.colonyfiles import read_colony
from colonymesh.node.identity import read_key_file
from colonymesh.node.peer.peer import Peer, PeerConfig
from colonymesh.node.raft.driver import RaftDriver
from colonymesh.node.raft.network import PeerRaftNetwork
from colonymesh.simulations.kv import ClientRequest, KvStore

PROPOSE_TIMEOUT_S = 1.0
LINE_BYTES_MAX = 64 * 1024


class KvMachine:
    """KvStore under the driver's StateMachine protocol, recording which entries took effect."""

    def __init__(self) -> None:
        self.store = KvStore()
        # (index, client, seq, effective): effective is False for a duplicate the session absorbed
        self.log: list[tuple[int, int, int, bool]] = []

    def apply(self, entry: Entry) -> Any:
        client, seq = json.loads(entry.data)[:2]
        last = self.store.sessions.get(client)
        effective = last is None or seq > last[0]
        self.log.append((int(entry.index), client, seq, effective))
        return self.store.apply(entry.data)

    def snapshot(self) -> bytes:
        return json.dumps([self.store.encode().decode(), self.log]).encode()

    def restore(self, data: bytes) -> None:
        store, log = json.loads(data)
        self.store = KvStore.decode(store.encode())
        self.log = [tuple(row) for row in log]  # type: ignore[misc]


def status_of(driver: RaftDriver) -> dict[str, Any]:
    status = driver.status()
    return {
        "id": driver.node_id,
        "role": status.role.name,
        "term": int(status.term),
        "leader": status.leader,
        "commit": int(status.commit),
        "applied": int(status.applied),
    }


async def answer(driver: RaftDriver, machine: KvMachine, request: dict[str, Any]) -> dict[str, Any]:
    op = request.get("op")
    if op == "status":
        return status_of(driver)
    if op == "dump":
        return status_of(driver) | {"log": machine.log, "data": machine.store.data}
    if op not in ("put", "get"):
        return {"ok": False, "leader": None, "error": f"unknown op {op!r}"}
    command = KvStore.encode_command(
        ClientRequest(
            int(request["client"]),
            int(request["seq"]),
            op,
            str(request["key"]),
            None if request.get("value") is None else str(request["value"]),
        )
    )
    try:
        with trio.fail_after(PROPOSE_TIMEOUT_S):
            result = await driver.propose(command)
    except NotLeader as error:
        return {"ok": False, "leader": error.leader_hint, "error": "not the leader"}
    except trio.TooSlowError:
        return {"ok": False, "leader": driver.status().leader, "error": "timed out"}
    except Exception as error:  # ProposalLost, a stopped driver: the client retries
        return {"ok": False, "leader": driver.status().leader, "error": repr(error)}
    if result is None:
        return {"ok": False, "leader": None, "error": "superseded by a newer operation"}
    return {"ok": True, "value": result[2]}


async def serve_client(stream: trio.SocketStream, driver: RaftDriver, machine: KvMachine) -> None:
    buffer = b""
    async with stream:
        while True:
            try:
                chunk = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                return
            if not chunk:
                return
            buffer += chunk
            if len(buffer) > LINE_BYTES_MAX:
                return
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                try:
                    request = json.loads(line)
                    reply = await answer(driver, machine, request)
                except (ValueError, KeyError, TypeError) as error:
                    reply = {"ok": False, "leader": None, "error": f"bad request: {error}"}
                try:
                    await stream.send_all(json.dumps(reply).encode() + b"\n")
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return


async def main(folder: Path) -> None:
    settings = json.loads((folder / "kvnode.json").read_text())
    config = PeerConfig(
        keys=read_key_file(folder / "member.key"),
        membership=Membership(read_colony(folder)),
        certificate=decode_record(Certificate, (folder / "member.cert").read_bytes()),
        listen=(settings["listen"],),
    )
    peers: dict[str, str] = settings["peers"]
    store = LogStore.open(folder / "raft")
    machine = KvMachine()
    try:
        async with Peer.open(config) as peer, trio.open_nursery() as nursery:
            for peer_id, address in sorted(peers.items()):
                if peer_id != peer.peer_id:
                    peer.add_address(peer_id, address)
            driver: RaftDriver | None = None

            def deliver(message: Any) -> None:
                if driver is not None:
                    driver.deliver(message)

            network = PeerRaftNetwork(peer, nursery, deliver)
            driver = RaftDriver(
                NodeId(peer.peer_id),
                store,
                machine,
                network,
                founding_voters=[NodeId(p) for p in sorted(peers)],
                raft_config=RaftConfig(
                    election_timeout_s=float(settings["election_timeout_s"]),
                    heartbeat_interval_s=float(settings["heartbeat_interval_s"]),
                ),
            )
            await nursery.start(driver.run)
            running = driver
            host = str(settings.get("client_host", "127.0.0.1"))
            listeners = await trio.open_tcp_listeners(int(settings["client_port"]), host=host)
            nursery.start_soon(
                trio.serve_listeners, lambda s: serve_client(s, running, machine), listeners
            )
            sys.stdout.write(json.dumps({"ready": peer.peer_id}) + "\n")
            sys.stdout.flush()
    finally:
        store.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    trio.run(main, Path(sys.argv[1]))
