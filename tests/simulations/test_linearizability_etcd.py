"""The linearizability checker proven on histories from a real etcd cluster (issue 5).

Three etcd 3.4 members run on loopback behind peer proxies we control
(``support.etcdcluster``). Concurrent clients put unique values and read
through the v3 gateway, recording invocation and completion times; mid-run
one follower is cut off from the other two (both directions, its client port
still open) and later healed.

* Linearizable reads (etcd's default, ReadIndex through the leader) must give
  a history the checker accepts, partition and all -- a checker that rejects
  a correct system is as useless as one that accepts a broken one.
* Serializable reads (``serializable: true``, served from the member's local
  state) from the partitioned follower return values the majority has since
  overwritten: the checker must reject that history and name the stale read,
  while the same history without the serializable reads passes.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from colonymesh.simulations.linearizability import KvInput, KvOperation, Operation, check_kv
from support.etcdcluster import EtcdCluster, EtcdError, Member, etcd_available

pytestmark = pytest.mark.skipif(not etcd_available(), reason="/usr/bin/etcd is not installed")

KEYS_PER_RUN = 3


def keys_of(seed: int) -> tuple[str, ...]:
    """Each run writes its own keys: the checker's model starts with every key absent."""
    return tuple(f"s{seed}.k{i}" for i in range(KEYS_PER_RUN))


CLIENTS = 4
TIMEOUT_S = 0.5
MIN_OPS = 40  # completed reads, and acknowledged writes, in a history


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster.start(tmp_path_factory.mktemp("etcd"))
    try:
        yield cluster
    finally:
        cluster.close()


@dataclass
class Recorder:
    """A shared, thread-safe history with the serializable reads marked."""

    ops: list[KvOperation] = field(default_factory=list)
    serializable: set[int] = field(default_factory=set)  # indexes into ops
    lock: threading.Lock = field(default_factory=threading.Lock)
    t0: float = field(default_factory=time.monotonic)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def put(self, etcd: EtcdCluster, m: Member, client: int, key: str, value: str) -> bool:
        call = self.now()
        try:
            etcd.put(m, key, value, timeout_s=TIMEOUT_S)
            ret = self.now()
        except EtcdError:
            ret = math.inf  # it may or may not have taken effect
        with self.lock:
            self.ops.append(Operation(client, call, ret, KvInput("put", key, value), None))
        return not math.isinf(ret)

    def get(
        self, etcd: EtcdCluster, m: Member, client: int, key: str, *, serializable: bool
    ) -> KvOperation | None:
        """The recorded read, or None if it failed (a read nobody saw constrains nothing)."""
        call = self.now()
        try:
            value = etcd.get(m, key, serializable=serializable, timeout_s=TIMEOUT_S)
        except EtcdError:
            return None
        op: KvOperation = Operation(client, call, self.now(), KvInput("get", key), value)
        with self.lock:
            if serializable:
                self.serializable.add(len(self.ops))
            self.ops.append(op)
        return op

    def big_enough(self, each: int = MIN_OPS) -> bool:
        """At least ``each`` completed reads and as many acknowledged writes."""
        with self.lock:
            done = [op.input.op for op in self.ops if not math.isinf(op.ret)]
        return done.count("get") >= each and done.count("put") >= each

    def without_serializable(self) -> list[KvOperation]:
        return [op for i, op in enumerate(self.ops) if i not in self.serializable]


def run_clients(
    etcd: EtcdCluster,
    recorder: Recorder,
    stop: threading.Event,
    *,
    seed: int,
    serializable_on: Member | None = None,
) -> list[threading.Thread]:
    """Start ``CLIENTS`` clients on random members; with ``serializable_on``, one more client
    reads serializably from that member."""

    def client(index: int) -> None:
        rng = random.Random(seed * 100 + index)
        keys = keys_of(seed)
        seq = 0
        while not stop.is_set():
            m = rng.choice(etcd.members)
            key = rng.choice(keys)
            if rng.random() < 0.5:
                seq += 1
                recorder.put(etcd, m, index, key, f"c{index}.{seq}")
            else:
                recorder.get(etcd, m, index, key, serializable=False)

    def stale_reader(index: int, m: Member) -> None:
        rng = random.Random(seed * 100 + index)
        while not stop.is_set():
            recorder.get(etcd, m, index, rng.choice(keys_of(seed)), serializable=True)
            time.sleep(0.002)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    if serializable_on is not None:
        threads.append(threading.Thread(target=stale_reader, args=(CLIENTS, serializable_on)))
    for t in threads:
        t.start()
    return threads


