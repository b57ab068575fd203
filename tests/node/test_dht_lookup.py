"""The iterative lookup as a pure state machine: convergence, parallelism, timeouts,
disjoint paths, hop counting."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from colonymesh.node.dht.ids import node_id_of
from colonymesh.node.dht.lookup import DisjointLookup, Lookup, PeerState
from colonymesh.node.dht.messages import PeerInfo
from colonymesh.node.dht.routing import RoutingTable


class Population:
    """`n` peers whose routing tables each saw every other peer (buckets as full as k allows)."""

    def __init__(self, n: int, k: int, seed: int) -> None:
        rng = random.Random(seed)
        self.rng = rng
        self.keys = [rng.randbytes(32) for _ in range(n)]
        self.k = k
        self.tables = {key: RoutingTable(key, k=k, probe_after_s=1e18) for key in self.keys}
        for key, table in self.tables.items():
            order = list(self.keys)
            rng.shuffle(order)
            for other in order:
                if other != key:
                    table.observe(PeerInfo(other), 0.0)

    def closest(self, target: int, n: int, among: list[bytes] | None = None) -> list[bytes]:
        pool = self.keys if among is None else among
        return sorted(pool, key=lambda k: node_id_of(k) ^ target)[:n]


def run_lookup(
    pop: Population,
    start: bytes,
    target: int,
    *,
    alpha: int = 3,
    dead: frozenset[bytes] = frozenset(),
    paths: int = 1,
) -> tuple[Lookup | DisjointLookup, list[list[bytes]]]:
    """Drive a lookup synchronously: answers arrive in random order, the dead time out."""
    seeds = pop.tables[start].closest(target, pop.k)
    lookup: Lookup | DisjointLookup
    if paths == 1:
        lookup = Lookup(target, seeds, k=pop.k, alpha=alpha, self_key=start)
    else:
        lookup = DisjointLookup(target, seeds, paths=paths, k=pop.k, alpha=alpha, self_key=start)
    now = 0.0
    step = lookup.start(now)
    in_flight: list[bytes] = [p.public_key for p in step.query]
    queried_log: list[list[bytes]] = [list(in_flight)]
    while not lookup.finished:
        if len(lookup.waiting()) > alpha * paths:
            raise AssertionError("more than alpha requests in flight")
        live = [p for p in in_flight if p not in dead]
        if live:
            peer = live[pop.rng.randrange(len(live))]
            in_flight.remove(peer)
            closer = pop.tables[peer].closest(target, pop.k)
            step = lookup.on_response(peer, closer, now)
        else:
            now = lookup.next_deadline()
            step = lookup.on_timeout(now)
            for gone in step.failed:
                in_flight.remove(gone)
        new = [p.public_key for p in step.query]
        in_flight.extend(new)
        queried_log.append(new)
    return lookup, queried_log


@pytest.mark.parametrize("seed", range(6))
def test_lookup_finds_exactly_the_k_closest_of_the_population(seed: int) -> None:
    pop = Population(300, k=20, seed=seed)
    for _ in range(5):
        start = pop.keys[pop.rng.randrange(300)]
        target = pop.rng.getrandbits(256)
        lookup, _ = run_lookup(pop, start, target)
        others = [k for k in pop.keys if k != start]
        assert [p.public_key for p in lookup.result()] == pop.closest(target, 20, others)
        assert 1 <= lookup.hops <= 6


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    n=st.integers(2, 120),
    # k = 1 is left out on purpose: with one contact per bucket a lookup walks into the
    # target's bucket but may end at a peer there that is not the closest (about 1 seed
    # in 75 here), which no Kademlia lookup can avoid; from k = 2 on it converges.
    k=st.integers(2, 12),
    alpha=st.integers(1, 4),
)
def test_lookup_convergence_property(seed: int, n: int, k: int, alpha: int) -> None:
    pop = Population(n, k=k, seed=seed)
    start = pop.keys[0]
    target = pop.rng.getrandbits(256)
    lookup, _ = run_lookup(pop, start, target, alpha=alpha)
    expect = pop.closest(target, k, pop.keys[1:])
    assert [p.public_key for p in lookup.result()] == expect


@pytest.mark.parametrize("seed", range(3))
def test_lookup_routes_around_dead_peers(seed: int) -> None:
    pop = Population(250, k=20, seed=100 + seed)
    start = pop.keys[0]
    dead = frozenset(pop.rng.sample(pop.keys[1:], 50))  # 20% of the population
    target = pop.rng.getrandbits(256)
    lookup, _ = run_lookup(pop, start, target, dead=dead)
    live = [k for k in pop.keys[1:] if k not in dead]
    found = [p.public_key for p in lookup.result()]
    expect = pop.closest(target, 20, live)
    # responders still name dead contacts among their k closest, which can hide a live
    # peer ranked just past k overall; the nearest live ones are always found
    assert len(found) == 20 and not set(found) & dead
    assert found[:10] == expect[:10]
    assert len(set(found) & set(expect)) >= 18
    for key in dead:
        assert lookup.state_of(key) is not PeerState.SUCCEEDED


def test_lookup_finds_a_node_by_its_own_id() -> None:
    pop = Population(200, k=8, seed=9)
    wanted = pop.keys[77]
    lookup, _ = run_lookup(pop, pop.keys[3], node_id_of(wanted))
    assert lookup.result()[0].public_key == wanted


def test_at_most_alpha_in_flight_and_timeouts_free_slots() -> None:
    keys = [bytes([i]) * 32 for i in range(1, 11)]
    lookup = Lookup(0, [PeerInfo(k) for k in keys], k=10, alpha=3, request_timeout_s=5.0)
    step = lookup.start(now=0.0)
    assert len(step.query) == 3
    assert lookup.next_deadline() == 5.0
    assert lookup.on_timeout(4.9).query == ()
    step = lookup.on_timeout(5.0)
    assert len(step.failed) == 3 and len(step.query) == 3
    assert len(lookup.waiting()) == 3
    # a late answer from a timed-out peer still counts
    late = step.failed[0]
    lookup.on_response(late, [], 5.5)
    assert lookup.state_of(late) is PeerState.SUCCEEDED


def test_lookup_ends_when_all_fail_and_when_seedless() -> None:
    empty = Lookup(0, [], k=3)
    assert empty.start(0.0).query == () and empty.finished and empty.result() == []
    keys = [bytes([i]) * 32 for i in range(1, 4)]
    lookup = Lookup(0, [PeerInfo(k) for k in keys], k=3, alpha=3)
    lookup.start(0.0)
    for key in keys:
        lookup.on_failure(key, 1.0)
    assert lookup.finished and lookup.result() == []


def test_hops_count_the_chain_of_referrals() -> None:
    a, b, c = (bytes([i]) * 32 for i in (1, 2, 3))
    target = node_id_of(c)
    lookup = Lookup(target, [PeerInfo(a)], k=1, alpha=1)
    assert lookup.start(0.0).query == (PeerInfo(a),)
    step = lookup.on_response(a, [PeerInfo(b)], 0.1)
    assert step.query == (PeerInfo(b),) and lookup.hops_of(b) == 2
    step = lookup.on_response(b, [PeerInfo(c)], 0.2)
    assert lookup.hops_of(c) == 3
    lookup.on_response(c, [], 0.3)
    assert lookup.finished and lookup.hops == 3 and lookup.result() == [PeerInfo(c)]


def test_self_is_never_a_candidate() -> None:
    me = bytes([9]) * 32
    lookup = Lookup(0, [PeerInfo(me)], k=3, self_key=me)
    assert lookup.start(0.0).query == () and lookup.finished


@pytest.mark.parametrize("paths", [2, 4])
def test_disjoint_paths_never_share_a_queried_peer(paths: int) -> None:
    pop = Population(300, k=20, seed=42)
    for _ in range(4):
        target = pop.rng.getrandbits(256)
        lookup, _ = run_lookup(pop, pop.keys[0], target, paths=paths)
        if not isinstance(lookup, DisjointLookup):
            raise AssertionError("expected a disjoint lookup")
        asked = [
            {key for key in path._by_key if path.state_of(key) is PeerState.SUCCEEDED}
            for path in lookup.paths
        ]
        for i in range(paths):
            for j in range(i + 1, paths):
                assert not asked[i] & asked[j]
        expect = pop.closest(target, 20, pop.keys[1:])
        found = [p.public_key for p in lookup.result()]
        # disjoint paths give up exactness for robustness; they still find nearly all
        assert len(set(found) & set(expect)) >= 17
        assert found[0] == expect[0]


def test_peers_max_bounds_candidates() -> None:
    lookup = Lookup(0, [], k=2, alpha=1, peers_max=5)
    lookup._add(PeerInfo(bytes([200]) * 32), 1)
    lookup.start(0.0)
    lookup.on_response(bytes([200]) * 32, [PeerInfo(bytes([i]) * 32) for i in range(1, 40)], 1.0)
    assert len(lookup._by_key) == 5
