"""The world of the ``dht`` scenario: real Kademlia cores behind simulator adapters, and the truth.

What it owns: :class:`DhtPeer`, the adapter that runs one
:class:`~colonymesh.node.dht.DhtNode` on the simulated network (exactly what
``node/dht/driver.py`` does on trio: feed messages and ticks, send what the
core asks, report its events); :class:`DhtWorld`, the shared tables every
adapter consults (peer index by key, who is live, what each operation was);
and :class:`LiveIds`, the ground truth a lookup is judged against.

Ground truth: the ids of the peers that are *ready* (booted and joined) kept
sorted. The ids sharing the top ``b`` bits with a target form one contiguous
range of that sorted list, and each of them is closer to the target (XOR)
than any id outside it, so the true ``k`` closest lie in the longest-prefix
range holding at least ``k`` ids: two bisections per prefix length, never a
scan of the population.

Determinism: every container here is a list or a dict (insertion order);
random draws come from the simulator's generator only.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import assert_never

from colonymesh.node.dht import (
    DhtConfig,
    DhtNode,
    LookupFinished,
    Output,
    PeerInfo,
    PeerMisbehaved,
    ProvidersLookupFinished,
    SendMessage,
    StoreFinished,
    ValueLookupFinished,
)
from colonymesh.node.dht.ids import ID_BITS
from colonymesh.simulations.engine import NodeIO

__all__ = ["DhtPeer", "DhtWorld", "LiveIds", "OpRecord"]


class LiveIds:
    """The ids of live, joined peers, sorted, with when each became ready."""

    __slots__ = ("_ids", "ready_at")

    def __init__(self) -> None:
        self._ids: list[int] = []
        self.ready_at: dict[int, float] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, node_id: int, now: float) -> None:
        if node_id in self.ready_at:
            return
        bisect.insort(self._ids, node_id)
        self.ready_at[node_id] = now

    def bulk_load(self, ids: list[int], now: float) -> None:
        """Load a whole population at once (faster than ``add`` one by one)."""
        for node_id in ids:
            self.ready_at[node_id] = now
        self._ids = sorted(self.ready_at)

    def remove(self, node_id: int) -> None:
        if self.ready_at.pop(node_id, None) is None:
            return
        i = bisect.bisect_left(self._ids, node_id)
        del self._ids[i]

    def _range(self, target: int, prefix_bits: int) -> tuple[int, int]:
        shift = ID_BITS - prefix_bits
        lo = (target >> shift) << shift
        ids = self._ids
        return bisect.bisect_left(ids, lo), bisect.bisect_left(ids, lo + (1 << shift))

    def in_range(self, lo_id: int, hi_id: int) -> list[int]:
        """Ready ids in ``[lo_id, hi_id)``, ascending."""
        ids = self._ids
        return ids[bisect.bisect_left(ids, lo_id) : bisect.bisect_left(ids, hi_id)]

    def closest(self, target: int, k: int, ready_by: float) -> list[int]:
        """The ``k`` ready ids (ready no later than ``ready_by``) nearest ``target`` (XOR)."""
        ready_at = self.ready_at
        total = len(self._ids)
        if total == 0:
            return []
        # the longest prefix whose range still holds k ids (count shrinks with length)
        bits = 0
        while bits < ID_BITS:
            lo, hi = self._range(target, bits + 1)
            if hi - lo < k:
                break
            bits += 1
        while True:
            lo, hi = self._range(target, bits)
            found = [i for i in self._ids[lo:hi] if ready_at[i] <= ready_by]
            if len(found) >= k or bits == 0:
                break
            bits -= 1
        found.sort(key=lambda i: i ^ target)
        return found[:k]


@dataclass(slots=True)
class OpRecord:
    """One operation the scenario started, and how it ended."""

    kind: str  # "lookup", "provide", "providers"
    peer: int
    target: int
    key: bytes
    started: float
    finished: float = -1.0
    hops: int = 0
    queried: int = 0
    ok: bool = False
    exact: bool = False
    recall: float = 0.0


Finished = Callable[[int, LookupFinished | ProvidersLookupFinished | StoreFinished, float], None]


class DhtWorld:
    """What all adapters share: identities, liveness, operations, counters."""

    __slots__ = (
        "config",
        "ids",
        "index_of",
        "infos",
        "join_config",
        "joins",
        "left_at",
        "live",
        "misbehaved",
        "on_finished",
        "ops",
        "warm_joiners",
    )

    def __init__(self, config: DhtConfig, on_finished: Finished) -> None:
        self.config = config
        self.infos: list[PeerInfo] = []  # by simulator index; one object, shared by every table
        self.ids: list[int] = []
        self.index_of: dict[bytes, int] = {}
        self.live = LiveIds()
        self.left_at: dict[int, float] = {}  # index -> when it left
        self.joins: dict[int, list[PeerInfo]] = {}  # index -> seeds it must join through
        # peers whose table the scenario fills (as refreshes would) before they join: their
        # bootstrap is the core's own self-lookup without the far-bucket refreshes
        self.warm_joiners: dict[int, None] = {}
        self.join_config = replace(config, refresh_on_bootstrap=False)
        self.ops: dict[tuple[int, int], OpRecord] = {}  # (peer, op id) -> record
        self.misbehaved = 0
        self.on_finished = on_finished

    @staticmethod
    def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
        """Value records are not exercised here; none may pass unverified."""
        return False

    def is_member(self, public_key: bytes) -> bool:
        return public_key in self.index_of


class DhtPeer:
    """Adapter: one real ``DhtNode`` on the simulated network."""

    __slots__ = ("core", "index", "io", "world")

    def __init__(self, io: NodeIO, world: DhtWorld) -> None:
        self.io = io
        self.world = world
        self.index = io.index
        self.core: DhtNode | None = None

    def start(self, now: float) -> None:
        world = self.world
        self.core = DhtNode(
            world.infos[self.index],
            verify=world.verify,
            is_member=world.is_member,
            rng=self.io.rng,
            config=world.join_config if self.index in world.warm_joiners else world.config,
            now=now,
        )
        seeds = world.joins.pop(self.index, None)
        if seeds:
            self.bootstrap(seeds, now)

    def bootstrap(self, seeds: list[PeerInfo], now: float) -> None:
        _, out = self._core().bootstrap(seeds, now)
        self._apply(out, now)

    def _core(self) -> DhtNode:
        if self.core is None:
            raise RuntimeError(f"peer {self.index} used before it started")
        return self.core

    def deliver(self, src: int, msg: object, now: float) -> None:
        out = self._core().handle_message(self.world.infos[src], msg, now)  # type: ignore[arg-type]
        self._apply(out, now)

    def fire(self, now: float) -> None:
        self._apply(self._core().tick(now), now)

    def next_deadline(self) -> float | None:
        return self._core().next_deadline()

    def start_op(self, kind: str, target: int, key: bytes, now: float) -> None:
        """Start a measured operation (the scenario's workload)."""
        core = self._core()
        if kind == "lookup":
            op_id, out = core.find_node(target.to_bytes(32, "big"), now)
        elif kind == "provide":
            op_id, out = core.provide(key, now)
        else:
            op_id, out = core.get_providers(key, now)
        self.world.ops[(self.index, op_id)] = OpRecord(kind, self.index, target, key, now)
        self._apply(out, now)

    def _apply(self, out: list[Output], now: float) -> None:
        world = self.world
        send = self.io.send
        for effect in out:
            match effect:
                case SendMessage(to=to, message=message):
                    send(world.index_of[to.public_key], message)
                case LookupFinished() | ProvidersLookupFinished() | StoreFinished():
                    world.on_finished(self.index, effect, now)
                case ValueLookupFinished():
                    pass  # not started by this scenario
                case PeerMisbehaved():
                    world.misbehaved += 1
                case _:
                    assert_never(effect)
