"""Parked claims (``colony.claim_work``): one claim per process in the log, closes ride along.

A local colony on loopback (3 Raft servers on real disks). Every server's
applied events are recorded, so the tests see exactly what entered the log:
idle slots park their claims at the leader instead of proposing them, a
submission draws exactly one claim, a claim that could match nothing never
reaches the log, and a slot's close travels ahead of its next claim (and is
re-sent alone when that answer is lost).
"""

from __future__ import annotations

import time
from pathlib import Path

import trio

from colonymesh.executors.python import PythonFunctions
from colonymesh.node.certs import Membership, Role
from colonymesh.node.colony.client import ColonyClient
from colonymesh.node.colony.local import LocalColony, LocalColonyConfig, open_local_colony
from colonymesh.node.colony.protocol import Proposed
from colonymesh.node.colony.server import LedgerServer
from colonymesh.node.colony.worker import ExecutorService
from colonymesh.node.ledger.commands import Claim, Tick
from colonymesh.node.ledger.events import CommandApplied, CommandRefused, LedgerEvent
from colonymesh.node.peer.peer import Peer, PeerConfig

CLAIM_CLOSE = ("ledger.claim", "ledger.close")
SPEC = {"funcname": "square", "conditions": {"executortype": "python"}}


def functions() -> PythonFunctions:
    registry = PythonFunctions()

    @registry.function
    def square(x: int) -> int:
        return x * x

    return registry


def record(colony: LocalColony) -> list[list[tuple[str, str, bool]]]:
    """Per server, every applied entry from now on: (kind, subject or reason, applied)."""
    logs: list[list[tuple[str, str, bool]]] = []
    for server in colony.servers:
        entries: list[tuple[str, str, bool]] = []
        logs.append(entries)
        machine = server.machine
        original = machine.apply

        def apply(entry: object, original: object = original, entries: list = entries) -> object:
            events: list[LedgerEvent] = original(entry)  # type: ignore[operator]
            first = events[0]
            if isinstance(first, CommandApplied):
                entries.append((first.kind, first.subject, True))
            elif isinstance(first, CommandRefused):
                entries.append((first.kind, first.reason, False))
            return events

        machine.apply = apply  # type: ignore[method-assign]
    return logs


async def leader_with_parked(colony: LocalColony, parked: int) -> LedgerServer:
    while True:
        leader = colony.leader()
        if leader is not None and leader.parked_now >= parked:
            return leader
        await trio.sleep(0.01)


def claims(entries: list[tuple[str, str, bool]]) -> list[tuple[str, str, bool]]:
    return [e for e in entries if e[0] == "ledger.claim"]


async def test_one_submission_draws_one_claim_from_eight_parked_slots(tmp_path: Path) -> None:
    config = LocalColonyConfig(
        state_dir=tmp_path, functions=functions(), executors=4, concurrency=2
    )
    with trio.fail_after(60):
        async with open_local_colony(config) as colony:
            leader = await leader_with_parked(colony, 8)
            logs = record(colony)
            proposed_before = leader.parked_proposed
            pid = await colony.client.submit({**SPEC, "args": [7]})
            done = await colony.client.wait(pid, timeout_s=20)
            await leader_with_parked(colony, 8)  # every slot is parked again
            proposed = leader.parked_proposed - proposed_before
    assert done["state"] == "success" and done["output"] == [49]
    assert proposed == 1  # one parked claim went to the log, seven stayed parked
    for entries in logs:  # every replica applied exactly one claim, and refused none
        if entries:
            assert claims(entries) == [("ledger.claim", pid, True)]


async def test_a_claim_that_matches_nothing_stays_parked_out_of_the_log(tmp_path: Path) -> None:
    config = LocalColonyConfig(state_dir=tmp_path, functions=functions(), executors=1)
    with trio.fail_after(60):
        async with open_local_colony(config) as colony:
            leader = await leader_with_parked(colony, 2)
            logs = record(colony)
            # More CPU than any executor declares: nobody can run it.
            too_big = {**SPEC, "args": [1], "conditions": {"executortype": "python", "cpu": "64"}}
            pid = await colony.client.submit(too_big)
            await trio.sleep(1.0)
            view = await colony.client.process(pid)
            assert leader.parked_now == 2
    assert view is not None and view["state"] == "waiting"
    assert all(claims(entries) == [] for entries in logs)


