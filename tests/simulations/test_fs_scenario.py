"""The fs scenario: replication 3 survives losing 2 providers per root, repairs, reads intact bytes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from colonymesh.fs.replication import Replicator
from colonymesh.simulations import fs_scenario
from colonymesh.simulations.fs_scenario import FsScenarioConfig, live_holders, run
from colonymesh.simulations.runner import deterministic_view, run_scenario, sweep

SMALL = FsScenarioConfig(peers=12)


@pytest.mark.parametrize("seed", range(6))
def test_small_sweep_reads_everything_and_repairs_to_k(seed: int) -> None:
    state = run(seed, SMALL)
    assert state.sim.violation is None, (seed, state.sim.violation)
    f = state.figures
    assert f["peers_lost"] >= 4  # most roots were left with one provider
    assert f["roots_left_with_one_holder"] >= 1
    assert 0 < f["repair_seconds"] <= SMALL.repair_bound_s
    assert all(file.read_ok for file in state.files)
    assert all(len(live_holders(state, file.root)) >= 3 for file in state.files)


def test_corrupt_blocks_are_detected_and_the_holder_repairs_itself() -> None:
    totals = sweep("fs", 12, range(6), report_to=None)["totals"]
    assert totals["corrupt_detected"] >= 1
    assert totals["self_repairs"] >= 1


def test_same_seed_gives_identical_json() -> None:
    first = run_scenario("fs", 12, 4, report_to=None)
    second = run_scenario("fs", 12, 4, report_to=None)
    assert first["violations"] == 0, first["failures"]
    assert json.dumps(deterministic_view(first), sort_keys=True) == json.dumps(
        deterministic_view(second), sort_keys=True
    )


def _cli(hash_seed: str) -> dict[str, object]:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    code = (
        "import json,sys;from colonymesh.simulations.runner import run_scenario,deterministic_view;"
        "print(json.dumps(deterministic_view(run_scenario('fs',10,7,report_to=None)),sort_keys=True))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_identical_across_hash_seeds() -> None:
    assert _cli("0") == _cli("12345")


def test_a_repair_core_that_recruits_nobody_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    honest = Replicator.on_replicas

    def lazy(self: Replicator, root, holders, live, now):  # type: ignore[no-untyped-def]
        effects = honest(self, root, holders, live, now)
        return effects if now < 40.0 else []  # replicates at first, never repairs

    monkeypatch.setattr(Replicator, "on_replicas", lazy)
    state = run(1, FsScenarioConfig(peers=12, repair_bound_s=300.0))
    assert state.sim.violation is not None and state.sim.violation.startswith("repair:")


def test_bytes_that_differ_from_what_was_put_are_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    honest = fs_scenario.read_file

    def lossy(get_block, root):  # type: ignore[no-untyped-def]
        pieces = list(honest(get_block, root))
        if pieces and pieces[-1]:
            pieces[-1] = pieces[-1][:-1] + bytes([pieces[-1][-1] ^ 1])
        return iter(pieces)

    monkeypatch.setattr(fs_scenario, "read_file", lossy)
    state = run(2, SMALL)
    assert state.sim.violation is not None and "chunk integrity" in state.sim.violation


def test_too_few_peers_for_k_is_refused() -> None:
    with pytest.raises(ValueError):
        run(0, FsScenarioConfig(peers=4))


@pytest.mark.slow
def test_larger_sweep() -> None:
    summary = sweep("fs", 40, range(20), report_to=None)
    assert summary["violations"] == 0, summary["failures"]


@pytest.mark.slow
def test_a_hundred_peers() -> None:
    summary = run_scenario("fs", 100, 1, report_to=None)
    assert summary["violations"] == 0, summary["failures"]
    assert summary["files"] == 40 and summary["repair_seconds"] > 0
