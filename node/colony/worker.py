"""The executor runtime: claim matching processes, run them, report the result.

Shared by every executor kind. It admits and registers the executor (type,
capabilities and location come from its certificate), registers the kind's
functions, then runs ``concurrency`` slots. Each slot:

1. sends a :class:`Claim` with no process id (the ledger picks the best
   match, so concurrent executors never fight over one process) to the
   leader's ``colony.claim_work``, which parks it outside the log until a
   process it matches is ready and not spoken for by another claim in
   flight, then proposes it and answers with the process (no polling, and
   one claim per process in the log rather than one per idle slot);
2. if nothing came within ``wait_s``, claims again;
3. runs the process under its ``maxexectime`` (killed locally on expiry; the
   ledger re-queues it on its own clock), while a watcher long-polls the
   process and cancels the run if it was cancelled, failed with its workflow,
   or taken away; a spec with ``fs`` directives has its folders synced
   before and after the run (``fssync.py``, when the service's ``fs`` is set);
4. closes it with the output, or fails it with the error: the close or fail
   rides ahead of the slot's next claim in the same request (one round
   trip, one Raft batch); when that delivery is in doubt it is re-sent on
   its own as below.

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

Liveness lease: a run may go on only while the executor holds a lease from
the current leader. A heartbeat task sends ``colony.heartbeat`` every
quarter lease; only a leader acknowledges one, and counts the executor as
seen on receipt. An ack renews the lease until *the heartbeat's sending time*
plus the lease ``L``; when the lease lapses, every running process is
cancelled at once (a local process's whole group is killed by its kind) and
no slot claims or starts a run until an ack renews it. Processes so stopped
stay assigned here; once the lease is back they are adopted again (re-run
here) unless the leader has re-queued them meanwhile.

Why the leader cannot hand a process to another executor while it runs
here (all times on local monotonic clocks; only durations are compared, so
no clock needs to be synchronised, only to tick at nearly the same rate):

* Let ``s`` be the sending time of the last heartbeat a leader acknowledged.
  The lease lapses at ``s + L``. That leader received it at ``r >= s`` and
  set its last-seen time to ``r``, so it declares the executor lost (which
  re-queues its processes) no earlier than ``r + stale_s >= s + stale_s``.
* A new leader, elected at ``e``, starts its silence clocks afresh at the
  first liveness round of its term (after ``e``), so it declares no earlier
  than ``e + stale_s``. A deposed leader may acknowledge until it notices
  (check-quorum: within ``2 * election_timeout_s`` of ``e``), so
  ``s <= e + 2 * election_timeout_s``.
* Hence the lease lapses at most at ``e + 2 * election_timeout_s + L``, and
  ``L <= (stale_s - 2 * election_timeout_s) / 2`` leaves the other half of
  the remaining time for stopping the run (the kind's kill grace; SIGKILL
  of a process group is immediate) and for clock rate drift (1e-3 of
  seconds is negligible against it). A maxexectime re-queue is separate:
  the ledger adds its own grace to that deadline.

The leader tells ``stale_s`` and ``election_timeout_s`` in every ack, and
the lease used is ``min(lease_s, (stale_s - 2 * election_timeout_s) / 2)``
(``lease_s`` defaults to 2 s; with the default ``executor_stale_s`` of 10 s
and a 0.5 s election timeout it stays 2 s). This is the rule the colony
simulation (``simulations/colony_actors.py``) checks, with the same
2 s lease against a 5 s stale timeout. A python function running in a thread
cannot be killed: its task is abandoned (the thread finishes on its own), so
only async python functions and process-backed kinds stop for real.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any

import trio

from colonymesh.executors.base import ExecutorKind, ProcessFailed
from colonymesh.node.colony import fssync
from colonymesh.node.colony.client import (
    LOST_ANSWER,
    ColonyClient,
    ColonyUnavailable,
    CommandRefused,
)
from colonymesh.node.colony.protocol import HeartbeatAck, Proposed
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
LEASE_S = 2.0  # default liveness lease (see the module docs for the bound)
HEARTBEAT_MIN_S = 0.05
# A run's watcher starts reading the ledger this long after the run: most runs are
# over by then, sparing a request per process; a cancellation within it stops the
# run at most this much later (the ledger refuses its close either way).
WATCH_DELAY_S = 0.25


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
    reports_carried: int = 0  # closes/fails applied while riding ahead of the next claim
    lease_lapses: int = 0  # times the liveness lease lapsed
    lease_stops: int = 0  # runs cancelled because the lease lapsed
    heartbeats_acked: int = 0


@dataclass(frozen=True, slots=True)
class _Report:
    """A slot's outcome not yet delivered: carried by its next claim, or sent alone."""

    process_id: str
    command: Close | Fail
    state: str  # the state the command leads to ("success" or "failed")


