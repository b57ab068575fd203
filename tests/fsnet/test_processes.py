"""Real OS processes: a file put on one peer is read on another; a chunk corrupted on
disk at the first provider is detected there and served from another.

Three peers, each its own Python process with its own chunk store, on loopback
with real TCP, Noise, yamux and colony gating. A puts a multi-chunk file; B
reads it byte for byte; then every leaf block file under A's store is corrupted
(bytes flipped in place, as bit rot would) and C reads the file: A's verified
reads find the rot, drop the blocks and answer DONT_HAVE, and C gets those
blocks from B. A then reads its own file back whole, refetching what it lost.
"""

from __future__ import annotations

import json
import os
import queue
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from colonymesh.fs.cid import CODEC_RAW, Cid
from colonymesh.fs.local import cid_of_path

HERE = Path(__file__).parent
REPLY_TIMEOUT_S = 60.0


class Node:
    def __init__(
        self, secret: str, members: int, now: int, index: int, folder: Path, dht: bool = False
    ) -> None:
        folder.mkdir(parents=True)
        self.store = folder / "store"
        self.log = (folder / "stderr.log").open("wb")
        env = dict(
            os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
        )
        args = [secret, str(members), str(now), str(index), str(self.store)]
        if dht:
            args.append("dht")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "fsnode", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=env,
            text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        stdout = self.process.stdout
        if stdout is None:
            raise RuntimeError("no stdout pipe")
        threading.Thread(target=self._pump, args=(stdout,), daemon=True).start()
        hello = self._read()
        self.peer_id: str = hello["peer_id"]
        self.addr: str = hello["addr"]

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put("")

    def _read(self) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=REPLY_TIMEOUT_S)
        except queue.Empty:
            raise AssertionError("no answer from the node process in time") from None
        if not line:
            raise AssertionError(f"node process exited: {self.process.wait()}")
        doc: dict[str, Any] = json.loads(line)
        return doc

    def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        stdin = self.process.stdin
        if stdin is None:
            raise RuntimeError("no stdin pipe")
        stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
        stdin.flush()
        answer = self._read()
        if "error" in answer:
            raise AssertionError(f"{cmd}: {answer['error']}")
        return answer

    def stop(self) -> int:
        if self.process.poll() is None:
            try:
                self.call("quit")
                return self.process.wait(timeout=20)
            except (AssertionError, OSError, subprocess.TimeoutExpired):
                self.process.kill()
        code = self.process.wait()
        self.log.close()
        return code


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[list[Node]]:
    now = int(time.time())
    started: list[Node] = []
    try:
        for index in range(3):
            started.append(Node("proc", 3, now, index, tmp_path / f"node-{index}"))
        yield started
    finally:
        codes = [node.stop() for node in started]
        assert codes == [0] * len(started)


def test_put_read_elsewhere_and_corruption_served_by_another(
    nodes: list[Node], tmp_path: Path
) -> None:
    a, b, c = nodes
    for x, y in ((a, b), (a, c), (b, c)):
        assert x.call("connect", addr=y.addr)["peer_id"] == y.peer_id
    source = tmp_path / "input.bin"
    data = random.Random(9).randbytes(5 * 1024 * 1024 + 4321)  # 21 chunks and a root
    source.write_bytes(data)

    root = a.call("put", path=str(source))["cid"]
    assert root == cid_of_path(source)

    got = b.call("get", cid=root, dest=str(tmp_path / "on-b.bin"))
    assert got["ok"] and got["by_peer"] == {a.peer_id: 22}
    assert (tmp_path / "on-b.bin").read_bytes() == data

    # Bit rot at A: flip bytes in the middle of every leaf block file.
    leaves = [p for p in (a.store / "blocks").rglob("*") if p.is_file() and p.name != root]
    assert len(leaves) == 21
    for path in leaves:
        assert Cid.parse(path.name).codec == CODEC_RAW
        with path.open("r+b") as handle:
            handle.seek(1000)
            byte = handle.read(1)
            handle.seek(1000)
            handle.write(bytes([byte[0] ^ 0x5A]))

    got = c.call("get", cid=root, dest=str(tmp_path / "on-c.bin"))
    assert (tmp_path / "on-c.bin").read_bytes() == data
    assert got["ok"] and sum(got["by_peer"].values()) == 22
    stats_a = a.call("stats")
    assert stats_a["corrupt_blocks"] >= 1  # A detected rot on the blocks C asked it for
    assert stats_a["dont_haves_sent"] == stats_a["corrupt_blocks"]
    assert got["by_peer"][b.peer_id] >= stats_a["corrupt_blocks"]  # ... and B served them

    # A reads its own file: every rotten leaf is detected locally and refetched.
    got = a.call("get", cid=root, dest=str(tmp_path / "on-a.bin"))
    assert (tmp_path / "on-a.bin").read_bytes() == data
    assert got["blocks_fetched"] == 21  # the rot C found earlier, and the rest found now
    assert a.call("stats")["corrupt_blocks"] == 21


def _holds(node: Node, root: str) -> bool:
    return any(root in roots for roots in node.call("pins")["pins"].values())


def _wait_for(predicate: Any, timeout_s: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout_s} s")


def test_dht_providers_parallel_fetch_and_repair_after_losing_two(tmp_path: Path) -> None:
    """Five processes on the DHT: a put is replicated to 3, a reader finds the providers
    through provider records and pulls from several at once, and after two holders die
    the survivors bring the root back to 3 replicas."""
    now = int(time.time())
    nodes = [Node("repl", 5, now, i, tmp_path / f"node-{i}", dht=True) for i in range(5)]
    try:
        hub = nodes[0]
        for node in nodes[1:]:
            assert node.call("connect", addr=hub.addr)["peer_id"] == hub.peer_id
        source = tmp_path / "input.bin"
        data = random.Random(5).randbytes(3 * 1024 * 1024 + 77)  # 13 chunks and a root
        source.write_bytes(data)
        origin = nodes[1]
        root = origin.call("put", path=str(source))["cid"]

        def holders() -> list[Node]:
            return [n for n in nodes if n.process.poll() is None and _holds(n, root)]

        replicated_s = _wait_for(lambda: len(holders()) >= 3, 60.0, "replication to 3")
        held = holders()
        reader = next(n for n in nodes if n not in held)
        got = reader.call("get", cid=root, dest=str(tmp_path / "read.bin"))
        assert (tmp_path / "read.bin").read_bytes() == data
        assert got["ok"] and len(got["by_peer"]) >= 2, got["by_peer"]  # several providers
        assert set(got["by_peer"]) <= {n.peer_id for n in held}
        assert reader.call("replication")["provider_lookups"] >= 1

        # Lose two holders that are not the reader (now a holder too) nor the hub.
        victims = [n for n in holders() if n not in (reader, hub)][:2]
        assert len(victims) == 2
        survivors = [n for n in nodes if n not in victims]
        asks_before = sum(n.call("replication")["asks"] for n in survivors)
        for victim in victims:
            victim.process.kill()
            victim.process.wait()
        assert len(holders()) == 2  # the reader and one other: the loss left a deficit
        repaired_s = _wait_for(lambda: len(holders()) >= 3, 90.0, "repair back to 3")
        assert sum(n.call("replication")["asks"] for n in survivors) > asks_before
        print(f"replicated in {replicated_s:.1f} s, repaired in {repaired_s:.1f} s")
    finally:
        for node in nodes:
            if node.process.poll() is None:
                assert node.stop() == 0
            else:
                node.log.close()
