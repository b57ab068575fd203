"""The executor's liveness lease on real processes: a partitioned executor stops its run.

Three ``node run`` servers and two ``executor run --kind process`` executors
on loopback. A long local process starts at one executor; that executor's
process is then cut off the network (``partition.py``: its transport drops
every byte, new dials hang). Its lease lapses and it kills the process group
before the leader declares it lost, re-queues the process and the other
executor runs it. The records of the local process (``leasework.py``:
start, alive every 50 ms, stopped/end) show the two runs never overlap.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from rolekit import Cluster, make_cluster, wait_for

from colonymesh.node.sdk import connect

STALE_S = 5.0  # the leader's executor_stale_s here: the lease is min(2, (5 - 2 * 0.5) / 2) = 2 s
LEASE_S = 2.0


def _events(records: Path) -> list[dict[str, Any]]:
    events = []
    for path in sorted(records.glob("*.jsonl")):
        events += [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]
    return events


def _runs(records: Path, process_id: str) -> dict[str, dict[str, Any]]:
    """Per run (nonce): executor, first and last recorded time, how it ended."""
    runs: dict[str, dict[str, Any]] = {}
    for event in _events(records):
        if event["process"] != process_id:
            continue
        run = runs.setdefault(
            event["nonce"],
            {"executor": event["executor"], "first": event["t"], "last": event["t"], "how": ""},
        )
        run["first"] = min(run["first"], event["t"])
        run["last"] = max(run["last"], event["t"])
        if event["event"] in ("end", "stopped"):
            run["how"] = event["event"]
    return runs


# The executors run the CLI with the partition hook installed first (partition.py).
LAUNCH = (
    "import sys, partition; partition.install(); "
    "from colonymesh.node.cli import main; sys.exit(main(sys.argv[1:]))"
)


def _use_process_kind(cluster: Cluster) -> None:
    for server in cluster.servers:
        config = server.folder / "node.toml"
        text = config.read_text().replace("executor_stale_s = 2.0", f"executor_stale_s = {STALE_S}")
        config.write_text(text)
    work = Path(__file__).with_name("leasework.py")
    settings = cluster.root / "executor.toml"
    settings.write_text(
        "[process]\n"
        'inherit_env = ["PATH", "HOME", "ROLES_RECORD_DIR", "ROLES_EXECUTOR_ID"]\n'
        "grace_s = 0.2\n"
        "log_interval_s = 0.2\n"
        "[process.commands]\n"
        f'work = ["{sys.executable}", "{work}"]\n'
    )
    for executor in cluster.executors:
        at = executor.command.index("--kind")
        executor.command[at + 1 : at + 4] = ["process", "--executor-config", str(settings)]
        run_at = executor.command.index("executor")
        executor.command[:run_at] = [sys.executable, "-c", LAUNCH]
        executor.env["ROLES_PARTITION_FILE"] = str(cluster.root / f"partition-{executor.name}")


async def test_a_partitioned_executor_stops_before_its_process_runs_elsewhere(
    tmp_path: Path,
) -> None:
    cluster = make_cluster(tmp_path, servers=3, executors=2, concurrency=1)
    _use_process_kind(cluster)
    try:
        cluster.start(cluster.servers)
        cluster.wait_leader()
        cluster.start(cluster.executors)
        wait_for("executors registered", lambda: cluster.registered_executors() == 2, 30)
        assert cluster.submitter_certificate is not None
        async with connect(
            key=cluster.submitter_keys,
            certificate=cluster.submitter_certificate,
            colony=cluster.colony_dir,
            bootstrap=[s.address for s in cluster.servers],
        ) as colony:
            spec = {
                "funcname": "work",
                "args": [7, 60, 1],  # the first run would take a minute, a re-run a second
                "maxexectime": 300,
                "conditions": {"executortype": "python"},
            }
            process = await colony.submit(spec)
            wait_for("the first run", lambda: len(_runs(cluster.records, process.id)) == 1, 20)
            (first,) = _runs(cluster.records, process.id).values()
            runner = next(e for e in cluster.executors if e.peer_id == first["executor"])
            other = next(e for e in cluster.executors if e is not runner)
            cut_at = time.time()
            (cluster.root / f"partition-{runner.name}").touch()
            await process.wait(timeout_s=40)
            stats = runner.status()["executor"]["stats"]
        runs = _runs(cluster.records, process.id)
        assert process.state == "success", process.view
        assert process.view["executor"] == other.peer_id
        assert len(runs) == 2, runs
        cut, rerun = sorted(runs.values(), key=lambda r: r["first"])
        assert cut["executor"] == runner.peer_id and cut["how"] == "stopped"
        assert rerun["executor"] == other.peer_id and rerun["how"] == "end"
        # The cut run was killed within the lease (plus the checking and kill slack) ...
        stopped_after_s = cut["last"] - cut_at
        assert stopped_after_s < LEASE_S + 1.0, stopped_after_s
        # ... and before the other executor started it: never two at once.
        assert cut["last"] < rerun["first"], (cut, rerun)
        assert stats["lease_stops"] == 1 and stats["lease_lapses"] >= 1, stats
        print(
            json.dumps(
                {
                    "stopped_after_cut_s": round(stopped_after_s, 3),
                    "rerun_started_after_cut_s": round(rerun["first"] - cut_at, 3),
                    "gap_s": round(rerun["first"] - cut["last"], 3),
                }
            )
        )
    finally:
        cluster.close()
