"""Three ``tests/raft/kvnode.py`` processes and the clients that drive them, for real-process tests.

The cluster writes each node's folder (its key, a ``server`` certificate of a
fresh colony, the colony record, ``kvnode.json``) and starts the nodes as OS
processes, optionally through a command prefix (``ip netns exec NS``). Clients
are trio tasks in the test process: each runs one operation at a time, retries
the *same* numbered operation on another node (following the leader hint) until
it is answered or its deadline passes, and records invocation and completion
times for the linearizability checker. A put that was never answered has an
unknown outcome (``ret = inf``); an unanswered get is dropped.
"""

from __future__ import annotations

import json
import math
import os
import random
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from colonymesh.node.certs import Role, create_colony, encode_record, issue_certificate
from colonymesh.node.colonyfiles import COLONY_FILE
from colonymesh.node.identity import KeyPair, peer_id_of, write_key_file
from colonymesh.simulations.linearizability import KvInput, KvOperation, Operation

KVNODE = Path(__file__).parent.parent / "raft" / "kvnode.py"
REPLY_BYTES_MAX = 16 * 1024 * 1024


@dataclass
class Node:
    name: str
    folder: Path
    peer_id: str
    host: str
    peer_port: int
    client_port: int
    prefix: tuple[str, ...] = ()
    client_host: str = ""  # where clients reach it; defaults to ``host``
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.client_host = self.client_host or self.host

    def start(self) -> None:
        log = (self.folder / "stderr.log").open("ab")
        argv = [*self.prefix, sys.executable, str(KVNODE), str(self.folder)]
        self.process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log
        )
        log.close()

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        process = self.process
        if process is None or process.stdout is None:
            raise RuntimeError(f"{self.name} is not started")
        buffer = b""
        deadline = time.monotonic() + timeout_s
        while b"\n" not in buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name} not ready in {timeout_s} s: {self.log_tail()}")
            ready, _, _ = select.select([process.stdout], [], [], left)
            if ready:
                chunk = os.read(process.stdout.fileno(), 4096)
                if not chunk:
                    raise RuntimeError(f"{self.name} exited: {self.log_tail()}")
                buffer += chunk
        if json.loads(buffer.split(b"\n", 1)[0]).get("ready") != self.peer_id:
            raise RuntimeError(f"{self.name} announced another peer id: {buffer!r}")

    def kill(self) -> None:
        """SIGKILL: no goodbye, no flush; what was not fsynced is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self) -> str:
        path = self.folder / "stderr.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


class KvCluster:
    def __init__(
        self,
        root: Path,
        hosts: Sequence[str],
        ports: Sequence[tuple[int, int]],
        *,
        prefixes: Sequence[tuple[str, ...]] | None = None,
        client_hosts: Sequence[str] | None = None,
        election_timeout_s: float = 0.3,
        heartbeat_interval_s: float = 0.05,
    ) -> None:
        self.election_timeout_s = election_timeout_s
        owner = KeyPair.generate()
        now = int(time.time())
        colony = create_colony(owner, "kv", now - 7200)
        self.nodes: list[Node] = []
        keys = [KeyPair.generate() for _ in hosts]
        for i, (host, (peer_port, client_port)) in enumerate(zip(hosts, ports, strict=True)):
            folder = root / f"kv{i}"
            folder.mkdir(parents=True)
            certificate = issue_certificate(
                owner,
                colony,
                keys[i].public_key,
                name=f"kv{i}",
                roles=(Role.SERVER,),
                not_before=now - 3600,
                not_after=now + 6 * 3600,
                serial=i + 1,
            )
            write_key_file(folder / "member.key", keys[i])
            (folder / "member.cert").write_bytes(encode_record(certificate))
            (folder / COLONY_FILE).write_bytes(encode_record(colony))
            prefix = prefixes[i] if prefixes is not None else ()
            client_host = client_hosts[i] if client_hosts is not None else host
            peer_id = peer_id_of(keys[i].public_key)
            node = Node(
                f"kv{i}", folder, peer_id, host, peer_port, client_port, prefix, client_host
            )
            self.nodes.append(node)
        peers = {n.peer_id: f"/ip4/{n.host}/tcp/{n.peer_port}" for n in self.nodes}
        for n in self.nodes:
            settings = {
                "listen": f"/ip4/{n.host}/tcp/{n.peer_port}",
                # A separate client address (a management link) means: listen on all.
                "client_host": n.host if n.client_host == n.host else "0.0.0.0",
                "client_port": n.client_port,
                "peers": peers,
                "election_timeout_s": election_timeout_s,
                "heartbeat_interval_s": heartbeat_interval_s,
            }
            (n.folder / "kvnode.json").write_text(json.dumps(settings))

    def by_id(self, peer_id: str | None) -> Node | None:
        return next((n for n in self.nodes if n.peer_id == peer_id), None)

    def start(self) -> None:
        for n in self.nodes:
            n.start()
        for n in self.nodes:
            n.wait_ready()

    def stop(self) -> None:
        for n in self.nodes:
            n.kill()


async def request(node: Node, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """One request on a fresh connection (the nodes are on loopback: cheap)."""
    with trio.fail_after(timeout_s):
        stream = await trio.open_tcp_stream(node.client_host, node.client_port)
        async with stream:
            await stream.send_all(json.dumps(body).encode() + b"\n")
            buffer = b""
            while b"\n" not in buffer:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    raise ConnectionError(f"{node.name} closed the connection")
                buffer += chunk
                if len(buffer) > REPLY_BYTES_MAX:
                    raise ConnectionError(f"{node.name} sent an oversized reply")
    answer: dict[str, Any] = json.loads(buffer.split(b"\n", 1)[0])
    return answer


async def ask(node: Node, body: dict[str, Any], timeout_s: float = 2.0) -> dict[str, Any] | None:
    try:
        return await request(node, body, timeout_s)
    except (OSError, ValueError, trio.TooSlowError, trio.BrokenResourceError):
        return None


@dataclass
class Workload:
    """Shared by the clients: the recorded history and when each op was acknowledged."""

    cluster: KvCluster
    keys: tuple[str, ...] = ("a", "b", "c")
    op_deadline_s: float = 4.0
    request_timeout_s: float = 1.5
    t0: float = field(default_factory=trio.current_time)
    history: list[KvOperation] = field(default_factory=list)
    acked_puts: list[tuple[int, int]] = field(default_factory=list)  # (client, seq)
    acks: list[tuple[float, str]] = field(default_factory=list)  # (completion time, node)
    stopped: bool = False

    def now(self) -> float:
        return trio.current_time() - self.t0

    async def client(self, client: int, seed: int) -> None:
        rng = random.Random(seed)
        nodes = self.cluster.nodes
        target = rng.choice(nodes)
        seq = 0
        while not self.stopped:
            seq += 1
            key = rng.choice(self.keys)
            is_put = rng.random() < 0.6
            value = f"c{client}.{seq}" if is_put else None
            body = {"op": "put" if is_put else "get", "client": client, "seq": seq}
            body |= {"key": key, "value": value}
            call = self.now()
            deadline = call + self.op_deadline_s
            result: dict[str, Any] | None = None
            while self.now() < deadline:
                reply = await ask(target, body, self.request_timeout_s)
                if reply is not None and reply.get("ok"):
                    result = reply
                    self.acks.append((self.now(), target.name))
                    break
                hinted = self.cluster.by_id(reply.get("leader") if reply else None)
                if hinted is not None and hinted is not target:
                    target = hinted
                else:
                    target = nodes[(nodes.index(target) + 1) % len(nodes)]
                    await trio.sleep(0.01)
            ret = self.now() if result is not None else math.inf
            if is_put:
                self.history.append(Operation(client, call, ret, KvInput("put", key, value), None))
                if result is not None:
                    self.acked_puts.append((client, seq))
            elif result is not None:
                output = result.get("value")
                self.history.append(Operation(client, call, ret, KvInput("get", key), output))


async def converged_dumps(nodes: Sequence[Node], timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """Dumps of ``nodes`` once they have all applied the same index (the leader's commit)."""
    with trio.fail_after(timeout_s):
        while True:
            dumps = [await ask(n, {"op": "dump"}) for n in nodes]
            complete = [d for d in dumps if d is not None]
            if len(complete) == len(nodes):
                applied = {d["applied"] for d in complete}
                commits = {d["commit"] for d in complete}
                if len(applied) == 1 and applied == commits:
                    return complete
            await trio.sleep(0.05)