async def test_a_close_rides_ahead_of_the_next_claim(tmp_path: Path) -> None:
    config = LocalColonyConfig(
        state_dir=tmp_path, functions=functions(), executors=1, concurrency=1
    )
    with trio.fail_after(60):
        async with open_local_colony(config) as colony:
            await leader_with_parked(colony, 1)
            logs = record(colony)
            service = colony.executors[0]
            first = await colony.client.submit({**SPEC, "args": [2]})
            assert (await colony.client.wait(first, timeout_s=20))["output"] == [4]
            second = await colony.client.submit({**SPEC, "args": [3]})
            assert (await colony.client.wait(second, timeout_s=20))["output"] == [9]
            stats = service.stats
    # The first close was applied riding with the claim that fetched the second process.
    assert stats.reports_carried >= 1 and stats.reports_resent == 0
    leader_log = max(logs, key=len)
    order = [(kind, subject) for kind, subject, _ in leader_log if kind in CLAIM_CLOSE]
    assert order[:4] == [
        ("ledger.claim", first),
        ("ledger.close", first),
        ("ledger.claim", second),
        ("ledger.close", second),
    ]


class LosesCarriedAnswer(ColonyClient):
    """Loses the answer of the first close that rides with a claim (the leader died)."""

    lose = True

    async def claim_work(
        self, claim: object, wait_s: float, report: bytes = b""
    ) -> tuple[Proposed, Proposed | None]:
        answer, carried = await super().claim_work(claim, wait_s, report)
        if report and carried is not None and carried.applied and self.lose:
            self.lose = False
            return answer, None
        return answer, carried


async def test_a_carried_close_whose_answer_is_lost_is_resent_alone(tmp_path: Path) -> None:
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
                client = LosesCarriedAnswer(peer, [s.peer.peer_id for s in colony.servers])
                service = ExecutorService(client, functions(), name="lossy", wait_s=0.5)
                async with trio.open_nursery() as nursery:
                    await nursery.start(service.run)
                    pid = await colony.client.submit({**SPEC, "args": [5]})
                    done = await colony.client.wait(pid, timeout_s=20)
                    while service.stats.succeeded == 0:
                        await trio.sleep(0.01)  # the close is being settled alone
                    nursery.cancel_scope.cancel()
    assert done["state"] == "success" and done["output"] == [25]
    assert client.lose is False  # the carried answer was dropped
    # Sent again alone, refused as already closed, recognised as ours from the ledger.
    assert service.stats.succeeded == 1 and service.stats.reports_carried == 0


async def test_claim_work_refuses_what_is_not_a_claim_of_any_process(tmp_path: Path) -> None:
    config = LocalColonyConfig(state_dir=tmp_path, functions=functions(), executors=0)
    with trio.fail_after(60):
        async with open_local_colony(config) as colony:
            while (leader := colony.leader()) is None:
                await trio.sleep(0.01)
            garbage = await leader._park_and_claim(b"\xff not a frame", 0.1)
            tick = await leader._park_and_claim(colony.client.seal(Tick(0)), 0.1)
            named = await leader._park_and_claim(colony.client.seal(Claim("x" * 64)), 0.1)
    assert not garbage.applied and garbage.reason.startswith("not a claim")
    assert not tick.applied and "claim of any process" in tick.reason
    assert not named.applied and "claim of any process" in named.reason


async def test_a_final_read_wakes_on_its_process_and_leaves_no_waiter_behind(
    tmp_path: Path,
) -> None:
    config = LocalColonyConfig(state_dir=tmp_path, functions=functions(), executors=1)
    with trio.fail_after(60):
        async with open_local_colony(config) as colony:
            leader = await leader_with_parked(colony, 2)
            colony.client._leader = leader.peer.peer_id  # reads go to the leader first
            missing = await colony.client.process("0" * 64, wait_final_s=0.2)
            leftover_after_timeout = dict(leader._finished)
            pid = await colony.client.submit({**SPEC, "args": [4]})
            done = await colony.client.wait(pid, timeout_s=20)
            leftover_after_finish = dict(leader._finished)
    assert missing is None
    assert leftover_after_timeout == {} and leftover_after_finish == {}
    assert done["state"] == "success" and done["output"] == [16]
