"""The SDK as an application uses it: join a running colony, submit, wait; serve functions."""

from __future__ import annotations

import threading
from pathlib import Path

import trio

import colonymesh
from colonymesh.node.certs import Membership, Role
from colonymesh.node.cli.demo import demo_functions
from colonymesh.node.colony.local import LocalColonyConfig, open_local_colony


async def test_an_app_joins_submits_waits_and_serves(tmp_path: Path) -> None:
    config = LocalColonyConfig(state_dir=tmp_path, functions=demo_functions(), executors=1)
    with trio.fail_after(60):
        async with open_local_colony(config) as local:
            keys, certificate = local.issue("app", Role.SUBMITTER)
            membership = Membership(local.colony)
            async with colonymesh.connect(
                key=keys, certificate=certificate, colony=membership, bootstrap=local.bootstrap
            ) as colony:
                process = await colony.submit(
                    {"funcname": "square", "args": [12], "conditions": {"executortype": "python"}}
                )
                await process.wait(timeout_s=20)
                assert (process.state, process.output) == ("success", [144])

                # A new executor type served from the SDK, with a decorated function.
                gpu_keys, gpu_certificate = local.issue("edge-1", Role.EXECUTOR, "edge")
                functions = colonymesh.PythonFunctions()

                @functions.function
                def shout(text: str) -> str:
                    return text.upper()

                async with (
                    colonymesh.connect(
                        key=gpu_keys,
                        certificate=gpu_certificate,
                        colony=Membership(local.colony),
                        bootstrap=local.bootstrap,
                    ) as edge,
                    trio.open_nursery() as nursery,
                ):
                    nursery.start_soon(lambda: edge.serve(functions, name="edge-1"))
                    shouted = await colony.submit(
                        {
                            "funcname": "shout",
                            "args": ["hi"],
                            "conditions": {"executortype": "edge"},
                        }
                    )
                    await shouted.wait(timeout_s=20)
                    assert shouted.output == ["HI"]
                    nursery.cancel_scope.cancel()


async def test_the_sync_twin_works_from_a_plain_thread(tmp_path: Path) -> None:
    config = LocalColonyConfig(state_dir=tmp_path, functions=demo_functions(), executors=1)
    with trio.fail_after(60):
        async with open_local_colony(config) as local:
            keys, certificate = local.issue("script", Role.SUBMITTER)
            results: list[object] = []

            def script() -> None:
                with colonymesh.connect_sync(
                    key=keys,
                    certificate=certificate,
                    colony=Membership(local.colony),
                    bootstrap=local.bootstrap,
                ) as colony:
                    process = colony.submit(
                        {
                            "funcname": "square",
                            "args": [3],
                            "conditions": {"executortype": "python"},
                        }
                    )
                    results.append(colony.wait(process, timeout_s=20).output)

            thread = threading.Thread(target=script)
            thread.start()
            while thread.is_alive():
                await trio.sleep(0.05)
            assert results == [[9]]