class _Context:
    def __init__(
        self, client: ColonyClient, process_id: str, spec: FunctionSpec, inputs: list[Any]
    ) -> None:
        self._client = client
        self._process_id = process_id
        self._spec = spec
        self._input = inputs
        self.fs_root = ""  # where the spec's fs directives synced (fssync.py), if any
        self.fs_mount = ""

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
        lease_s: float = LEASE_S,
    ) -> None:
        certificate = client.peer.certificate
        if certificate is None:
            raise ExecutorConfigError("an executor needs its membership certificate")
        if not lease_s > 0:
            raise ExecutorConfigError(f"lease_s must be positive, not {lease_s}")
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
        self.fs: fssync.FsSync | None = None  # carries out specs' fs directives, when set
        self.lease_s = lease_s  # as configured; the lease used may be shorter (lease_used_s)
        self.lease_used_s = lease_s
        self._lease_until = -float("inf")  # trio clock
        self._lease_back = trio.Event()  # set when a lapsed lease is renewed
        self._stopped_by_lapse: set[str] = set()
        self._readopt = 0  # processes stopped by a lapse, to adopt again with the lease back

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self._register()
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self._keep_lease)
                nursery.start_soon(self._guard_lease)
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

    # --- the liveness lease (see the module docs) -----------------------------

    def holds_lease(self) -> bool:
        return trio.current_time() < self._lease_until

    def lease_remaining_s(self) -> float:
        return max(0.0, self._lease_until - trio.current_time())

    def _lease_for(self, ack: HeartbeatAck) -> float:
        if ack.stale_s <= 0:  # the leader never declares executors lost
            return self.lease_s
        bound = (ack.stale_s - 2 * ack.election_timeout_s) / 2
        if bound <= 0 and self.lease_used_s > 0:
            log.error(
                "executor %s: the leader's executor_stale_s (%g s) is too short for a safe "
                "lease with its election timeout (%g s): not running anything",
                self.name,
                ack.stale_s,
                ack.election_timeout_s,
            )
        return max(0.0, min(self.lease_s, bound))

    async def _keep_lease(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Heartbeat the leader every quarter lease; each ack renews the lease from its sending."""
        started = False
        while True:
            interval = max(HEARTBEAT_MIN_S, self.lease_used_s / 4)
            sent = trio.current_time()
            ack = await self.client.heartbeat(timeout_s=max(interval, self.lease_used_s / 2))
            if ack is not None:
                self.stats.heartbeats_acked += 1
                self.lease_used_s = self._lease_for(ack)
                self._renew(sent + self.lease_used_s)
            if not started:
                started = True
                task_status.started()
            await trio.sleep_until(sent + max(HEARTBEAT_MIN_S, self.lease_used_s / 4))

    def _renew(self, until: float) -> None:
        lapsed = not self.holds_lease()
        self._lease_until = max(self._lease_until, until)
        if lapsed and self.holds_lease():
            self._lease_back.set()
            self._lease_back = trio.Event()

    async def _guard_lease(self) -> None:
        """Cancel every run the moment the lease lapses."""
        while True:
            if not self.holds_lease():
                await self._lease_back.wait()
                continue
            until = self._lease_until
            await trio.sleep_until(until)
            if self._lease_until > until:
                continue  # renewed meanwhile
            self.stats.lease_lapses += 1
            if self.running:
                log.warning(
                    "executor %s: no leader acknowledged a heartbeat for %.2f s: lease lapsed, "
                    "stopping %d runs",
                    self.name,
                    self.lease_used_s,
                    len(self.running),
                )
            for process_id, scope in sorted(self.running.items()):
                self._stopped_by_lapse.add(process_id)
                self.stats.lease_stops += 1
                self._readopt += 1
                scope.cancel()

    async def _wait_lease(self) -> None:
        while not self.holds_lease():
            await self._lease_back.wait()

    async def _slot(self) -> None:
        pending: _Report | None = None  # the last run's outcome, to carry with the next claim
        while True:
            if pending is not None and (self._readopt > 0 or not self.holds_lease()):
                await self._send_report(pending)  # no claim goes out soon: deliver it alone
                pending = None
            await self._wait_lease()
            if self._readopt > 0:
                self._readopt -= 1
                await self._adopt()  # a run the lapse stopped, unless it was re-queued
                continue
            report = self.client.seal(pending.command) if pending is not None else b""
            asked = trio.current_time()
            try:
                answer, carried = await self.client.claim_work(Claim(), self.wait_s, report)
            except CommandRefused:  # the report is too large to travel with a claim
                if pending is not None:
                    await self._send_report(pending)
                    pending = None
                continue
            except ColonyUnavailable as error:
                log.warning("executor %s: colony unavailable: %s", self.name, error)
                if pending is not None:
                    await self._send_report(pending)
                    pending = None
                await trio.sleep(1.0)
                await self._adopt()  # the claim may have been applied
                continue
            if pending is not None:
                await self._settle_report(pending, carried)
                pending = None
            if answer.applied and answer.reason == LOST_ANSWER:
                await self._adopt()
            elif answer.applied:
                # The leader sends the claimed process's view along, sparing a read.
                view = json.loads(answer.view_json) if answer.view_json else None
                pending = await self._execute(answer.subject, view, carry=True)
            elif "no waiting process" in answer.reason:
                if trio.current_time() - asked < self.wait_s / 2:
                    # Answered without parking (a server that does not park claims).
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

    async def _execute(
        self, process_id: str, view: dict[str, Any] | None = None, *, carry: bool = False
    ) -> _Report | None:
        """Run a process assigned here; with ``carry``, return its outcome instead of sending it."""
        if process_id in self._taken:
            return None
        self._taken.add(process_id)
        try:
            self.stats.claimed += 1
            report = await self._execute_taken(process_id, view or await self._view(process_id))
            if report is not None and not carry:
                await self._send_report(report)
                return None
            return report
        finally:
            self._taken.discard(process_id)
            if process_id in self._stopped_by_lapse:
                # Not reported: adopt it again once the lease is back.
                self._stopped_by_lapse.discard(process_id)
            else:
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

    async def _execute_taken(self, process_id: str, view: dict[str, Any] | None) -> _Report | None:
        if view is None:
            log.warning("executor %s: claimed process %s is not visible", self.name, process_id)
            return None
        if view["state"] != "running" or view["executor"] != self.client.peer.peer_id:
            log.info("executor %s: %s is no longer ours (%s)", self.name, process_id, view["state"])
            return None
        if not self.holds_lease():
            # The leader may give it away before we could stop it: leave it for
            # adoption once the lease is back (or for the leader to re-queue).
            self._stopped_by_lapse.add(process_id)
            self._readopt += 1
            return None
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
                        outcome = await self._run_kind(context)
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
            return None
        return self._outcome_report(process_id, outcome)

    async def _run_kind(self, context: _Context) -> list[Any]:
        """Run the kind, between the spec's fs sync directives if it has any (``fssync.py``)."""
        spec = context.spec
        if not fssync.has_directives(spec):
            return await self.kind.run(context)
        if self.fs is None:
            raise ProcessFailed("spec has fs directives; this executor has no meta-filesystem")
        try:
            state = await self.fs.before(context.process_id, spec)
        except fssync.SyncFailed as error:
            raise ProcessFailed(f"fs sync before the run: {error}") from None
        context.fs_root, context.fs_mount = str(self.fs.root), str(state.mount)
        succeeded = False
        try:
            output = await self.kind.run(context)
            succeeded = True
        finally:
            try:
                await self.fs.after(state, succeeded=succeeded)
            except fssync.SyncFailed as error:
                if succeeded:  # outputs that did not reach the colony fail the process
                    raise ProcessFailed(f"fs sync after the run: {error}") from None
        return output

    def _outcome_report(self, process_id: str, outcome: object) -> _Report | None:
        """The close or fail an outcome calls for (None: nothing to say, e.g. timed out)."""
        if isinstance(outcome, ProcessFailed):
            return _Report(process_id, Fail(process_id, outcome.errors), "failed")
        if isinstance(outcome, list):
            try:
                output = json.dumps(outcome)
            except (TypeError, ValueError) as error:
                errors = (f"output is not JSON: {error}",)
                return _Report(process_id, Fail(process_id, errors), "failed")
            return _Report(process_id, Close(process_id, output), "success")
        return None

    async def _send_report(self, report: _Report) -> None:
        """Deliver a report on its own, until the colony answers."""
        if await self._deliver_outcome(report.process_id, report.command, report.state):
            self._count(report)
        elif report.state == "failed":
            self.stats.failed += 1  # as before: a fail counts even when refused

    async def _settle_report(self, report: _Report, carried: Proposed | None) -> None:
        """A report carried by a claim: done if it applied, else delivered again on its own.

        In doubt (no answer, not committed, delivered before) or refused, the
        lone delivery sorts it out: a re-send the ledger refuses because the
        first one applied is recognised there by reading the process.
        """
        if carried is not None and carried.applied and carried.reason != LOST_ANSWER:
            self.stats.reports_carried += 1
            self._count(report)
            return
        await self._send_report(report)

    def _count(self, report: _Report) -> None:
        if report.state == "success":
            self.stats.succeeded += 1
        else:
            self.stats.failed += 1

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
        await trio.sleep(WATCH_DELAY_S)
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
