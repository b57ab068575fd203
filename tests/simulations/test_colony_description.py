"""The public colony description (dataclasses + TOML), the CLI's --config and determinism."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from colonymesh.simulations.colony_scenario import run
from colonymesh.simulations.description import (
    ChurnSpec,
    ColonyDescription,
    DescriptionError,
    ExecutorGroup,
    LocationSpec,
    PartitionSpec,
    WorkloadStream,
    load_description,
    parse_description,
    simulate_colony,
)
from colonymesh.simulations.runner import deterministic_view

DOCS_TOML = Path(__file__).resolve().parents[2] / "docs" / "simulate-colony.toml"

SMALL = ColonyDescription(
    servers=3,
    submitters=1,
    executors=(ExecutorGroup("cpu", 12, location="a"), ExecutorGroup("gpu", 4, gpus=1)),
    locations=(
        LocationSpec("a", latency_ms={"b": 20.0}),
        LocationSpec("b", local_latency_ms=2.0),
    ),
    server_location="b",
    workload=(
        WorkloadStream("resize", executor_type="cpu", rate_per_s=3.0, fail_fraction=0.1),
        WorkloadStream("train", executor_type="gpu", rate_per_s=0.5, run_mean_s=2.0),
        WorkloadStream("etl", executor_type="cpu", rate_per_s=0.3, workflow=True),
    ),
    churn=ChurnSpec(crash_interval_s=2.0, restart_fraction=1.0, cut_interval_s=3.0, cut_mean_s=3.0),
    partitions=(PartitionSpec(4.0, 3.0, ("a",)),),
    duration_s=12.0,
)


def test_docs_example_loads_and_maps_to_a_config() -> None:
    description = load_description(DOCS_TOML)
    assert description.peers == 5 + 2 + 400 + 300 + 40 + 250
    cfg = description.to_config()
    assert cfg.executor_groups == (("cpu", 400), ("cpu", 300), ("gpu", 40), ("iot", 250))
    assert cfg.location_delay_s[0][1] == pytest.approx(0.045)  # eu -> us
    assert cfg.location_delay_s[1][0] == pytest.approx(0.045)  # named by one side only
    assert cfg.location_delay_s[2][1] == pytest.approx(0.060)
    assert cfg.partitions == ((40.0, 20.0, (2,)),)
    assert {a.executor_type for a in cfg.arrivals} == {"cpu", "gpu", "iot"}


def test_described_colony_runs_with_types_locations_and_partitions() -> None:
    summary = simulate_colony(SMALL, seed=2)
    assert summary["violations"] == 0, summary["failures"]
    assert summary["peers"] == 20
    assert summary["processes_submitted"] > 30
    assert summary["processes_succeeded"] > 0 and summary["processes_failed"] > 0
    assert summary["partitions"] >= 1 and summary["executor_crashes"] > 0
    series = summary["series"]
    assert series["queue_length"] and series["leaders"]
    assert series["completion_latency_p50_s"]
    # latency includes the 20 ms cross-location hops, so no submission ends instantly
    assert summary["completion_latency_s"]["median"] > 0.02


def test_gpu_work_runs_only_on_gpu_executors() -> None:
    """A gpu-typed stream is claimed by gpu executors only (the real ledger matches types)."""
    described = ColonyDescription(
        executors=(ExecutorGroup("cpu", 6), ExecutorGroup("gpu", 2, gpus=1)),
        workload=(WorkloadStream("train", executor_type="gpu", rate_per_s=2.0),),
        server_faults=False,
        churn=ChurnSpec(0.0, 1.0, 0.0, 1.0),
        duration_s=6.0,
    )
    outcome = run(1, described.to_config())
    assert outcome.violation is None, outcome.violation
    assert outcome.figures["processes_succeeded"] > 5
    assert outcome.figures["executors_activated"] <= 2  # only the two gpu executors woke


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("[colony]\nservers = 4\n", "servers"),
        ("[colony]\nservrs = 3\n", "servrs: unknown field"),
        ('[[colony.executors]]\nexecutor_type = "x"\ncount = 0\n', "executors[0].count"),
        ("[[colony.executors]]\ncount = 3\n", "executors[0].executor_type: required"),
        ('[[colony.executors]]\nexecutor_type = "x"\ncount = "9"\n', "executors[0].count"),
        (
            '[[colony.executors]]\nexecutor_type = "x"\ncount = 9\n'
            '[[colony.workload]]\nfuncname = "f"\nexecutor_type = "y"\n',
            "workload[0].executor_type",
        ),
        ("[colony]\nloss = 0.9\n", "loss"),
        ('[colony]\nserver_location = "mars"\n', "server_location"),
        ("[colony.churn]\nrestart_fraction = 2\n", "churn.restart_fraction"),
        (
            '[[colony.partitions]]\nat_s = 1\nduration_s = 1\nlocations = ["x"]\n',
            "partitions[0].locations",
        ),
        ("[colony\n", "not valid TOML"),
    ],
)
def test_toml_errors_name_the_field(text: str, field: str) -> None:
    with pytest.raises(DescriptionError) as caught:
        parse_description(text)
    assert field in str(caught.value)


def test_cli_config_runs_and_refuses_a_bad_file(tmp_path: Path) -> None:
    small = tmp_path / "small.toml"
    small.write_text(
        "[colony]\nduration_s = 4.0\nserver_faults = false\n"
        '[[colony.executors]]\nexecutor_type = "sim"\ncount = 6\n'
        '[[colony.workload]]\nfuncname = "ok"\nrate_per_s = 2.0\n'
    )
    cmd = [
        sys.executable,
        "-c",
        "from colonymesh.node.cli import main; raise SystemExit(main())",
        "simulate",
    ]
    cmd.append("colony")
    done = subprocess.run(
        [*cmd, "--config", str(small), "--seed", "3", "--json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["peers"] == 10 and summary["violations"] == 0
    bad = tmp_path / "bad.toml"
    bad.write_text("[colony]\nsubmitters = 0\n")
    done = subprocess.run(
        [*cmd, "--config", str(bad), "--json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode != 0
    assert "submitters" in done.stderr and "Traceback" not in done.stderr


_SAME_SEED = """
import json, sys
from colonymesh.simulations.runner import deterministic_view, run_scenario
s = run_scenario("colony", int(sys.argv[1]), 5, duration=float(sys.argv[2]), report_to=None)
print(json.dumps(deterministic_view(s), sort_keys=True))
"""


@pytest.mark.parametrize(("peers", "duration"), [(10, 6.0), (400, 30.0)])
def test_same_seed_byte_identical_across_hash_seeds(peers: int, duration: float) -> None:
    """Two processes with different PYTHONHASHSEED values print the same JSON for a seed
    (at 400 peers the arrival-rate workload, lazy members and dormant executors are on)."""
    outputs = []
    for hash_seed in ("0", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run(
            [sys.executable, "-c", _SAME_SEED, str(peers), str(duration)],
            capture_output=True,
            text=True,
            check=True,
            env=env,
            timeout=300,
        )
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1]
    summary = json.loads(outputs[0])
    assert summary["violations"] == 0 and summary["series"]["queue_length"]
    if peers > 200:  # dormant executors: only a working set ever joined the ledger
        assert 0 < summary["executors_activated"] < summary["executors"] // 2


def test_described_run_is_deterministic_in_process() -> None:
    first = deterministic_view(simulate_colony(SMALL, seed=7))
    second = deterministic_view(simulate_colony(SMALL, seed=7))
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    assert first["violations"] == 0


def test_colony_plots_are_written_from_the_summary(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from colonymesh.simulations.plots import write_plots

    summary = simulate_colony(SMALL, seed=4)
    written = write_plots(summary, tmp_path)
    names = {p.name for p in written}
    assert "colony_queue_latency.png" in names and "colony_queue_length.png" in names
    assert (tmp_path / "colony_queue_latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
