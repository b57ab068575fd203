"""``colonymesh demo``: a local colony from embedded defaults, run end to end.

Brings up 3 server peers (the ledger replicated by Raft on real disks in a
temporary folder) and 4 executor peers serving Python functions, all on
loopback with real sockets, Noise and yamux; submits a map/reduce workflow and
some plain specs from a submitter peer; shows progress as processes finish;
prints the results and timings; shuts everything down.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from colonymesh.node.cli.output import add_json_flag, emit
from colonymesh.node.errors import ColonymeshError

if TYPE_CHECKING:
    from colonymesh.executors.python import PythonFunctions


def demo_functions() -> PythonFunctions:
    from colonymesh.executors.python import PythonFunctions

    functions = PythonFunctions()

    @functions.function
    def square(x: int) -> int:
        """x squared."""
        return x * x

    @functions.function
    def split(n: int, ctx: Any) -> int:
        """Map: fan out one square(i) child per i < n, all before the reduce step."""
        for i in range(n):
            ctx.add_child(
                {"funcname": "square", "args": [i], "conditions": {"executortype": "python"}}
            )
        return n

    @functions.function
    def total(ctx: Any) -> int:
        """Reduce: the sum of the parents' outputs (the map step's count excluded)."""
        return (
            sum(ctx.input[1:])
            if ctx.input and ctx.input[0] == len(ctx.input) - 1
            else sum(ctx.input)
        )

    @functions.function
    def word_count(text: str) -> int:
        """Words in a text."""
        return len(text.split())

    return functions


def register(commands: Any) -> None:
    demo = commands.add_parser(
        "demo", help="run a local colony end to end (3 servers, 4 executors)"
    )
    demo.add_argument(
        "--fan-out", type=int, default=10, help="children of the map step (default 10)"
    )
    demo.add_argument("--specs", type=int, default=20, help="plain specs to submit (default 20)")
    demo.add_argument("--state-dir", type=Path, help="keep server state here instead of a temp dir")
    add_json_flag(demo)
    demo.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    import trio

    logging.getLogger("colonymesh").setLevel(logging.ERROR)
    if args.fan_out < 1 or args.specs < 0:
        raise ColonymeshError("--fan-out must be at least 1 and --specs not negative")
    if args.state_dir is not None:
        args.state_dir.mkdir(parents=True, exist_ok=True)
        summary = trio.run(_run, args, args.state_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="colonymesh-demo-") as directory:
            summary = trio.run(_run, args, Path(directory))
    lines = [
        f"colony up in {summary['startup_seconds']} s: 3 server peers (Raft leader {summary['leader'][-8:]}), "
        f"4 python executors, 1 submitter, all on loopback",
        f"map/reduce: sum of squares below {args.fan_out} = {summary['workflow_result']} "
        f"({summary['workflow_processes']} processes, {summary['workflow_seconds']} s)",
        f"{args.specs} plain specs: {summary['specs_succeeded']} succeeded, "
        f"submit->result p50 {summary['latency_ms_p50']} ms, max {summary['latency_ms_max']} ms",
        f"total: {summary['submitted']} processes, {summary['succeeded']} succeeded, "
        f"{summary['failed']} failed, in {summary['seconds']} s",
    ]
    emit(args, summary, lines)
    return (
        0
        if summary["failed"] == 0 and summary["workflow_result"] == summary["expected_result"]
        else 1
    )


async def _run(args: argparse.Namespace, state_dir: Path) -> dict[str, Any]:
    import trio

    from colonymesh.node.colony.local import LocalColonyConfig, open_local_colony

    started = time.perf_counter()
    quiet = bool(args.json)
    config = LocalColonyConfig(state_dir=state_dir, functions=demo_functions(), name="demo")
    with trio.fail_after(120):
        async with open_local_colony(config) as colony:
            client = colony.client
            startup = time.perf_counter() - started
            leader = colony.leader()
            _say(quiet, f"colony {colony.colony.colony_id.hex()[:16]}… up in {startup:.2f} s")

            workflow_started = time.perf_counter()
            workflow = {
                "colonyname": "demo",
                "functionspecs": [
                    {
                        "nodename": "map",
                        "funcname": "split",
                        "args": [args.fan_out],
                        "conditions": {"executortype": "python"},
                    },
                    {
                        "nodename": "reduce",
                        "funcname": "total",
                        "conditions": {"executortype": "python", "dependencies": ["map"]},
                    },
                ],
            }
            workflow_id = await client.submit_workflow(workflow)
            _say(quiet, f"submitted map/reduce workflow {workflow_id[:12]}…")

            latencies: list[float] = []
            states: list[str] = []

            async def one_spec(i: int) -> None:
                sent = time.perf_counter()
                text = f"colonymesh runs this spec number {i} " * (1 + i % 3)
                pid = await client.submit(
                    {
                        "funcname": "word_count",
                        "args": [text],
                        "conditions": {"executortype": "python"},
                    }
                )
                done = await client.wait(pid, timeout_s=60)
                latencies.append(time.perf_counter() - sent)
                states.append(done["state"])
                _say(quiet, f"  process {pid[:12]}… {done['state']:<8} output {done['output']}")

            async with trio.open_nursery() as nursery:
                for i in range(args.specs):
                    nursery.start_soon(one_spec, i)
            finished = await client.wait_workflow(workflow_id, timeout_s=60)
            workflow_seconds = time.perf_counter() - workflow_started
            reduce = next(p for p in finished["processes"] if p["spec"]["nodename"] == "reduce")
            _say(quiet, f"workflow {finished['state']}: reduce output {reduce['output']}")
            status = await client.status()
            leader = colony.leader()
    counts = status["processes"]
    latencies.sort()
    return {
        "submitted": sum(counts.values()),
        "succeeded": counts["success"],
        "failed": counts["failed"],
        "seconds": round(time.perf_counter() - started, 3),
        "startup_seconds": round(startup, 3),
        "leader": leader.peer.peer_id if leader else status["raft"]["leader"],
        "workflow_state": finished["state"],
        "workflow_result": reduce["output"][0] if reduce["output"] else None,
        "expected_result": sum(i * i for i in range(args.fan_out)),
        "workflow_processes": len(finished["processes"]),
        "workflow_seconds": round(workflow_seconds, 3),
        "specs_succeeded": states.count("success"),
        "latency_ms_p50": round(1000 * latencies[len(latencies) // 2], 1) if latencies else None,
        "latency_ms_max": round(1000 * latencies[-1], 1) if latencies else None,
        "executors": [e["name"] for e in status["executors"]],
    }


def _say(quiet: bool, line: str) -> None:
    if not quiet:
        print(line, flush=True)