def partition_run(
    etcd: EtcdCluster, recorder: Recorder, follower: Member, *, seed: int, serializable: bool
) -> tuple[str, KvOperation | None]:
    """Run the clients through: healthy, ``follower`` cut off, healed. Returns the write the
    majority acknowledged while the follower was cut off, and what a serializable read from the
    follower then returned (None when ``serializable`` is off)."""
    stop = threading.Event()
    threads = run_clients(
        etcd, recorder, stop, seed=seed, serializable_on=follower if serializable else None
    )
    seen: KvOperation | None = None
    fresh = f"fresh.{seed}"
    try:
        time.sleep(0.4)
        etcd.partition().isolate(follower.name)
        leader = etcd.leader(among=[m for m in etcd.members if m is not follower])
        # A write the majority acknowledges after the cut; the follower cannot have it.
        if not recorder.put(etcd, leader, CLIENTS + 1, keys_of(seed)[0], fresh):
            raise AssertionError("the majority did not acknowledge a write")
        if serializable:
            seen = recorder.get(etcd, follower, CLIENTS + 1, keys_of(seed)[0], serializable=True)
        time.sleep(0.6)
        etcd.partition().heal()
        time.sleep(0.4)
        # On a loaded machine etcd is slower: run on until the history is big enough.
        deadline = time.monotonic() + 15
        while not recorder.big_enough() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        etcd.partition().heal()
        stop.set()
        for t in threads:
            t.join(timeout=10)
    return fresh, seen


def settle(etcd: EtcdCluster) -> None:
    """Wait until every member serves linearizable reads again (the healed follower may have
    disrupted the leader with its higher term)."""
    deadline = time.monotonic() + 10
    for m in etcd.members:
        while True:
            try:
                etcd.get(m, "settle", timeout_s=TIMEOUT_S)
                break
            except EtcdError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def pick_follower(etcd: EtcdCluster) -> Member:
    leader = etcd.leader()
    return next(m for m in etcd.members if m is not leader)


def test_linearizable_reads_through_a_partition_pass(etcd: EtcdCluster) -> None:
    settle(etcd)
    recorder = Recorder()
    follower = pick_follower(etcd)
    partition_run(etcd, recorder, follower, seed=1, serializable=False)
    settle(etcd)
    ops = recorder.ops
    gets = [op for op in ops if op.input.op == "get"]
    puts_acked = [op for op in ops if op.input.op == "put" and not math.isinf(op.ret)]
    print(f"etcd linearizable history: {len(ops)} ops, {len(gets)} reads, {len(puts_acked)} acked")
    assert recorder.big_enough(), "too small a history to prove anything"
    assert any(op.output is not None for op in gets), "reads saw no writes"
    result = check_kv(ops)
    assert result.ok is True, result.failed_partition


def test_serializable_reads_from_a_partitioned_follower_are_caught(etcd: EtcdCluster) -> None:
    settle(etcd)
    recorder = Recorder()
    follower = pick_follower(etcd)
    fresh, seen = partition_run(etcd, recorder, follower, seed=2, serializable=True)
    settle(etcd)
    ops = recorder.ops
    print(
        f"etcd stale history: {len(ops)} ops, {len(recorder.serializable)} serializable reads; "
        f"follower saw {seen and seen.output!r} after the majority acked {fresh!r}"
    )
    # The cut is real: the follower answered from its old state, not the acknowledged write.
    assert seen is not None, "the partitioned follower did not answer a serializable read"
    assert seen.output != fresh
    result = check_kv(ops)
    assert result.ok is False
    # The first failing key is the one the deterministic stale read was on, and it is named.
    stale = (
        f"c{CLIENTS + 1} [{seen.call:.6f}, {seen.ret:.6f}] get {seen.input.key} -> {seen.output}"
    )
    assert stale in result.failed_partition
    # Exactly the serializable reads are to blame: without them the history is linearizable.
    clean = check_kv(recorder.without_serializable())
    assert clean.ok is True, clean.failed_partition
