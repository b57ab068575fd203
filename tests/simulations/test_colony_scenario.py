"""The colony scenario: three zeros (lost, run twice, closed by a non-assignee) over seed sweeps."""

from __future__ import annotations

import io
import itertools
import json
from dataclasses import replace
from typing import Any

import pytest

from colonymesh.node.ledger.commands import Close
from colonymesh.node.ledger.ledger import Ledger
from colonymesh.node.ledger.model import Process, ProcessState
from colonymesh.simulations import colony_scenario
from colonymesh.simulations.colony_actors import ExecutorActor
from colonymesh.simulations.colony_scenario import Arrivals, ColonyScenarioConfig, run
from colonymesh.simulations.colony_world import Answer
from colonymesh.simulations.runner import deterministic_view, run_scenario, sweep

SMALL = ColonyScenarioConfig(peers=8, processes_per_peer=10, safety_s=10.0, heal_bound_s=90.0)


@pytest.mark.parametrize("seed", range(5))
def test_small_colony_sweep_keeps_the_three_zeros(seed: int) -> None:
    outcome = run(seed, SMALL)
    assert outcome.violation is None, (seed, outcome.violation, outcome.profile.describe())
    f = outcome.figures
    assert f["processes_submitted"] == 80
    assert f["processes_succeeded"] + f["processes_failed"] >= 80
    assert f["processes_succeeded"] > 0 and f["claims"] >= f["processes_succeeded"]


def test_same_seed_gives_identical_json() -> None:
    first = run_scenario("colony", 6, 3, duration=5.0, report_to=None)
    second = run_scenario("colony", 6, 3, duration=5.0, report_to=None)
    assert first["violations"] == 0, first["failures"]
    assert json.dumps(deterministic_view(first), sort_keys=True) == json.dumps(
        deterministic_view(second), sort_keys=True
    )
    assert first["processes_submitted"] == 120


def _rogue_claimed(self: ExecutorActor, answer: Answer, now: float) -> None:
    """An executor that, finding no work, tries to close a process assigned to another."""
    if not answer.applied and "no waiting process" in answer.reason:
        mine = self.member.keys.public_key
        others = [p for p, k in self.world.assignee.items() if k != mine]
        if others:
            self.state = "report"
            self.request(Close(others[0], "[]"), now)
            return
    _honest_claimed(self, answer, now)


_honest_claimed = ExecutorActor._claimed


def test_rogue_executor_is_refused_by_the_real_ledger(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ExecutorActor, "_claimed", _rogue_claimed)
    outcome = run(1, SMALL)
    assert outcome.violation is None, outcome.violation
    assert outcome.figures["reports_refused"] > 0  # the rogue did try


def test_non_assignee_close_through_a_broken_ledger_rule_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = Ledger._running_at

    def running_anywhere(self: Ledger, process_id: str, author: bytes) -> Process:
        process = self.processes.get(process_id)
        if process is not None and process.state is ProcessState.RUNNING:
            return process  # the broken rule: any executor may close a running process
        return original(self, process_id, author)

    monkeypatch.setattr(ExecutorActor, "_claimed", _rogue_claimed)
    monkeypatch.setattr(Ledger, "_running_at", running_anywhere)
    report = io.StringIO()
    summary = run_scenario("colony", 8, 1, duration=10.0, report_to=report)
    assert summary["violations"] == 1
    violation = summary["failures"][0]["violation"]
    assert "closed by" in violation and "assigned to" in violation
    printed = report.getvalue()  # the seed, the fault profile and how to replay it
    assert "seed=1" in printed and "fault profile: loss=" in printed
    assert "replay: colonymesh simulate colony --peers 8 --seed 1 --duration 10" in printed


