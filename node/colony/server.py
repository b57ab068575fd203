"""A server peer's colony duties: replicate the ledger with Raft and answer members.

Composes, inside one nursery that lives as long as the peer: the ledger
(:class:`~colonymesh.node.ledger.ledger.Ledger`), the Raft driver that
replicates it over :class:`~colonymesh.node.raft.network.PeerRaftNetwork`, and
the request handlers members use:

* ``colony.propose``: the leader appends the author's sealed command to the
  log and answers with its outcome once applied; a follower answers with the
  leader it knows, and the member asks there.
* ``colony.get_process`` / ``get_workflow`` / ``list_processes`` / ``status``:
  answered from this replica (which may trail the leader by a heartbeat).
  ``wait_final_s`` turns a read into a long-poll that answers as soon as the
  process is final here.
* ``colony.wait_work``: an executor's long-poll for claimable work.
* ``colony.claim_work``: an executor's claim, parked here (not in the log)
  until a ready process it matches is not spoken for by claims in flight, then
  proposed; with the slot's previous close or fail carried ahead of it. So
  one claim per process reaches the log, not one per idle slot.
* ``colony.heartbeat``: an executor renews its liveness lease; only the
  leader acknowledges (and counts the executor as seen, see ``liveness.py``).

While leader, the server seals a :class:`~colonymesh.node.ledger.commands.Tick`
with its clock every ``tick_interval_s``: time enters the ledger only so.
Its :class:`~colonymesh.node.colony.scheduler.TriggerScheduler` fires due
crons and generators through the log while it leads (``scheduler.py``).

Every replica builds the same genesis ledger: the colony, the genesis time and
the founding certificates, all from the colony's configuration.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from colonymesh.consensus import NotLeader, ProposalDropped, RaftConfig, Role
from colonymesh.consensus.storage import LogStore
from colonymesh.consensus.types import Entry, NodeId
from colonymesh.node.certs import Certificate
from colonymesh.node.colony import fsviews, views
from colonymesh.node.colony.client import ledger_sealer
from colonymesh.node.colony.liveness import ExecutorLiveness
from colonymesh.node.colony.protocol import (
    FRAME_BYTES_MAX,
    ClaimAnswer,
    ClaimWork,
    FsQuery,
    GetProcess,
    GetWorkflow,
    HeartbeatAck,
    ListProcesses,
    Proposed,
    View,
    WaitWork,
)
from colonymesh.node.colony.scheduler import TriggerScheduler
from colonymesh.node.envelope import decode_frame
from colonymesh.node.errors import ColonymeshError
from colonymesh.node.ledger import matching
from colonymesh.node.ledger.commands import Claim, SubmitFunction, Tick
from colonymesh.node.ledger.events import (
    CommandApplied,
    CommandId,
    CommandRefused,
    LedgerEvent,
    ProcessFinished,
)
from colonymesh.node.ledger.ledger import Ledger
from colonymesh.node.ledger.model import ProcessState
from colonymesh.node.peer.messaging import Handler, Incoming
from colonymesh.node.peer.peer import Peer
from colonymesh.node.raft.driver import DriverConfig, ProposalLost, RaftDriver
from colonymesh.node.raft.network import PeerRaftNetwork
from colonymesh.node.spec import FunctionSpec, SpecError, parse_function_spec, spec_id

log = logging.getLogger("colonymesh.node.colony")

LONG_POLL_MAX_S = 30.0
# A parked claim looks at least this often whether this server still leads: a
# deposed leader applies nothing, so no apply would wake it to say so.
PARK_RECHECK_S = 0.25


@dataclass(frozen=True, slots=True)
class ServerConfig:
    state_dir: Path
    founding_servers: tuple[str, ...]
    genesis_ms: int
    founding_certificates: tuple[Certificate, ...] = ()
    raft: RaftConfig = field(
        default_factory=lambda: RaftConfig(election_timeout_s=0.5, heartbeat_interval_s=0.05)
    )
    tick_interval_s: float = 0.5
    propose_timeout_s: float = 10.0
    # Snapshot the ledger and drop the Raft log behind it every this many
    # applied entries (0 keeps the whole log). Lagging servers catch up by
    # InstallSnapshot, restarts replay only the tail.
    snapshot_every_entries: int = 10_000
    # The leader declares an executor lost after this long without a ping answer (0: never).
    executor_stale_s: float = 10.0


class LedgerMachine:
    """Adapts the ledger to the Raft driver and wakes long-polls after every apply."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.changed = trio.Event()
        self.on_applied: Callable[[list[LedgerEvent]], None] | None = None
        self.on_restored: Callable[[], None] | None = None

    def apply(self, entry: Entry) -> list[LedgerEvent]:
        events = self.ledger.apply(entry.index, entry.data)
        if self.on_applied is not None:
            self.on_applied(events)
        self.changed.set()
        self.changed = trio.Event()
        return events

    def poke(self) -> None:
        """Wake every long-poll to look at the state again (it changed off the log)."""
        self.changed.set()
        self.changed = trio.Event()

    def snapshot(self) -> bytes:
        return self.ledger.snapshot()

    def restore(self, data: bytes) -> None:
        """Replace the ledger's state (InstallSnapshot, or a restart from disk).

        A snapshot the ledger refuses raises ``SnapshotError`` and stops the
        driver: it came from our own disk or from a fellow server, so it is
        corruption, and carrying on from a wrong state would be worse.
        """
        self.ledger.restore(data)
        log.info(
            "ledger restored from a snapshot at index %d (%d bytes, %d processes)",
            self.ledger.applied_index,
            len(data),
            len(self.ledger.processes),
        )
        if self.on_restored is not None:
            self.on_restored()
        self.changed.set()
        self.changed = trio.Event()


