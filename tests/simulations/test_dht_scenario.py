"""The dht scenario: the real Kademlia core under churn, judged against the true k closest."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from colonymesh.node.dht import LookupFinished, PeerInfo
from colonymesh.simulations import dht_world
from colonymesh.simulations.dht_scenario import DhtScenarioConfig, run
from colonymesh.simulations.dht_world import LiveIds
from colonymesh.simulations.runner import deterministic_view, run_scenario

SMALL = DhtScenarioConfig(
    peers=50,
    join_spread_s=10.0,
    settle_s=10.0,
    phase_s=30.0,
    lookups=100,
    provides=15,
    provider_lookups=30,
    drain_s=20.0,
)


@pytest.mark.parametrize("seed", range(3))
def test_small_sweep_with_real_joins_finds_the_closest_peer(seed: int) -> None:
    sim, f = run(seed, SMALL)
    assert sim.violation is None, (seed, sim.violation)
    assert f["bootstrap"] == "joins"
    assert f["peers_left"] == f["peers_joined"] == round(0.2 * 50)
    assert f["lookups"] >= 90
    assert f["lookup_success_rate"] >= 0.99
    assert f["lookup_hops"]["median"] <= 0.5 * math.log2(50)
    assert f["provides_stored"] == f["provides"] > 0
    assert f["provider_success_rate"] >= 0.95


def test_warm_start_fills_tables_through_the_core() -> None:
    sim, f = run(4, replace(SMALL, peers=200, warm_start_above=100, lookups=120))
    assert sim.violation is None, sim.violation
    assert f["bootstrap"] == "warm-start"
    # about k per bucket for log2(200/20) + a few buckets
    assert 40 <= f["contacts_per_peer_mean"] <= 200
    assert f["lookup_success_rate"] >= 0.99


def test_warm_joins_fill_the_joiner_then_run_the_core_bootstrap() -> None:
    cfg = replace(SMALL, peers=300, warm_start_above=100, warm_joins_above=100, lookups=150)
    sim, f = run(3, cfg)
    assert sim.violation is None, sim.violation
    assert f["churn_joins"] == "warm-fill+self-lookup"
    assert f["peers_joined"] == f["peers_left"] == 60
    assert f["lookup_success_rate"] >= 0.99


def test_ground_truth_matches_brute_force() -> None:
    rng = random.Random(7)
    live = LiveIds()
    ids = [rng.getrandbits(256) for _ in range(500)]
    for i, node_id in enumerate(ids):
        live.add(node_id, float(i % 3))
    live.remove(ids[10])
    pool = [i for i in ids if i != ids[10]]
    for _ in range(50):
        target = rng.getrandbits(256)
        for ready_by in (0.0, 2.0):
            want = sorted(
                (i for i in pool if live.ready_at[i] <= ready_by), key=lambda i: i ^ target
            )
            assert live.closest(target, 20, ready_by) == want[:20]


def test_a_result_out_of_xor_order_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """A core that returned its results unsorted would be reported as a violation."""
    original = dht_world.DhtPeer._apply

    def shuffled(self: dht_world.DhtPeer, out: list[object], now: float) -> None:
        bent = [
            LookupFinished(e.op_id, e.kind, e.target, tuple(reversed(e.closest)), e.hops, e.queried)
            if isinstance(e, LookupFinished) and len(e.closest) > 1
            else e
            for e in out
        ]
        original(self, bent, now)  # type: ignore[arg-type]

    monkeypatch.setattr(dht_world.DhtPeer, "_apply", shuffled)
    sim, _ = run(1, SMALL)
    assert sim.violation is not None and "XOR order" in sim.violation


def test_dropping_the_nearest_answer_fails_the_success_floor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = dht_world.DhtPeer._apply

    def lossy(self: dht_world.DhtPeer, out: list[object], now: float) -> None:
        bent = [
            LookupFinished(e.op_id, e.kind, e.target, e.closest[1:], e.hops, e.queried)
            if isinstance(e, LookupFinished) and e.closest
            else e
            for e in out
        ]
        original(self, bent, now)  # type: ignore[arg-type]

    monkeypatch.setattr(dht_world.DhtPeer, "_apply", lossy)
    sim, f = run(1, SMALL)
    assert sim.violation is not None and "success rate" in sim.violation
    assert f["lookup_success_rate"] < 0.5


def test_same_seed_same_json_across_hash_seeds() -> None:
    code = (
        "import json;from colonymesh.simulations.runner import run_scenario,deterministic_view;"
        "print(json.dumps(deterministic_view(run_scenario('dht',16,5,duration=10.0,"
        "report_to=None)),sort_keys=True))"
    )
    outs = []
    for hash_seed in ("0", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
        )
        assert done.returncode == 0, done.stderr
        outs.append(done.stdout)
    assert outs[0] == outs[1]
    here = run_scenario("dht", 16, 5, duration=10.0, report_to=None)
    assert json.dumps(deterministic_view(here), sort_keys=True) + "\n" == outs[0]
    assert json.loads(outs[0])["violations"] == 0


def test_peer_info_objects_are_shared_by_every_table() -> None:
    """Memory: a contact refers to the one PeerInfo of its peer, never a copy."""
    sim, _ = run(2, replace(SMALL, peers=40, lookups=20, provides=0, provider_lookups=0))
    adapters = [sim.adapter(i) for i in range(sim.node_count)]
    world = next(a for a in adapters if a is not None).world  # type: ignore[union-attr]
    canonical = {info.public_key: info for info in world.infos}
    seen = 0
    for a in adapters:
        if a is None:
            continue
        for info in a.core.table.peers():  # type: ignore[union-attr]
            assert isinstance(info, PeerInfo)
            assert info is canonical[info.public_key]
            seen += 1
    assert seen > 0


@pytest.mark.slow
def test_ten_thousand_peers_meet_the_goals() -> None:
    started = time.perf_counter()
    summary = run_scenario("dht", 10_000, 1, report_to=None)
    wall = time.perf_counter() - started
    assert summary["violations"] == 0, summary["failures"]
    assert summary["lookup_hops"]["median"] <= 0.5 * math.log2(10_000)
    assert summary["lookup_success_rate"] >= 0.999
    assert summary["peers_left"] == 2000
    print(f"dht 10,000 peers: {wall:.1f} s wall")
