"""The raft scenario: real Raft cores under seeded faults, checked after every step.

Also proves the checkers can fail: planted bugs (a server that forgets its
vote on restart, a server that serves reads from its local state) are caught.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest

from colonymesh.consensus.types import Entry, HardState, Snapshot
from colonymesh.simulations.kv import ClientRequest, ClientResponse
from colonymesh.simulations.raft_scenario import (
    RaftScenarioConfig,
    RaftServer,
    replay,
    run,
)
from colonymesh.simulations.runner import (
    ScenarioResult,
    deterministic_view,
    format_failure,
    register_scenario,
    run_scenario,
    sweep,
)


def _report(summary: dict[str, object]) -> str:
    failures = summary.get("failures")
    assert isinstance(failures, list)
    return "\n".join(format_failure(f) for f in failures)


def test_seed_sweep_five_servers_has_no_violations_and_really_faults() -> None:
    summary = sweep("raft", 5, 20, report_to=None)
    assert summary["violations"] == 0, _report(summary)
    totals = summary["totals"]
    assert isinstance(totals, dict)
    # The sweep must actually have been hostile, and the cluster must have made progress.
    for key in ("crashes", "restarts", "dropped_loss", "dropped_partition", "duplicated"):
        assert totals[key] > 0, key
    assert totals["torn_writes"] > 0
    assert totals["leader_changes"] >= 40
    assert totals["transfers"] > 0  # leadership transfers (§3.10 of the dissertation)
    assert totals["conf_changes_committed"] > 0  # membership changes (§6)
    assert totals["commits"] > 2000
    assert totals["client_ops_ok"] > 2000


def test_seed_sweep_three_servers() -> None:
    summary = sweep("raft", 3, range(100, 110), duration=10.0, report_to=None)
    assert summary["violations"] == 0, _report(summary)
    assert summary["seeds"] == 10


def test_summary_has_the_cli_contract_keys() -> None:
    summary = run_scenario("raft", 3, 5, duration=3.0, report_to=None)
    for key in ("scenario", "peers", "seeds", "violations", "wall_seconds"):
        assert key in summary, key
    assert summary["scenario"] == "raft" and summary["peers"] == 3 and summary["seeds"] == 1
    assert summary["commits"] > 0 and summary["events"] > 0
    assert summary["linearizability"]["ok"] is True
    json.dumps(summary)  # JSON-able


_DETERMINISM_SCRIPT = """
import json
from colonymesh.simulations.runner import deterministic_view, run_scenario
s = run_scenario("raft", 5, 7, duration=6.0, report_to=None)
print(json.dumps(deterministic_view(s), sort_keys=True))
"""


def test_same_seed_gives_byte_identical_json_across_runs_and_hash_seeds() -> None:
    outputs = []
    for hash_seed in ("1", "987654"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        done = subprocess.run(
            [sys.executable, "-c", _DETERMINISM_SCRIPT],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        outputs.append(done.stdout)
    in_process = run_scenario("raft", 5, 7, duration=6.0, report_to=None)
    outputs.append(json.dumps(deterministic_view(in_process), sort_keys=True) + "\n")
    assert outputs[0] == outputs[1] == outputs[2]
    assert json.loads(outputs[0])["events"] > 1000
    other = run_scenario("raft", 5, 8, duration=6.0, report_to=None)
    assert json.dumps(deterministic_view(other), sort_keys=True) + "\n" != outputs[0]


# -- planted bugs the checkers must catch ------------------------------------


class ForgetsVote(RaftServer):
    """Restarts with no hard state: forgets its term and whom it voted for."""

    def load_disk(self) -> tuple[HardState | None, list[Entry], Snapshot | None]:
        _hard_state, entries, snapshot = super().load_disk()
        return None, entries, snapshot


class LocalReads(RaftServer):
    """Serves reads from its own state machine, without the log: stale reads."""

    def _client_request(self, src: int, req: ClientRequest) -> None:
        if req.op == "get":
            value = self.kv.data.get(req.key)
            self.io.send(src, ClientResponse(req.client, req.seq, True, value))
            return
        super()._client_request(src, req)


class NeverCampaigns(RaftServer):
    """Ignores its timers: no election ever starts, so no leader, no progress."""

    def fire(self, now: float) -> None:
        return

    def next_deadline(self) -> float | None:
        return None


def test_a_cluster_that_cannot_elect_fails_the_heal_phase() -> None:
    outcome = run(1, RaftScenarioConfig(peers=3, safety_s=2.0, heal_bound_s=5.0), NeverCampaigns)
    assert outcome.violation is not None and outcome.violation.startswith("liveness")
    assert outcome.figures["commits"] == 3  # only the bootstrap configuration entries


def _first_caught(server_cls: type[RaftServer], seeds: range) -> tuple[int, str]:
    for seed in seeds:
        outcome = run(seed, RaftScenarioConfig(peers=5, safety_s=10.0), server_cls)
        if outcome.violation is not None:
            return seed, outcome.violation
    raise AssertionError(f"{server_cls.__name__} survived seeds {seeds}")


def test_a_server_that_forgets_its_vote_is_caught() -> None:
    _seed, violation = _first_caught(ForgetsVote, range(20))
    expected = ("durable after term", "voted for", "§5", "malformed message")
    assert any(text in violation for text in expected), violation


def test_stale_local_reads_are_caught_by_the_linearizability_checker() -> None:
    _seed, violation = _first_caught(LocalReads, range(20))
    assert violation.startswith("linearizability")


def test_failure_report_has_seed_profile_and_one_line_replay() -> None:
    def forgetful(seed: int, peers: int, duration: float | None) -> ScenarioResult:
        out = run(seed, RaftScenarioConfig(peers=peers, safety_s=duration or 10.0), ForgetsVote)
        return ScenarioResult(out.violation, out.violation_at, out.profile.as_dict(), out.figures)

    register_scenario("raft-forgets-vote", forgetful)
    seed, _ = _first_caught(ForgetsVote, range(20))
    sink = io.StringIO()
    summary = run_scenario("raft-forgets-vote", 5, seed, duration=10.0, report_to=sink)
    assert summary["violations"] == 1
    text = sink.getvalue()
    assert f"VIOLATION seed={seed}" in text
    assert "fault profile: loss=" in text
    replay_lines = [line for line in text.splitlines() if "replay:" in line]
    assert replay_lines == [
        f"  replay: colonymesh simulate raft-forgets-vote --peers 5 --seed {seed} --duration 10"
    ]
    failure = summary["failures"][0]
    assert failure["seed"] == seed and failure["event"] > 0


# -- replaying a server's disk -------------------------------------------------


def test_replay_follows_the_ready_contract() -> None:
    from colonymesh.consensus.types import EntryKind, LogIndex, SnapshotMeta, Term

    def e(index: int, term: int) -> Entry:
        return Entry(Term(term), LogIndex(index), EntryKind.NORMAL, b"x")

    hs1 = HardState(Term(1))
    hs2 = HardState(Term(2))
    # A later entry at index 2 replaces the suffix from 2 on.
    assert replay([e(1, 1), e(2, 1), e(3, 1), hs1, e(2, 2), hs2]) == (hs2, [e(1, 1), e(2, 2)], None)
    snap = Snapshot(SnapshotMeta(LogIndex(2), Term(1)), b"")
    assert replay([e(1, 1), e(2, 1), e(3, 1), snap]) == (None, [e(3, 1)], snap)
    assert replay([e(1, 1), snap, e(2, 1), e(3, 1)]) == (None, [e(3, 1)], snap)
    # A snapshot whose last entry the log does not hold replaces the whole log (§7):
    # a stale suffix must not come back at the next restart.
    newer = Snapshot(SnapshotMeta(LogIndex(2), Term(2)), b"")
    assert replay([e(1, 1), e(2, 1), e(3, 1), newer]) == (None, [], newer)
    assert replay([snap, e(3, 1), newer]) == (None, [], newer)
    assert replay([snap, e(3, 1), snap]) == (None, [e(3, 1)], snap)
    with pytest.raises(ValueError):
        replay([e(1, 1), e(3, 1)])


@pytest.mark.slow
def test_big_seed_sweep_five_servers() -> None:
    summary = sweep("raft", 5, range(1000, 1200), report_to=None)
    assert summary["violations"] == 0, _report(summary)


@pytest.mark.slow
def test_big_seed_sweep_three_and_seven_servers() -> None:
    for peers in (3, 7):
        summary = sweep("raft", peers, range(2000, 2100), report_to=None)
        assert summary["violations"] == 0, _report(summary)