class LedgerServer:
    def __init__(self, peer: Peer, config: ServerConfig, nursery: trio.Nursery) -> None:
        self.peer = peer
        self.config = config
        colony = peer.config.membership.colony
        certificates = sorted(config.founding_certificates, key=lambda c: c.member_key)
        self.ledger = Ledger(colony, genesis_ms=config.genesis_ms, certificates=certificates)
        self.machine = LedgerMachine(self.ledger)
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.store = LogStore.open(config.state_dir / "raft")
        self.network = PeerRaftNetwork(peer, nursery, self._deliver)
        self.driver = RaftDriver(
            NodeId(peer.peer_id),
            self.store,
            self.machine,
            self.network,
            founding_voters=[NodeId(p) for p in config.founding_servers],
            raft_config=config.raft,
            config=DriverConfig(snapshot_every_entries=config.snapshot_every_entries),
        )
        self._sealer = ledger_sealer(peer)  # the same as this peer's clients' (client.py)
        self.liveness = ExecutorLiveness(
            peer,
            self.ledger,
            self.driver,
            self._sealer,
            self.propose_frame,
            config.executor_stale_s,
        )
        self.triggers = TriggerScheduler(  # crons and generators (scheduler.py)
            peer,
            self.ledger,
            lambda: self.machine.changed,
            lambda: self.is_leader,
            self._sealer,
            self.propose_frame,
        )
        self.hopeless_claims = 0
        # Parked claims (``colony.claim_work``) proposed and not yet answered, per
        # executor type: a parked claim goes only while more ready processes match
        # it than this, so one ready process draws one claim, not every idle slot.
        self._claims_in_flight: dict[str, int] = {}
        self.parked_claims = 0  # statistics: claims parked, and how many reached the log
        self.parked_proposed = 0
        self.parked_now = 0
        # Submissions proposed here and not yet applied, while claims are parked: a
        # parked claim that matches one is proposed right behind it (same Raft batch
        # when the driver has not cut one in between), not after it has applied.
        self._pending_submits: dict[CommandId, FunctionSpec] = {}
        # Reads waiting for one process to end (``get_process`` with ``wait_final_s``),
        # woken by its ProcessFinished only, not by every apply.
        self._finished: dict[str, trio.Event] = {}
        self.machine.on_applied = self._applied
        self.machine.on_restored = self._wake_all_finished
        for kind, handler in (
            ("colony.propose", self._propose),
            ("colony.get_process", self._get_process),
            ("colony.get_workflow", self._get_workflow),
            ("colony.list_processes", self._list_processes),
            ("colony.status", self._status),
            ("colony.wait_work", self._wait_work),
            ("colony.claim_work", self._claim_work),
            ("colony.fs_query", self._fs_query),
            ("colony.heartbeat", self._heartbeat),
        ):
            # A spare (or a removed voter) holds no current ledger: it answers no reads,
            # so members ask the next server (``membership.py``).
            answers_always = kind in (
                "colony.propose",
                "colony.claim_work",
                "colony.status",
                "colony.heartbeat",
            )
            peer.on(kind, handler if answers_always else self._members_only(handler))

    def in_group(self) -> bool:
        """Whether this server is a voter or learner of the current Raft configuration."""
        conf = self.driver.status().conf
        return self.peer.peer_id in conf.voters or self.peer.peer_id in conf.learners

    def _members_only(self, handler: Handler) -> Handler:
        async def answer_if_member(incoming: Incoming) -> object | None:
            if not self.in_group():
                return None  # the asker gets an error and asks another server
            return await handler(incoming)

        return answer_if_member

    def _deliver(self, message: Any) -> None:
        self.driver.deliver(message)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.driver.run)
                nursery.start_soon(self._tick_while_leader)
                nursery.start_soon(self.triggers.run)
                if self.config.executor_stale_s > 0:
                    nursery.start_soon(self.liveness.run)
                task_status.started()
        finally:
            self.store.close()

    @property
    def is_leader(self) -> bool:
        return self.driver.status().role is Role.LEADER

    async def propose_frame(self, frame: bytes) -> Proposed:
        status = self.driver.status()
        if status.role is not Role.LEADER:
            return self._not_leader(status.leader or "")
        try:
            with trio.fail_after(self.config.propose_timeout_s):
                events: list[LedgerEvent] = await self.driver.propose(frame)
        except NotLeader as error:
            return self._not_leader(error.leader_hint or "")
        except (ProposalLost, ProposalDropped, trio.TooSlowError) as error:
            return Proposed(False, reason=f"proposal not committed: {error}; retry", retry=True)
        first = events[0]
        if isinstance(first, CommandApplied):
            return Proposed(True, subject=first.subject)
        if isinstance(first, CommandRefused):
            return Proposed(False, reason=first.reason)
        raise RuntimeError(f"the ledger answered a command with {first!r}")

    def _not_leader(self, hint: str) -> Proposed:
        """Where to ask instead: the leader we know of, with its addresses."""
        addresses = tuple(self.peer.connections.addresses.addresses(hint)[:8]) if hint else ()
        return Proposed(False, not_leader=True, leader_hint=hint, leader_addrs=addresses)

    async def _tick_while_leader(self) -> None:
        """Tick at once on winning an election (the ledger's clock may be stale), then every interval."""
        last_tick = -float("inf")
        last_term = -1
        while True:
            await trio.sleep(min(0.05, self.config.tick_interval_s))
            status = self.driver.status()
            if status.role is not Role.LEADER:
                continue
            due = trio.current_time() - last_tick >= self.config.tick_interval_s
            if status.term != last_term or due:
                last_term, last_tick = status.term, trio.current_time()
                now = time.time()
                result = await self.propose_frame(self._sealer.seal(Tick(int(now * 1000)), now))
                if not result.applied and not result.not_leader:
                    log.info("tick not applied: %s", result.reason)

    # --- handlers ---------------------------------------------------------------

    async def _propose(self, incoming: Incoming) -> Proposed:
        frame = incoming.body.command
        try:
            envelope = decode_frame(frame, FRAME_BYTES_MAX, self.ledger.colony.colony_id).envelope
        except ColonymeshError:
            envelope = None  # the ledger refuses it deterministically, with the reason
        is_claim = envelope is not None and isinstance(envelope.body, Claim)
        if (
            is_claim
            and envelope is not None
            and self._claim_is_hopeless(envelope.sender, envelope.body)
        ):
            self.hopeless_claims += 1
            return Proposed(False, reason="no waiting process matches this executor")
        pending = self._note_submit(envelope) if envelope is not None else None
        try:
            # No await between noting the submission and proposing it, so a parked
            # claim it wakes is appended after it.
            answer = await self.propose_frame(frame)
        finally:
            if pending is not None:
                self._pending_submits.pop(pending, None)
        process = self.ledger.processes.get(answer.subject) if answer.applied and is_claim else None
        if process is not None:
            answer = dataclasses.replace(answer, view_json=json.dumps(views.process_view(process)))
        return answer

    def _claim_is_hopeless(self, author: bytes, claim: Claim) -> bool:
        """A claim-any that this leader's state says would match nothing.

        Such a claim would only add a refusal to the log, so the leader answers
        it here. The answer is a hint (this replica may trail its own log by a
        few entries), which costs the executor at most one long-poll round;
        claims that might succeed always go through Raft.
        """
        executor = self.ledger.executors.get(author)
        if claim.process_id or executor is None or not self.is_leader:
            return False
        available = matching.free(
            executor, (self.ledger.processes[p].spec for p in executor.running)
        )
        ready = self.ledger.ready_processes(executor.executor_type)
        return all(matching.mismatch(p.spec, executor, available) for p in ready)

    async def _claim_work(self, incoming: Incoming) -> ClaimAnswer:
        """Propose the carried report, park the claim until it may win, then propose it."""
        body: ClaimWork = incoming.body
        report: Proposed | None = None

        async def propose_report() -> None:
            nonlocal report
            report = await self.propose_frame(body.report)

        async with trio.open_nursery() as nursery:
            if body.report:  # proposed first: it precedes the claim in the log
                nursery.start_soon(propose_report)
            claim = await self._park_and_claim(body.claim, body.wait_s)
        return ClaimAnswer(claim, report)

    async def _park_and_claim(self, frame: bytes, wait_s: float) -> Proposed:
        status = self.driver.status()
        if status.role is not Role.LEADER:
            return self._not_leader(status.leader or "")
        try:
            envelope = decode_frame(frame, FRAME_BYTES_MAX, self.ledger.colony.colony_id).envelope
        except ColonymeshError as error:
            return Proposed(False, reason=f"not a claim: {error}")
        claim = envelope.body
        if not isinstance(claim, Claim) or claim.process_id:
            return Proposed(False, reason="colony.claim_work takes a claim of any process")
        author = envelope.sender
        executor = self.ledger.executors.get(author)
        executor_type = executor.executor_type if executor is not None else ""
        self.parked_claims += 1
        self.parked_now += 1
        try:
            # Unregistered authors go straight to the log, which refuses them with the reason.
            with trio.move_on_after(min(max(wait_s, 0.0), LONG_POLL_MAX_S)):
                while executor is not None and not self._claim_may_win(author, executor_type):
                    with trio.move_on_after(PARK_RECHECK_S):
                        await self.machine.changed.wait()
                    if not self.is_leader:
                        return self._not_leader(self.driver.status().leader or "")
                    executor = self.ledger.executors.get(author)
        finally:
            self.parked_now -= 1
        if not self.is_leader:
            return self._not_leader(self.driver.status().leader or "")
        if executor is not None and not self._claim_may_win(author, executor_type):
            return Proposed(False, reason="no waiting process matches this executor")
        self.parked_proposed += 1
        self._claims_in_flight[executor_type] = self._claims_in_flight.get(executor_type, 0) + 1
        try:
            answer = await self.propose_frame(frame)
        finally:
            self._claims_in_flight[executor_type] -= 1
            self.machine.poke()  # a refused claim leaves its process to the next parked one
        process = self.ledger.processes.get(answer.subject) if answer.applied else None
        if process is not None:
            answer = dataclasses.replace(answer, view_json=json.dumps(views.process_view(process)))
        return answer

    def _note_submit(self, envelope: Any) -> CommandId | None:
        """Remember a submission about to be proposed, if claims are parked to take it."""
        body = envelope.body
        if not isinstance(body, SubmitFunction) or self.parked_now == 0 or not self.is_leader:
            return None
        try:
            spec = parse_function_spec(json.loads(body.spec_json))
        except (SpecError, ValueError):
            return None  # the ledger refuses it; nothing to claim
        if spec.conditions.dependencies:
            return None
        if spec_id(spec, envelope.sender, body.nonce) in self.ledger.processes:
            return None  # a re-submission: no new process
        key = CommandId(envelope.sender, envelope.seq)
        self._pending_submits[key] = spec
        self.machine.poke()
        return key

    def _applied(self, events: list[LedgerEvent]) -> None:
        """An applied submission is a ready process now (or refused): no longer pending.

        A finished process wakes the reads waiting for it.
        """
        if self._pending_submits and events:
            first = events[0]
            if isinstance(first, CommandApplied | CommandRefused) and first.command is not None:
                self._pending_submits.pop(first.command, None)
        if self._finished:
            for event in events:
                if isinstance(event, ProcessFinished):
                    waiters = self._finished.pop(event.process_id, None)
                    if waiters is not None:
                        waiters.set()

    def _wake_all_finished(self) -> None:
        """A snapshot replaced the state: every waiting read looks again."""
        finished, self._finished = self._finished, {}
        for waiters in finished.values():
            waiters.set()

    def _claim_may_win(self, author: bytes, executor_type: str) -> bool:
        """Whether more ready processes match the executor than claims of its type are in flight.

        Judged on this leader's applied state, a hint only: the log decides,
        and a claim that loses its race is refused there and re-parked.
        """
        executor = self.ledger.executors.get(author)
        if executor is None or not self.is_leader:
            return executor is None
        available = matching.free(
            executor, (self.ledger.processes[p].spec for p in executor.running)
        )
        spoken_for = self._claims_in_flight.get(executor_type, 0)
        for process in self.ledger.ready_processes(executor.executor_type):
            if not matching.mismatch(process.spec, executor, available):
                if spoken_for == 0:
                    return True
                spoken_for -= 1
        for spec in self._pending_submits.values():
            if spec.conditions.executortype == executor.executor_type and not matching.mismatch(
                spec, executor, available
            ):
                if spoken_for == 0:
                    return True
                spoken_for -= 1
        return False

    async def _wait_until(self, ready: Any, wait_s: float) -> None:
        with trio.move_on_after(min(max(wait_s, 0.0), LONG_POLL_MAX_S)):
            while not ready():
                await self.machine.changed.wait()

    async def _get_process(self, incoming: Incoming) -> View:
        body: GetProcess = incoming.body
        processes = self.ledger.processes

        def final() -> bool:
            process = processes.get(body.process_id)
            return process is not None and process.state.is_final

        with trio.move_on_after(min(max(body.wait_final_s, 0.0), LONG_POLL_MAX_S)):
            while not final():
                waiters = self._finished.get(body.process_id)
                if waiters is None:
                    waiters = self._finished[body.process_id] = trio.Event()
                try:
                    await waiters.wait()
                finally:
                    if not waiters.is_set() and waiters.statistics().tasks_waiting == 0:
                        self._finished.pop(body.process_id, None)
        process = processes.get(body.process_id)
        if process is None:
            return View(False)
        return View(True, json.dumps(views.process_view(process, logs=True)))

    async def _get_workflow(self, incoming: Incoming) -> View:
        body: GetWorkflow = incoming.body
        workflows = self.ledger.workflows

        def final() -> bool:
            workflow = workflows.get(body.workflow_id)
            return workflow is not None and workflow.state.is_final

        await self._wait_until(final, body.wait_final_s)
        workflow = workflows.get(body.workflow_id)
        if workflow is None:
            return View(False)
        return View(True, json.dumps(views.workflow_view(workflow, self.ledger)))

    async def _list_processes(self, incoming: Incoming) -> View:
        body: ListProcesses = incoming.body
        state = ProcessState(body.state) if body.state in {s.value for s in ProcessState} else None
        selected = [
            views.process_view(p)
            for p in self.ledger.processes.values()
            if (state is None or p.state is state)
            and (not body.executor_type or p.spec.conditions.executortype == body.executor_type)
        ]
        return View(True, json.dumps(selected[-max(0, min(body.limit, 10_000)) :]))

    async def _status(self, incoming: Incoming) -> View:
        status = self.driver.status()
        raft = {
            "role": status.role.name.lower(),
            "term": status.term,
            "leader": status.leader or "",
            "commit": status.commit,
            "voters": list(status.conf.voters),
            "this": self.peer.peer_id,
        }
        return View(True, json.dumps(views.status_view(self.ledger, raft)))

    async def _heartbeat(self, incoming: Incoming) -> HeartbeatAck:
        """Renew an executor's lease: only the leader acknowledges, and notes it as seen."""
        status = self.driver.status()
        if status.role is not Role.LEADER:
            hint = status.leader or ""
            addresses = tuple(self.peer.connections.addresses.addresses(hint)[:8]) if hint else ()
            return HeartbeatAck(False, status.term, leader_hint=hint, leader_addrs=addresses)
        self.liveness.heard(incoming.envelope.sender)
        return HeartbeatAck(
            True,
            status.term,
            stale_s=self.config.executor_stale_s,
            election_timeout_s=self.config.raft.election_timeout_s,
            leader_hint=self.peer.peer_id,
        )

    async def _fs_query(self, incoming: Incoming) -> View:
        body: FsQuery = incoming.body
        document = fsviews.answer(self.ledger.fsmeta, body.op, body.label, body.name)
        return View(document is not None, json.dumps(document) if document is not None else "")

    async def _wait_work(self, incoming: Incoming) -> View:
        body: WaitWork = incoming.body

        def available() -> bool:
            return next(iter(self.ledger.ready_processes(body.executor_type)), None) is not None

        await self._wait_until(available, body.wait_s)
        return View(available())


def server_ids(certificates: Sequence[Certificate]) -> tuple[str, ...]:
    return tuple(sorted(c.peer_id for c in certificates))
