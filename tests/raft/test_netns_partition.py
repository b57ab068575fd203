"""A real network partition: three KV processes in three network namespaces (issue 5; Raft §5.2,
§5.4, check-quorum from the dissertation §6.2).

Each ``kvnode.py`` runs in its own namespace, joined to the others by a veth
pair into a bridge that lives in a fourth (hub) namespace; Raft traffic goes
over that data network only. A second veth pair per node, to the test's own
namespace, carries client requests and status queries (the namespaces have no
routes between the two networks). Bringing the leader's bridge port down cuts
it off from its peers but not from us, so the test can watch it:

* the majority elects a new leader and keeps committing;
* the old leader steps down by check-quorum and cannot commit: a write sent to
  it during the partition is never applied anywhere;
* after healing, every replica applies the same log, no acknowledged write is
  lost, nothing takes effect twice, and the client history is linearizable.

Needs root and a working ``ip netns`` (CI runs as root); skipped otherwise.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from colonymesh.simulations.linearizability import check_kv
from support.kvcluster import KvCluster, Node, Workload, ask, converged_dumps

ELECTION_TIMEOUT_S = 0.3
PEER_PORT, CLIENT_PORT = 7401, 7402


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def _netns_usable() -> str | None:
    """None if we can build namespaces, else the reason we cannot."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    probe = f"cmprobe{os.getpid()}"
    try:
        _ip("netns", "add", probe)
        _ip("netns", "del", probe)
    except (subprocess.CalledProcessError, OSError) as error:
        return f"ip netns does not work here: {error}"
    return None


_REASON = _netns_usable()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


