"""The executor runtime when answers are lost with a dying leader (in one process, on loopback).

A client that drops the answer of the first applied claim (as if the leader
died after committing it) makes the worker adopt the process the ledger
assigned to it; one that loses the answer of the first applied close makes
it re-send the close and accept the "not running" refusal because the ledger
shows its own output. Either way the process succeeds once, at this executor.
"""

from __future__ import annotations

import time
from pathlib import Path

import trio

from colonymesh.executors.python import PythonFunctions
from colonymesh.node.certs import Membership, Role
from colonymesh.node.colony.client import LOST_ANSWER, ColonyClient, ColonyUnavailable
from colonymesh.node.colony.local import LocalColonyConfig, open_local_colony
from colonymesh.node.colony.protocol import Proposed
from colonymesh.node.colony.worker import ExecutorService
from colonymesh.node.ledger.commands import Claim, Close
from colonymesh.node.peer.peer import Peer, PeerConfig


class LossyClient(ColonyClient):
    """Loses the answer of the first applied claim and the first applied close."""

    lose_claim = True
    lose_close = True

    async def propose(self, body: object) -> Proposed:
        answer = await super().propose(body)
        if isinstance(body, Claim) and answer.applied and self.lose_claim:
            self.lose_claim = False
            return Proposed(True, reason=LOST_ANSWER)
        if isinstance(body, Close) and answer.applied and self.lose_close:
            self.lose_close = False
            raise ColonyUnavailable("the answer was lost with the leader (test)")
        return answer

    async def claim_work(
        self, claim: object, wait_s: float, report: bytes = b""
    ) -> tuple[Proposed, Proposed | None]:
        """The worker's parked claims lose their first applied answer the same way."""
        answer, carried = await super().claim_work(claim, wait_s, report)
        if answer.applied and self.lose_claim:
            self.lose_claim = False
            return Proposed(True, reason=LOST_ANSWER), carried
        return answer, carried


def functions() -> PythonFunctions:
    registry = PythonFunctions()

    @registry.function
    def square(x: int) -> int:
        return x * x

    return registry


async def test_lost_claim_and_close_answers_still_run_once(tmp_path: Path) -> None:
    config = LocalColonyConfig(state_dir=tmp_path, functions=functions(), executors=0)
    with trio.fail_after(60):
        async with open_local_colony(config) as colony:
            keys, certificate = colony.issue("lossy", Role.EXECUTOR, "python")
            membership = Membership(colony.colony)
            for peer in colony.peers:
                if peer.certificate is not None:
                    membership.admit(peer.certificate, time.time())
            async with Peer.open(PeerConfig(keys, membership, certificate)) as peer:
                for server in colony.servers:
                    for address in server.peer.listen_addrs:
                        peer.add_address(server.peer.peer_id, address)
                client = LossyClient(peer, [s.peer.peer_id for s in colony.servers])
                service = ExecutorService(client, functions(), name="lossy")
                async with trio.open_nursery() as nursery:
                    await nursery.start(service.run)
                    pid = await colony.client.submit(
                        {
                            "funcname": "square",
                            "args": [9],
                            "conditions": {"executortype": "python"},
                        }
                    )
                    done = await colony.client.wait(pid, timeout_s=20)
                    while service.stats.succeeded + service.stats.failed == 0:
                        await trio.sleep(0.01)  # the re-sent close is being answered
                    nursery.cancel_scope.cancel()
    assert done["state"] == "success" and done["output"] == [81]
    assert done["executor"] == peer.peer_id
    assert service.stats.adopted == 1  # the claim's answer was lost: adopted from the ledger
    assert service.stats.reports_resent == 1  # the close's answer was lost: sent again
    assert service.stats.succeeded == 1 and service.stats.claimed == 1


async def test_an_output_too_large_to_close_fails_the_process(tmp_path: Path) -> None:
    registry = PythonFunctions()

    @registry.function
    def big() -> str:
        return "x" * (1024 * 1024 + 100)  # more than one message may carry

    config = LocalColonyConfig(state_dir=tmp_path, functions=registry, executors=1)
    with trio.fail_after(60):
        async with open_local_colony(config) as colony:
            pid = await colony.client.submit(
                {"funcname": "big", "conditions": {"executortype": "python"}}
            )
            done = await colony.client.wait(pid, timeout_s=30)
    assert done["state"] == "failed"
    assert any("close refused" in error and "exceeds the cap" in error for error in done["errors"])
