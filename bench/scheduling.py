"""Scheduling: submit -> result latency and no-op throughput, colonymesh vs Ray, same run.

colonymesh: a local colony on loopback (3 server peers replicating the ledger
with Raft on disk, fsync on; 4 executor peers with 2 slots each; 1
submitter), all real sockets. Ray: ``ray.init()`` locally with 8 CPUs worth
of workers, the same no-op function. Both measure:

* latency: sequential submit -> result round trips, p50 and p99;
* throughput: ``--tasks`` no-ops submitted with at most ``--inflight``
  outstanding, completed per second from first submit to last result.

Ray runs in a subprocess (``--ray-python``, default this interpreter), so it
can live in its own venv. Last stdout line: one JSON object with both sets of
figures, ``baseline`` and ``ratio`` (our throughput / Ray's).

    python bench/scheduling.py [--quick] [--ray-python /path/to/python]
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import trio

RAY_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import ray
    sequential, tasks, inflight = map(int, sys.argv[1:4])
    ray.init(num_cpus=8, include_dashboard=False, logging_level="ERROR")

    @ray.remote
    def noop(x):
        return x

    ray.get([noop.remote(i) for i in range(50)])  # warm the workers
    latencies = []
    for i in range(sequential):
        t = time.perf_counter()
        ray.get(noop.remote(i))
        latencies.append(time.perf_counter() - t)
    started = time.perf_counter()
    pending, done = [], 0
    for i in range(tasks):
        pending.append(noop.remote(i))
        if len(pending) >= inflight:
            ready, pending = ray.wait(pending, num_returns=1)
            done += len(ready)
    ray.get(pending)
    elapsed = time.perf_counter() - started
    latencies.sort()
    print(json.dumps({"latency_ms_p50": 1000 * latencies[len(latencies) // 2],
                      "latency_ms_p99": 1000 * latencies[int(len(latencies) * 0.99) - 1],
                      "throughput_per_s": tasks / elapsed}))
    """
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def measure_colonymesh(sequential: int, tasks: int, inflight: int) -> dict[str, Any]:
    from colonymesh.executors.python import PythonFunctions
    from colonymesh.node.colony.local import LocalColonyConfig, open_local_colony

    functions = PythonFunctions()

    @functions.function
    def noop(x: int) -> int:
        return x

    spec = {"funcname": "noop", "conditions": {"executortype": "python"}}
    with tempfile.TemporaryDirectory(prefix="bench-scheduling-") as directory:
        config = LocalColonyConfig(
            state_dir=Path(directory), functions=functions, executors=4, concurrency=2
        )
        async with open_local_colony(config) as colony:
            client = colony.client
            for i in range(10):  # warm up connections and the executors' long-polls
                await client.wait(await client.submit({**spec, "args": [i]}), timeout_s=30)
            latencies = []
            for i in range(sequential):
                started = time.perf_counter()
                await client.wait(await client.submit({**spec, "args": [i]}), timeout_s=30)
                latencies.append(time.perf_counter() - started)

            limiter = trio.Semaphore(inflight)
            failures = 0

            async def one(i: int) -> None:
                nonlocal failures
                async with limiter:
                    view = await client.wait(
                        await client.submit({**spec, "args": [i]}), timeout_s=120
                    )
                    failures += view["state"] != "success"

            started = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for i in range(tasks):
                    nursery.start_soon(one, i)
            elapsed = time.perf_counter() - started
            stats = colony.leader().driver.stats if colony.leader() else None
    return {
        "latency_ms_p50": 1000 * percentile(latencies, 0.5),
        "latency_ms_p99": 1000 * percentile(latencies, 0.99),
        "throughput_per_s": tasks / elapsed,
        "failed": failures,
        "leader_fsyncs": stats.syncs if stats else None,
        "leader_entries": stats.entries_persisted if stats else None,
        # Log entries per process (submit, claim, close, plus refused claims and ticks).
        "entries_per_process": round(stats.entries_persisted / (10 + sequential + tasks), 2)
        if stats
        else None,
    }


def measure_ray(python: str, sequential: int, tasks: int, inflight: int) -> dict[str, Any]:
    completed = subprocess.run(
        [python, "-c", RAY_SCRIPT, str(sequential), str(tasks), str(inflight)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if completed.returncode != 0:
        sys.exit(
            f"ray baseline failed (install it with `pip install ray` or pass --ray-python):\n{completed.stderr[-2000:]}"
        )
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer tasks, for a smoke run")
    parser.add_argument(
        "--ray-python", default=sys.executable, help="interpreter with ray installed"
    )
    parser.add_argument("--tasks", type=int)
    parser.add_argument("--inflight", type=int, default=64)
    args = parser.parse_args()
    sequential = 20 if args.quick else 100
    tasks = args.tasks or (100 if args.quick else 1000)
    logging.getLogger("colonymesh").setLevel(logging.ERROR)

    ours = trio.run(measure_colonymesh, sequential, tasks, args.inflight)
    print(
        f"colonymesh: p50 {ours['latency_ms_p50']:.1f} ms, p99 {ours['latency_ms_p99']:.1f} ms, "
        f"{ours['throughput_per_s']:.0f} no-ops/s ({ours['failed']} failed)"
    )
    ray = measure_ray(args.ray_python, sequential, tasks, args.inflight)
    print(
        f"ray:        p50 {ray['latency_ms_p50']:.2f} ms, p99 {ray['latency_ms_p99']:.2f} ms, "
        f"{ray['throughput_per_s']:.0f} no-ops/s"
    )
    ratio = ours["throughput_per_s"] / ray["throughput_per_s"]
    print(f"throughput ratio (ours / ray): {ratio:.3f}; goal >= 2. latency p50 goal <= 2.5 ms")
    print(
        json.dumps(
            {
                "colonymesh": ours,
                "ray": ray,
                "tasks": tasks,
                "inflight": args.inflight,
                "baseline": "ray (ray.init locally, same no-op work)",
                "ratio": round(ratio, 4),
                "latency_ratio_p50": round(ours["latency_ms_p50"] / ray["latency_ms_p50"], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