class Namespaces:
    """A hub namespace with a bridge, and three node namespaces wired to it and to us."""

    def __init__(self) -> None:
        tag = os.getpid() % 100000
        self.subnet = 1 + tag % 250
        self.hub = f"cmkv{tag}h"
        self.nodes = [f"cmkv{tag}n{i}" for i in range(3)]
        self.ports = [f"cv{tag}d{i}" for i in range(3)]  # bridge ports, in the hub
        self.mgmt = [f"cv{tag}m{i}" for i in range(3)]  # our ends of the client links
        self.data_ips = [f"10.213.{self.subnet}.{i + 1}" for i in range(3)]
        self.client_ips = [f"10.214.{self.subnet}.{4 * i + 2}" for i in range(3)]

    def build(self) -> None:
        hub = self.hub
        _ip("netns", "add", hub)
        _ip("-n", hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", hub, "link", "set", "br0", "up")
        for i, ns in enumerate(self.nodes):
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip(
                "-n", hub, "link", "add", self.ports[i], "type", "veth", "peer", "eth0", "netns", ns
            )
            _ip("-n", hub, "link", "set", self.ports[i], "master", "br0")
            _ip("-n", hub, "link", "set", self.ports[i], "up")
            _ip("-n", ns, "addr", "add", f"{self.data_ips[i]}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("link", "add", self.mgmt[i], "type", "veth", "peer", "mgmt0", "netns", ns)
            _ip("addr", "add", f"10.214.{self.subnet}.{4 * i + 1}/30", "dev", self.mgmt[i])
            _ip("link", "set", self.mgmt[i], "up")
            _ip("-n", ns, "addr", "add", f"{self.client_ips[i]}/30", "dev", "mgmt0")
            _ip("-n", ns, "link", "set", "mgmt0", "up")

    def cut(self, i: int) -> None:
        _ip("-n", self.hub, "link", "set", self.ports[i], "down")

    def heal(self, i: int) -> None:
        _ip("-n", self.hub, "link", "set", self.ports[i], "up")

    def destroy(self) -> None:
        for name in self.mgmt:
            subprocess.run(["ip", "link", "del", name], capture_output=True, timeout=10)
        for ns in [*self.nodes, self.hub]:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


@pytest.fixture
def namespaces() -> Iterator[Namespaces]:
    spaces = Namespaces()
    try:
        spaces.build()
        yield spaces
    finally:
        spaces.destroy()


async def role_of(node: Node) -> str | None:
    status = await ask(node, {"op": "status"}, 1.0)
    return None if status is None else str(status["role"])


async def wait_leader(nodes: list[Node], timeout_s: float = 10.0) -> Node:
    with trio.fail_after(timeout_s):
        while True:
            for n in nodes:
                if await role_of(n) == "LEADER":
                    return n
            await trio.sleep(0.02)


async def watch_failover(
    old: Node, majority: list[Node], cut_at: float, timeout_s: float = 10.0
) -> tuple[Node, float, float]:
    """Poll both sides at once: (the new leader, when it was seen, when the old one stepped
    down), times in seconds after the cut."""
    new: Node | None = None
    new_at = down_at = math.inf
    with trio.fail_after(timeout_s):
        while new is None or math.isinf(down_at):
            now = trio.current_time() - cut_at
            if math.isinf(down_at) and await role_of(old) not in ("LEADER", None):
                down_at = now
            if new is None:
                for n in majority:
                    if await role_of(n) == "LEADER":
                        new, new_at = n, now
            await trio.sleep(0.01)
    return new, new_at, down_at


async def test_a_leader_cut_off_by_a_real_partition_steps_down_and_loses_nothing(
    tmp_path: Path, namespaces: Namespaces
) -> None:
    cluster = KvCluster(
        tmp_path,
        namespaces.data_ips,
        [(PEER_PORT, CLIENT_PORT)] * 3,
        prefixes=[("ip", "netns", "exec", ns) for ns in namespaces.nodes],
        client_hosts=namespaces.client_ips,
        election_timeout_s=ELECTION_TIMEOUT_S,
    )
    try:
        cluster.start()
        old = await wait_leader(cluster.nodes)
        index = cluster.nodes.index(old)
        majority = [n for n in cluster.nodes if n is not old]
        work = Workload(cluster)
        async with trio.open_nursery() as nursery:
            for c in range(1, 5):
                nursery.start_soon(work.client, c, 100 + c)
            await trio.sleep(1.0)
            cut_at = trio.current_time()
            namespaces.cut(index)
            new, new_leader_s, stepped_down_s = await watch_failover(old, majority, cut_at)
            # The old leader cannot commit: this write must never take effect.
            probe = {"op": "put", "client": 99, "seq": 1, "key": "a", "value": "orphan"}
            refused = await ask(old, probe, 3.0)
            acked_during = len(work.acks)
            await trio.sleep(1.0)
            committed_in_partition = len(work.acks) - acked_during
            namespaces.heal(index)
            await trio.sleep(1.5)
            work.stopped = True
        dumps = await converged_dumps(cluster.nodes)
    finally:
        cluster.stop()

    print(
        f"netns partition: new leader {new_leader_s * 1000:.0f} ms after the cut, old leader "
        f"stepped down at {stepped_down_s * 1000:.0f} ms; {len(work.history)} ops, "
        f"{len(work.acked_puts)} acked puts, {committed_in_partition} acks in 1 s of partition"
    )
    assert new is not old
    assert committed_in_partition > 0, "the majority kept committing"
    assert stepped_down_s < 2 * ELECTION_TIMEOUT_S + 1.0, "check-quorum stepped the leader down"
    assert refused is None or not refused.get("ok"), f"the cut-off leader acked: {refused}"

    logs = [[tuple(row) for row in d["log"]] for d in dumps]
    assert all(log == logs[0] for log in logs), "replicas applied different logs"
    assert all(d["data"] == dumps[0]["data"] for d in dumps)
    effective = Counter((client, seq) for _, client, seq, eff in logs[0] if eff)
    assert (99, 1) not in effective, "a write to the cut-off leader was applied"
    assert not [op for op, count in effective.items() if count > 1], "applied twice"
    missing = [op for op in work.acked_puts if op not in effective]
    assert not missing, f"acknowledged puts lost: {missing}"
    assert sum(1 for op in work.history if not math.isinf(op.ret)) >= 50
    result = check_kv(work.history)
    assert result.ok is True, result.failed_partition
