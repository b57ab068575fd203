"""The executor runtime: claim matching processes, run them, report the result.

Shared by every executor kind. It admits and registers the executor (type,
capabilities and location come from its certificate), registers the kind's
functions, then runs ``concurrency`` slots. Each slot:

1. proposes a :class:`Claim` with no process id (the ledger picks the best
   match, so concurrent executors never fight over one process);
2. if nothing matches, long-polls the servers until work of its type is
   ready (no busy polling);
3. runs the process under its ``maxexectime`` (killed locally on expiry; the
   ledger re-queues it on its own clock), while a watcher long-polls the
   process and cancels the run if it was cancelled, failed with its workflow,
   or taken away;
4. closes it with the output, or fails it with the error.

On start it reconciles: processes the ledger still assigns to it (left by a
crash of this executor) are handed back by unregistering and registering
again, which re-queues them without using their retries. On shutdown it
unregisters, re-queuing whatever it was running.

Leader failover: a claim whose answer was lost (the leader died after
committing it) leaves a process assigned here that no slot runs; the slot
then adopts processes the ledger assigns to this executor that it is not
running. A close or fail whose delivery is in doubt is re-sent until the
colony answers; a refusal because the process is no longer running is
success when the ledger shows our own outcome (the first delivery applied).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any

import trio

from colonymesh.executors.base import ExecutorKind, ProcessFailed
from colonymesh.node.colony.client import (
    LOST_ANSWER,
    ColonyClient,
    ColonyUnavailable,
    CommandRefused,
)
from colonymesh.node.errors import ColonymeshError
from colonymesh.node.ledger.commands import (
    AddChild,
    AddLog,
    Claim,
    Close,
    Fail,
    RegisterExecutor,
    RegisterFunction,
    SetAttribute,
    UnregisterExecutor,
)
from colonymesh.node.spec import FunctionSpec, parse_function_spec

log = logging.getLogger("colonymesh.node.executor")
REPORT_RETRY_S = 0.5
RECONCILE_S = 10.0  # how often to look for processes assigned here that no slot runs
RECENT_MAX = 1024


class ExecutorConfigError(ColonymeshError):
    """The executor runtime was set up without what it needs."""


@dataclass(slots=True)
class WorkerStatistics:
    claimed: int = 0
    succeeded: int = 0
    failed: int = 0
    timed_out: int = 0
    stopped: int = 0
    adopted: int = 0  # claims whose answer was lost, run after reading the ledger
    reports_resent: int = 0  # closes/fails sent again while their delivery was in doubt


class _Context:
    def __init__(
        self, client: ColonyClient, process_id: str, spec: FunctionSpec, inputs: list[Any]
    ) -> None:
        self._client = client
        self._process_id = process_id
        self._spec = spec
        self._input = inputs

    @property
    def process_id(self) -> str:
        return self._process_id

    @property
    def spec(self) -> FunctionSpec:
        return self._spec

    @property
    def input(self) -> list[Any]:
        return self._input

    async def log(self, message: str) -> None:
        await self._client.run(AddLog(self._process_id, message))

    async def set_attribute(self, key: str, value: str) -> None:
        await self._client.run(SetAttribute(self._process_id, key, value))

    async def add_child(self, spec: dict[str, Any], *, insert: bool = True) -> str:
        return await self._client.run(
            AddChild(self._process_id, json.dumps(spec), os.urandom(16), insert)
        )


class ExecutorService:
    def __init__(
        self,
        client: ColonyClient,
        kind: ExecutorKind,
        *,
        name: str,
        concurrency: int = 1,
        wait_s: float = 10.0,
    ) -> None:
        certificate = client.peer.certificate
        if certificate is None:
            raise ExecutorConfigError("an executor needs its membership certificate")
        self.client = client
        self.kind = kind
        self.name = name
        self.executor_type = certificate.executor_type
        self.concurrency = concurrency
        self.wait_s = wait_s
        self.stats = WorkerStatistics()
        self.running: dict[str, trio.CancelScope] = {}
        self._taken: set[str] = set()  # claimed or adopted by a slot, not yet reported
        self._recent: dict[str, None] = {}  # processes reported lately (ordered, bounded)
        self.reconcile_s = RECONCILE_S

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self._register()
        try:
            async with trio.open_nursery() as nursery:
                for _ in range(self.concurrency):
                    nursery.start_soon(self._slot)
                nursery.start_soon(self._reconcile)
                task_status.started()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                try:
                    await self.client.propose(UnregisterExecutor("shutting down"))
                except ColonymeshError as error:
                    log.info("executor %s: could not unregister: %s", self.name, error)

    async def _register(self) -> None:
        await self.client.admit_self()
        await self.client.run(RegisterExecutor(self.name))
        mine = self.client.peer.peer_id
        leftovers = [
            p
            for p in await self.client.processes("running", self.executor_type, 10_000)
            if p["executor"] == mine
        ]
        if leftovers:
            log.warning(
                "executor %s: handing back %d processes left by a restart",
                self.name,
                len(leftovers),
            )
            await self.client.run(UnregisterExecutor("restarted"))
            await self.client.run(RegisterExecutor(self.name))
        for funcname, description in sorted(self.kind.functions().items()):
            await self.client.run(RegisterFunction(funcname, description))

    async def _slot(self) -> None:
        while True:
            try:
                answer = await self.client.propose(Claim())
            except ColonyUnavailable as error:
                log.warning("executor %s: colony unavailable: %s", self.name, error)
                await trio.sleep(1.0)
                await self._adopt()  # the claim may have been applied
                continue
            if answer.applied and answer.reason == LOST_ANSWER:
                await self._adopt()
            elif answer.applied:
                # The leader sends the claimed process's view along, sparing a read.
                view = json.loads(answer.view_json) if answer.view_json else None
                await self._execute(answer.subject, view)
            elif "no waiting process" in answer.reason:
                try:
                    await self.client.wait_work(self.executor_type, self.wait_s)
                except ColonyUnavailable:
                    await trio.sleep(1.0)
            elif "not a registered executor" in answer.reason:
                # Declared lost (silent past the leader's stale timeout): join again.
                log.warning("executor %s: no longer registered; registering again", self.name)
                await self._register_again()
            else:
                log.warning("executor %s: claim refused: %s", self.name, answer.reason)
                await trio.sleep(0.5)

    async def _register_again(self) -> None:
        try:
            await self.client.run(RegisterExecutor(self.name))
            for funcname, description in sorted(self.kind.functions().items()):
                await self.client.run(RegisterFunction(funcname, description))
        except (ColonyUnavailable, CommandRefused) as error:
            log.warning("executor %s: could not register again: %s", self.name, error)
            await trio.sleep(1.0)

    async def _reconcile(self) -> None:
        """Now and then, adopt what the ledger assigns here and no slot runs.

        Covers a claim applied while its answer was lost and the immediate
        adoption read a replica that had not applied it yet.
        """
        while True:
            await trio.sleep(self.reconcile_s)
            if len(self._taken) < self.concurrency:
                await self._adopt()

    async def _adopt(self) -> None:
        """Run one process the ledger assigns here that no slot runs (a claim's lost answer)."""
        mine = self.client.peer.peer_id
        try:
            assigned = await self.client.processes("running", self.executor_type, 10_000)
        except ColonyUnavailable:
            return
        for view in assigned:
            process_id = view["processid"]
            if view["executor"] != mine or process_id in self._taken:
                continue
            if process_id in self._recent:
                continue  # reported moments ago; this replica may not have applied it yet
            log.info("executor %s: adopting %s (claim answer lost)", self.name, process_id)
            self.stats.adopted += 1
            await self._execute(process_id)
            return

    async def _execute(self, process_id: str, view: dict[str, Any] | None = None) -> None:
        if process_id in self._taken:
            return
        self._taken.add(process_id)
        try:
            self.stats.claimed += 1
            await self._execute_taken(process_id, view or await self._view(process_id))
        finally:
            self._taken.discard(process_id)
            self._recent[process_id] = None
            while len(self._recent) > RECENT_MAX:
                del self._recent[next(iter(self._recent))]

    async def _view(self, process_id: str) -> dict[str, Any] | None:
        """The process as the colony has it, waiting out a failover; None if not visible."""
        for _ in range(30):
            try:
                view = await self.client.process(process_id)
                if view is None:  # a lagging replica has not applied the claim yet
                    view = await self.client.process(process_id, wait_final_s=0.5)
                return view
            except ColonyUnavailable as error:
                log.warning("executor %s: cannot read %s: %s", self.name, process_id, error)
                await trio.sleep(1.0)
        return None

    async def _execute_taken(self, process_id: str, view: dict[str, Any] | None) -> None:
        if view is None:
            log.warning("executor %s: claimed process %s is not visible", self.name, process_id)
            return
        if view["state"] != "running" or view["executor"] != self.client.peer.peer_id:
            log.info("executor %s: %s is no longer ours (%s)", self.name, process_id, view["state"])
            return
        spec = parse_function_spec(view["spec"])
        context = _Context(self.client, process_id, spec, view["input"])
        outcome: object = None
        async with trio.open_nursery() as nursery:
            scope = trio.CancelScope()
            self.running[process_id] = scope
            nursery.start_soon(self._watch, process_id, scope)
            with scope:
                limit = spec.maxexectime if spec.maxexectime > 0 else float("inf")
                with trio.move_on_after(limit) as timer:
                    try:
                        outcome = await self.kind.run(context)
                    except ProcessFailed as failure:
                        outcome = failure
                    except Exception as error:  # a bug in a kind must not take the executor down
                        outcome = ProcessFailed(f"executor error: {type(error).__name__}: {error}")
                if timer.cancelled_caught:
                    self.stats.timed_out += 1
                    outcome = None  # the ledger re-queues it on its clock
            nursery.cancel_scope.cancel()
        del self.running[process_id]
        if scope.cancelled_caught and outcome is None and not timer.cancelled_caught:
            self.stats.stopped += 1
            return
        await self._report(process_id, outcome)

    async def _report(self, process_id: str, outcome: object) -> None:
        if isinstance(outcome, ProcessFailed):
            await self._deliver_outcome(process_id, Fail(process_id, outcome.errors), "failed")
            self.stats.failed += 1
        elif isinstance(outcome, list):
            try:
                output = json.dumps(outcome)
            except (TypeError, ValueError) as error:
                errors = (f"output is not JSON: {error}",)
                await self._deliver_outcome(process_id, Fail(process_id, errors), "failed")
                self.stats.failed += 1
                return
            if await self._deliver_outcome(process_id, Close(process_id, output), "success"):
                self.stats.succeeded += 1

    async def _deliver_outcome(self, process_id: str, command: Close | Fail, state: str) -> bool:
        """Deliver a close or fail until the colony answers; whether our outcome stands."""
        while True:
            try:
                await self.client.run(command)
                return True
            except CommandRefused as refusal:
                view = await self._view(process_id)
                if view is not None and self._ours(view, command, state):
                    return True  # an earlier delivery applied (the answer was lost)
                log.info("executor %s: result for %s refused: %s", self.name, process_id, refusal)
                still_ours = (
                    view is not None
                    and view["state"] == "running"
                    and view["executor"] == self.client.peer.peer_id
                )
                if isinstance(command, Close) and still_ours:
                    # The ledger refuses this output (e.g. too large): fail rather than
                    # leave the process running here with nobody working on it.
                    failure = Fail(process_id, (f"close refused: {refusal}",))
                    await self._deliver_outcome(process_id, failure, "failed")
                return False
            except ColonyUnavailable as error:
                log.warning("executor %s: reporting %s again: %s", self.name, process_id, error)
                self.stats.reports_resent += 1
                await trio.sleep(REPORT_RETRY_S)

    def _ours(self, view: dict[str, Any], command: Close | Fail, state: str) -> bool:
        if view["state"] != state or view["executor"] != self.client.peer.peer_id:
            return False
        if isinstance(command, Close):
            return bool(view["output"] == json.loads(command.output_json))
        return all(error in view["errors"] for error in command.errors)

    async def _watch(self, process_id: str, scope: trio.CancelScope) -> None:
        """Stop the run if the ledger no longer has it running here."""
        mine = self.client.peer.peer_id
        while True:
            try:
                view = await self.client.process(process_id, wait_final_s=20.0)
            except ColonyUnavailable:
                await trio.sleep(1.0)
                continue
            if view is None:
                continue  # a lagging replica has not seen it yet
            taken = view["state"] == "running" and view["executor"] != mine
            if view["state"] in ("success", "failed", "cancelled") or taken:
                log.info(
                    "executor %s: stopping %s (now %s)",
                    self.name,
                    process_id,
                    view and view["state"],
                )
                scope.cancel()
                return
