"""The simulator explores the leader's send-while-persisting window (dissertation §10.2.1).

A leader whose Ready says ``send_while_persisting`` sends its appends before
its own write is durable; followers may make a quorum and the entry commit
while the leader's copy is still in flight; the leader may then crash and
lose its copy. These tests check that the raft scenario really goes there
(counts of early sends, commits before the leader's copy was durable, and
crashes inside the window) and that the checkers -- log matching, leader
completeness (§5.4), state machine safety, every acknowledged write in
every state machine, linearizability -- still pass.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from colonymesh.consensus import Ready
from colonymesh.simulations.engine import Simulator
from colonymesh.simulations.raft_scenario import PersistModel, RaftScenarioConfig, run
from colonymesh.simulations.raft_server import RaftCluster, RaftServer
from colonymesh.simulations.runner import deterministic_view, format_failure, run_scenario, sweep

_WINDOW_KEYS = (
    "early_readies",
    "early_appends",
    "committed_before_durable",
    "crashes_mid_persist",
    "crashes_after_early_send",
    "crashes_losing_committed",
)


def _crash_leaders_in_window(crashes_max: int, *, committed_only: bool) -> Any:
    """A directed fault: crash a leader while its early-sent persist is in flight
    (with ``committed_only``, only once followers committed part of it), restart
    it 0.2 s later; at most ``crashes_max`` times."""

    def setup(sim: Simulator, cluster: RaftCluster) -> None:
        done = [0]

        def poll() -> None:
            if done[0] >= crashes_max or sim.now > cluster.cfg.safety_s - 1.0:
                return
            for server in cluster.servers:
                flight = None if server is None else server.in_flight
                if server is None or server.node is None or flight is None or not flight.early:
                    continue
                entries = flight.ready.entries
                if committed_only and not (
                    entries and server.node.log.committed >= entries[0].index
                ):
                    continue
                done[0] += 1
                sim.crash(server.index)
                sim.restart_at(sim.now + 0.2, server.index)
                break
            sim.call_later(0.001, poll)

        sim.call_later(0.5, poll)

    return setup


def _parallel(servers: int, fsync_s: float) -> list[PersistModel]:
    return [PersistModel(fsync_s, True) for _ in range(servers)]


def test_drawn_persist_models_cover_both_paths_and_the_window() -> None:
    summary = sweep("raft", 5, range(12), duration=8.0, report_to=None)
    failures = summary["failures"]
    assert isinstance(failures, list)
    assert summary["violations"] == 0, "\n".join(format_failure(f) for f in failures)
    totals = summary["totals"]
    assert isinstance(totals, dict)
    assert totals["timed_persists"] > 0  # persists that took simulated time
    assert totals["early_appends"] > 0  # appends out before the sender's copy was durable
    assert totals["crashes_mid_persist"] > 0  # crashes tore persists in flight
    # Both paths: some servers of the sweep persisted serially, some in parallel.
    assert 0 < totals["parallel_servers"] < 5 * 12


def test_a_leader_crashing_after_followers_committed_its_in_flight_entries_loses_nothing() -> None:
    cfg = RaftScenarioConfig(peers=5, safety_s=8.0, membership=False)
    hit = 0
    for seed in range(2, 6):
        outcome = run(
            seed,
            cfg,
            persist=_parallel(5, 0.02),
            setup=_crash_leaders_in_window(6, committed_only=True),
        )
        figures = outcome.figures
        assert outcome.violation is None, f"seed {seed}: {outcome.violation}"
        assert figures["early_appends"] > 0
        hit += figures["crashes_losing_committed"]
        assert figures["acked_writes"] > 0
    # The window was hit: a leader died holding the only torn copy of its own
    # entries that followers had already committed, and the checkers passed.
    assert hit >= 8


def test_a_leader_crashing_right_after_its_early_sends_loses_nothing_acknowledged() -> None:
    cfg = RaftScenarioConfig(peers=3, safety_s=8.0, membership=False)
    outcome = run(
        5,
        cfg,
        persist=_parallel(3, 0.005),
        setup=_crash_leaders_in_window(10, committed_only=False),
    )
    assert outcome.violation is None, outcome.violation
    assert outcome.figures["crashes_after_early_send"] >= 5
    assert outcome.figures["client_ops_ok"] > 0


def test_the_serial_path_sends_nothing_early() -> None:
    cfg = RaftScenarioConfig(peers=3, safety_s=4.0)
    outcome = run(3, cfg, persist=[PersistModel(0.005, False) for _ in range(5)])
    assert outcome.violation is None, outcome.violation
    assert outcome.figures["timed_persists"] > 0
    for key in _WINDOW_KEYS[:3]:
        assert outcome.figures[key] == 0, key


class CountsItselfEarly(RaftServer):
    """A planted bug: the leader counts its own copy as soon as it sends, before its
    write is durable -- what ``RaftLog.stable_index`` exists to prevent."""

    def _send_early(self, rd: Ready) -> None:
        super()._send_early(rd)
        node = self._node()
        lead = node._lead  # the bug reaches inside the core on purpose
        if lead is not None and rd.entries:
            node.log.mark_stable(rd.entries[-1].index)
            lead.persisted(node.log.stable_index)


def test_a_leader_counting_its_copy_before_it_is_durable_is_caught() -> None:
    cfg = RaftScenarioConfig(peers=3, safety_s=6.0, membership=False)
    for seed in range(10):
        outcome = run(seed, cfg, CountsItselfEarly, persist=_parallel(3, 0.02))
        if outcome.violation is not None:
            assert outcome.violation.startswith("commit without a durable quorum"), (
                outcome.violation
            )
            return
    raise AssertionError("the planted bug survived 10 seeds")


_SCRIPT = """
import json
from colonymesh.simulations.runner import deterministic_view, run_scenario
s = run_scenario("raft", 5, 4, duration=5.0, report_to=None)
print(json.dumps(deterministic_view(s), sort_keys=True))
"""


def test_timed_parallel_persists_keep_runs_byte_identical() -> None:
    # Seed 4 draws timed persists with most servers in parallel mode.
    env = dict(os.environ, PYTHONHASHSEED="31337")
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    here = run_scenario("raft", 5, 4, duration=5.0, report_to=None)
    assert here["early_appends"] > 0 and here["timed_persists"] > 0
    assert done.stdout == json.dumps(deterministic_view(here), sort_keys=True) + "\n"
    # Directed crashes in the window replay exactly too.
    cfg = RaftScenarioConfig(peers=3, safety_s=4.0, membership=False)
    runs = [
        run(
            9,
            cfg,
            persist=_parallel(3, 0.005),
            setup=_crash_leaders_in_window(4, committed_only=False),
        )
        for _ in range(2)
    ]
    assert runs[0].figures == runs[1].figures and runs[0].violation == runs[1].violation


@pytest.mark.slow
def test_parallel_persist_sweep() -> None:
    """A larger sweep, every server in parallel mode, drawn fsync durations."""
    hit = {key: 0 for key in _WINDOW_KEYS}
    for seed in range(300):
        fsync_s = (0.001, 0.005, 0.02)[seed % 3]
        outcome = run(
            10_000 + seed,
            RaftScenarioConfig(peers=5, safety_s=10.0),
            persist=_parallel(7, fsync_s),
            setup=_crash_leaders_in_window(3, committed_only=seed % 2 == 0),
        )
        assert outcome.violation is None, f"seed {10_000 + seed}: {outcome.violation}"
        for key in _WINDOW_KEYS:
            hit[key] += outcome.figures[key]
    for key in _WINDOW_KEYS:
        assert hit[key] > 0, key
