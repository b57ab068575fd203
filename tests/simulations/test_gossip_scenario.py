"""The gossip scenario: the real router at 5% loss reaches every live peer, once each."""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import replace

import pytest

from colonymesh.node.gossip import Delivered
from colonymesh.node.gossip.messages import IHave, Publish
from colonymesh.simulations import gossip_scenario
from colonymesh.simulations.gossip_scenario import GossipScenarioConfig, run
from colonymesh.simulations.runner import deterministic_view, run_scenario

SMALL = GossipScenarioConfig(peers=60, warmup_s=10.0, phase_s=10.0, messages=10)


@pytest.mark.parametrize("seed", range(4))
def test_small_sweep_reaches_every_live_peer(seed: int) -> None:
    sim, f = run(seed, SMALL)
    assert sim.violation is None, (seed, sim.violation)
    assert f["messages"] == 10
    assert f["reached_every_live_peer"] and f["missing_deliveries"] == 0
    assert f["messages_reaching_100"] == 10
    assert f["peers_left"] == 1 and f["peers_live_end"] == 59
    assert 0 < f["time_to_99_s"]["max"] <= f["time_to_100_s"]["max"]
    assert f["dropped_loss"] > 0  # the 5% loss did happen
    # the publisher's count never exceeds the truth, and loses little
    assert 0.9 <= f["delivery_counted_ratio"]["median"] <= 1.0
    assert f["delivery_counted_ratio"]["max"] <= 1.0
    curve = f["series"]["coverage"]
    assert curve[-1][1] == 1.0 and all(a[1] <= b[1] for a, b in itertools.pairwise(curve))


def test_a_double_delivery_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    original = gossip_scenario.GossipPeer._apply

    def twice(self: gossip_scenario.GossipPeer, out: list[object], now: float) -> None:
        doubled: list[object] = []
        for e in out:
            doubled.append(e)
            if isinstance(e, Delivered) and self.index == 7:
                doubled.append(e)
        original(self, doubled, now)  # type: ignore[arg-type]

    monkeypatch.setattr(gossip_scenario.GossipPeer, "_apply", twice)
    sim, _ = run(1, SMALL)
    assert sim.violation is not None and "twice" in sim.violation


def test_a_peer_that_never_gets_messages_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    original = gossip_scenario.GossipPeer.deliver

    def deaf(self: gossip_scenario.GossipPeer, src: int, msg: object, now: float) -> None:
        if self.index in (3, 4) and isinstance(msg, Publish | IHave):
            return
        original(self, src, msg, now)

    monkeypatch.setattr(gossip_scenario.GossipPeer, "deliver", deaf)
    sim, f = run(2, replace(SMALL, heal_bound_s=5.0))
    # peers 3 and 4 miss every message unless they left (then nothing is owed to them)
    assert sim.violation is not None and "never delivered" in sim.violation
    assert f["missing_deliveries"] >= 10


def test_same_seed_same_json() -> None:
    first = run_scenario("gossip", 30, 4, duration=5.0, report_to=None)
    second = run_scenario("gossip", 30, 4, duration=5.0, report_to=None)
    assert first["violations"] == 0, first["failures"]
    assert json.dumps(deterministic_view(first), sort_keys=True) == json.dumps(
        deterministic_view(second), sort_keys=True
    )


@pytest.mark.slow
def test_thousand_peers_at_five_percent_loss_reach_every_live_peer() -> None:
    started = time.perf_counter()
    summary = run_scenario("gossip", 1000, 1, report_to=None)
    wall = time.perf_counter() - started
    assert summary["violations"] == 0, summary["failures"]
    assert summary["reached_every_live_peer"]
    assert summary["messages_reaching_100"] == summary["messages"] == 20
    assert summary["time_to_99_s"]["max"] < 2.0
    print(f"gossip 1,000 peers: {wall:.1f} s wall")