def test_a_ledger_that_forgets_a_queued_process_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checker (1): a process the ledger never queues stays WAITING: it is lost."""
    original = Ledger._make_ready
    calls = [0]

    def forgetful(self: Ledger, process: Process, command: Any, events: Any) -> None:
        calls[0] += 1
        if calls[0] % 97 == 0 and not process.workflow_id:
            return  # the broken rule: acknowledged, never queued
        original(self, process, command, events)

    monkeypatch.setattr(Ledger, "_make_ready", forgetful)
    violation = run(0, replace(SMALL, heal_bound_s=30.0)).violation
    assert violation is not None and "not every acknowledged submission final" in violation


def test_executor_ignoring_maxexectime_is_caught_running_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An executor that never kills an overrunning process overlaps the ledger's re-queue."""
    original_init = colony_scenario.Workload.__init__

    def no_kill(self: Any, cfg: ColonyScenarioConfig) -> None:
        original_init(self, cfg)
        self.maxexectime_s = 1e9

    monkeypatch.setattr(colony_scenario.Workload, "__init__", no_kill)
    violations = [run(seed, SMALL).violation for seed in range(3)]
    assert any(v is not None and "run twice concurrently" in v for v in violations), violations


def test_executor_without_a_lease_is_caught_running_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    """An executor cut off from the leader that keeps running overlaps the re-queued run."""
    original = colony_scenario.ColonyTiming
    monkeypatch.setattr(colony_scenario, "ColonyTiming", lambda: original(lease_s=1e9))
    cfg = ColonyScenarioConfig(
        peers=12,
        safety_s=30.0,
        arrivals=(Arrivals("long", rate_per_s=2.0, run_mean_s=4.0),),
        executor_cut_interval_s=1.0,
        executor_cut_mean_s=10.0,
        executor_crash_interval_s=0.0,
    )
    violation = run(3, cfg).violation  # a seed whose cuts hit an executor mid-run
    assert violation is not None and "run twice concurrently" in violation, violation


@pytest.mark.slow
def test_fifty_peer_colony_sweep_runs_a_thousand_processes_per_seed() -> None:
    summary = sweep("colony", 50, range(4), report_to=None)
    assert summary["violations"] == 0, summary["failures"]
    totals = summary["totals"]
    assert totals["processes_submitted"] >= 4 * 1000
    assert totals["processes_succeeded"] > 3 * 1000
    assert totals["requeues"] > 0 and totals["leader_changes"] >= 4


ARRIVING = ColonyScenarioConfig(
    peers=30,
    safety_s=10.0,
    arrivals=(
        Arrivals("ok", rate_per_s=4.0, run_mean_s=0.8, fail_fraction=0.05),
        Arrivals("wf", rate_per_s=0.4, run_mean_s=0.3, workflow=True),
    ),
)


@pytest.mark.parametrize("seed", range(3))
def test_arrival_rate_colony_sweep_keeps_the_three_zeros(seed: int) -> None:
    """Poisson arrivals, dormant executors woken by announcements, drawn faults."""
    outcome = run(seed, ARRIVING)
    assert outcome.violation is None, (seed, outcome.violation, outcome.profile.describe())
    f = outcome.figures
    assert f["processes_submitted"] >= 30
    assert f["processes_succeeded"] + f["processes_failed"] >= f["processes_submitted"]
    assert f["wakes_sent"] >= f["executors_activated"] > 0
    queue = f["series"]["queue_length"]
    assert queue[0][0] == 0.0 and all(b[0] > a[0] for a, b in itertools.pairwise(queue))


def test_a_lost_work_announcement_is_sent_again() -> None:
    """With 30% loss many announcements never land; the leader's safety net wakes others."""
    outcome = run(2, replace(ARRIVING, loss=0.3, server_faults=False))
    assert outcome.violation is None, outcome.violation
    f = outcome.figures
    assert f["processes_succeeded"] > 0 and f["dropped_loss"] > 0
    assert f["wakes_sent"] > f["executors_activated"]


@pytest.mark.slow
def test_ten_thousand_peer_colony_for_ten_minutes() -> None:
    """Issue 10's goal run: 10,000 peers, 600 simulated seconds, the three zeros."""
    summary = run_scenario("colony", 10_000, 1, duration=600.0, report_to=None)
    assert summary["violations"] == 0, summary["failures"]
    assert summary["processes_submitted"] > 5000
    assert (
        summary["processes_succeeded"] + summary["processes_failed"]
        >= (summary["processes_submitted"])
    )
    assert summary["series"]["queue_length"] and summary["series"]["leaders"]
