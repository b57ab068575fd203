"""A colony on loopback: 3 server peers (Raft on real disks), executors, a submitter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from colonymesh.executors.python import PythonFunctions
from colonymesh.node.colony.local import LocalColonyConfig, open_local_colony


def demo_functions() -> PythonFunctions:
    functions = PythonFunctions()

    @functions.function
    def square(x: int) -> int:
        return x * x

    @functions.function
    def split(n: int, ctx: Any) -> None:
        for i in range(n):
            ctx.add_child(
                {"funcname": "square", "args": [i], "conditions": {"executortype": "python"}}
            )

    @functions.function
    def total(ctx: Any) -> int:
        return sum(ctx.input)

    @functions.function
    def boom() -> None:
        raise ValueError("no good")

    return functions


async def test_specs_and_a_map_reduce_workflow_run_end_to_end(tmp_path: Path) -> None:
    config = LocalColonyConfig(state_dir=tmp_path, functions=demo_functions(), executors=2)
    with trio.fail_after(60):
        async with open_local_colony(config) as colony:
            client = colony.client
            pid = await client.submit(
                {"funcname": "square", "args": [7], "conditions": {"executortype": "python"}}
            )
            done = await client.wait(pid, timeout_s=20)
            assert done["state"] == "success" and done["output"] == [49]

            workflow = {
                "colonyname": "local",
                "functionspecs": [
                    {
                        "nodename": "map",
                        "funcname": "split",
                        "args": [5],
                        "conditions": {"executortype": "python"},
                    },
                    {
                        "nodename": "reduce",
                        "funcname": "total",
                        "conditions": {"executortype": "python", "dependencies": ["map"]},
                    },
                ],
            }
            wid = await client.submit_workflow(workflow)
            finished = await client.wait_workflow(wid, timeout_s=30)
            assert finished["state"] == "success"
            reduce = next(p for p in finished["processes"] if p["spec"]["nodename"] == "reduce")
            assert reduce["output"] == [0 + 1 + 4 + 9 + 16]
            assert len(finished["processes"]) == 2 + 5

            failing = await client.submit(
                {"funcname": "boom", "conditions": {"executortype": "python"}}
            )
            failed = await client.wait(failing, timeout_s=20)
            assert failed["state"] == "failed" and "ValueError: no good" in failed["errors"][0]

            status = await client.status()
            assert status["processes"]["success"] == 1 + 7
            assert status["raft"]["leader"]
            assert len(status["executors"]) == 2
