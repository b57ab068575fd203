"""The colony ledger: the state machine Raft replicates among the server peers.

Owns members and revocations, executors, registered functions, processes,
workflows, their logs and attributes; crons and generators keep their records
and rules in ``crons.py`` and ``generators.py`` and start workflows through
:meth:`Ledger.start_workflow`. One entry point, :meth:`Ledger.apply`,
takes a committed Raft entry (one sealed envelope frame) and returns the
events it caused; nothing else mutates the state.

How it works: every replica decodes the entry, checks the author is an
admitted member at *ledger time* and that the signature verifies, refuses a
replayed command (per-author sequence window), then runs the command's
handler. Handlers validate everything before changing anything, so a refused
command changes nothing but the applied index; refusals are events, never
exceptions, because a refusal is a deterministic outcome every replica agrees
on. Time enters only through the leader's signed :class:`Tick`; timeouts
(``maxwaittime``, ``maxexectime``) fire from a deadline heap when ticks pass
them.

Invariants (checked by the tests and the simulator):

* a process is RUNNING at exactly one executor, which lists it;
* only the assigned executor closes, fails, logs to or extends a process;
* a process id is created once (submissions are idempotent by spec id);
* WAITING processes with no pending parents are in exactly one queue;
* final states (SUCCESS, FAILED, CANCELLED) never change.

Contract for the driver: apply entries in log order, each exactly once, with
strictly increasing indexes; act on the events only after ``apply`` returns.
For log compaction, ``snapshot()`` gives the whole state as bytes (identical
on every replica at the same index) and ``restore(data)`` /
``Ledger.from_snapshot`` replace it; the format lives in ``snapshot.py``.
"""

from __future__ import annotations

import bisect
import heapq
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from colonymesh.node.certs import (
    Certificate,
    Colony,
    Membership,
    Revocation,
    Role,
    decode_record,
)
from colonymesh.node.envelope import (
    DecodedFrame,
    ReplayWindow,
    check_signature,
    decode_frame,
)
from colonymesh.node.errors import CertificateError, WireError
from colonymesh.node.ledger import crons, fsmeta, generators, matching
from colonymesh.node.ledger.commands import (
    AddChild,
    AddLog,
    Admit,
    Cancel,
    Claim,
    Close,
    ExecutorLost,
    Fail,
    RegisterExecutor,
    RegisterFunction,
    Revoke,
    SetAttribute,
    SubmitFunction,
    SubmitWorkflow,
    Tick,
    UnregisterExecutor,
)
from colonymesh.node.ledger.events import (
    CommandApplied,
    CommandId,
    CommandRefused,
    ExecutorJoined,
    ExecutorLeft,
    LedgerEvent,
    MemberRevoked,
    ProcessAssigned,
    ProcessFinished,
    ProcessReady,
    ProcessRequeued,
    WorkflowFinished,
)
from colonymesh.node.ledger.model import (
    Executor,
    FunctionStats,
    Process,
    ProcessState,
    Workflow,
)
from colonymesh.node.ledger.snapshot import (
    SNAPSHOT_BYTES_MAX_DEFAULT,
    LedgerState,
    decode_state,
    encode_state,
)
from colonymesh.node.ledger.triggers import TriggerRefused
from colonymesh.node.spec import (
    FunctionSpec,
    SpecError,
    WorkflowSpec,
    parse_function_spec,
    parse_workflow_spec,
    spec_id,
    workflow_id,
)


class LedgerInvariantError(RuntimeError):
    """The driver broke the contract (e.g. applied an index twice): a bug, not bad input."""


class _Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class LedgerConfig:
    frame_bytes_max: int = 4 * 1024 * 1024
    logs_per_process_max: int = 10_000
    attributes_per_process_max: int = 256
    # An executor dying is not the process's fault, so it does not use up
    # maxretries; this bounds how often one process may take executors down.
    requeues_on_executor_loss_max: int = 10
    replay_window: int = 4096
    snapshot_bytes_max: int = SNAPSHOT_BYTES_MAX_DEFAULT
    # The ledger re-queues a process at assigned + maxexectime + this grace. The
    # executor's own timer starts when its claim's answer arrives, after the
    # ledger's clock started and with ticks 0.5 s apart; without the grace the
    # ledger could hand the process to a second executor while the first is
    # still stopping it. Must be the same on every replica (it shapes the log).
    exec_deadline_grace_ms: int = 2000


Events = list[LedgerEvent]
K = TypeVar("K")
V = TypeVar("V")
_DEADLINE_WAIT = 0
_DEADLINE_EXEC = 1


class Ledger:
    """The replicated colony state; see the module docs."""

    def __init__(
        self,
        colony: Colony,
        *,
        genesis_ms: int,
        certificates: Iterable[Certificate] = (),
        config: LedgerConfig | None = None,
    ) -> None:
        self.colony = colony
        self.config = config or LedgerConfig()
        self.membership = Membership(colony)
        self.now_ms = genesis_ms
        self.applied_index = 0
        self.processes: dict[str, Process] = {}
        self.workflows: dict[str, Workflow] = {}
        self.executors: dict[bytes, Executor] = {}
        self.functions: dict[tuple[str, str], FunctionStats] = {}
        self._queues: dict[str, list[tuple[tuple[int, int], str]]] = {}
        self._deadlines: list[tuple[int, int, str, int]] = []
        self._replay: dict[bytes, ReplayWindow] = {}
        self._revocations: dict[int, bytes] = {}  # serial -> record, for snapshots
        self._next_order = 0
        self.fsmeta = fsmeta.FsMeta()  # labels, file revisions, snapshots (fsmeta.py)
        self.crons = crons.CronBook()  # workflows on a schedule (crons.py)
        self.generators = generators.GeneratorBook()  # workflows per batch of args (generators.py)
        for certificate in certificates:
            self.membership.admit(certificate, genesis_ms / 1000)
        self._handlers: dict[type, Callable[[Any, CommandId, Events], str]] = {
            SubmitFunction: self._submit,
            SubmitWorkflow: self._submit_workflow,
            AddChild: self._add_child,
            RegisterExecutor: self._register_executor,
            UnregisterExecutor: self._unregister_executor,
            RegisterFunction: self._register_function,
            Claim: self._claim,
            Close: self._close,
            Fail: self._fail,
            Cancel: self._cancel,
            AddLog: self._add_log,
            SetAttribute: self._set_attribute,
            Tick: self._tick,
            ExecutorLost: self._executor_lost,
            Admit: self._admit,
            Revoke: self._revoke,
        }
        for fs_command in fsmeta.FS_COMMANDS:
            self._handlers[fs_command] = self._fs
        for trigger_command in (*crons.CRON_COMMANDS, *generators.GENERATOR_COMMANDS):
            self._handlers[trigger_command] = self._trigger

    # --- the one entry point ------------------------------------------------

    def apply(self, index: int, data: bytes) -> Events:
        """Apply the committed entry at ``index``; return what it caused."""
        if index <= self.applied_index:
            raise LedgerInvariantError(f"entry {index} applied after {self.applied_index}")
        self.applied_index = index
        try:
            parts = decode_frame(data, self.config.frame_bytes_max, self.colony.colony_id)
        except WireError as error:
            return [CommandRefused(None, "", f"undecodable entry: {error}")]
        envelope = parts.envelope
        command = CommandId(envelope.sender, envelope.seq)
        handler = self._handlers.get(type(envelope.body))
        events: Events = []
        try:
            if handler is None:
                raise _Refused(f"{envelope.kind!r} is not a ledger command")
            self._authenticate(parts)
            self._consume_seq(envelope.sender, envelope.seq)
            subject = handler(envelope.body, command, events)
        except _Refused as refusal:
            return [CommandRefused(command, envelope.kind, refusal.reason)]
        except WireError as error:  # replay window
            return [CommandRefused(command, envelope.kind, str(error))]
        return [CommandApplied(command, envelope.kind, subject), *events]

    def _consume_seq(self, author: bytes, seq: int) -> None:
        """Spend ``seq`` once its author is proven, whether the command then applies or not.

        A command refused now must not apply when replayed later, when the state
        might let it through: its author was told it failed.
        """
        window = self._replay.get(author)
        if window is None:
            self._replay[author] = ReplayWindow(seq)
            return
        window.check(seq, self.config.replay_window)
        window.record(seq, self.config.replay_window)

    def _authenticate(self, parts: DecodedFrame) -> None:
        envelope = parts.envelope
        admitted = self.membership.certificate_of(envelope.sender, self.now_ms / 1000) is not None
        if not admitted and not self._is_self_admission(envelope.body, envelope.sender):
            known = self.membership.known_certificate(envelope.sender)
            if known is None:
                raise _Refused("author is not a member of this colony")
            try:
                self.membership.check(known, self.now_ms / 1000)
            except CertificateError as error:
                raise _Refused(f"author not admitted: {error}") from None
            raise _Refused("author not admitted")
        try:
            check_signature(parts)
        except WireError as error:
            raise _Refused(str(error)) from None

    def _is_self_admission(self, body: object, sender: bytes) -> bool:
        if not isinstance(body, Admit):
            return False
        try:
            return decode_record(Certificate, body.certificate).member_key == sender
        except CertificateError:
            return False

    # --- authorisation helpers ---------------------------------------------

    def _require_role(self, author: bytes, *roles: Role) -> Certificate:
        certificate = self.membership.certificate_of(author, self.now_ms / 1000)
        if certificate is None or not any(certificate.has_role(role) for role in roles):
            names = " or ".join(role.value for role in roles)
            raise _Refused(f"author lacks the {names} role")
        return certificate

    def _registered_executor(self, author: bytes) -> Executor:
        executor = self.executors.get(author)
        if executor is None:
            raise _Refused("author is not a registered executor")
        return executor

    def _running_at(self, process_id: str, author: bytes) -> Process:
        process = self._process(process_id)
        if process.state is not ProcessState.RUNNING:
            raise _Refused(f"process {process_id} is {process.state.value}, not running")
        if process.executor != author:
            raise _Refused(f"only the assigned executor may change process {process_id}")
        return process

    def _process(self, process_id: str) -> Process:
        process = self.processes.get(process_id)
        if process is None:
            raise _Refused(f"no process {process_id}")
        return process

    # --- submissions ----------------------------------------------------------

    def _parse_spec(self, text: str) -> FunctionSpec:
        try:
            spec = parse_function_spec(json.loads(text))
        except SpecError as error:
            raise _Refused(f"invalid function spec: {error}") from None
        except ValueError as error:
            raise _Refused(f"invalid function spec: not JSON ({error})") from None
        self._check_colony_name(spec.conditions.colonyname)
        return spec

    def _check_colony_name(self, name: str) -> None:
        if name and name != self.colony.name:
            raise _Refused(f"spec is for colony {name!r}, this is {self.colony.name!r}")

    def _submit(self, body: SubmitFunction, command: CommandId, events: Events) -> str:
        self._require_role(command.author, Role.SUBMITTER)
        spec = self._parse_spec(body.spec_json)
        if spec.conditions.dependencies:
            raise _Refused(
                "conditions.dependencies: only specs inside a workflow may depend on others"
            )
        process_id = spec_id(spec, command.author, body.nonce)
        if process_id not in self.processes:
            process = self._new_process(process_id, spec, body.spec_json, command.author)
            self._make_ready(process, command, events)
        return process_id

    def _submit_workflow(self, body: SubmitWorkflow, command: CommandId, events: Events) -> str:
        self._require_role(command.author, Role.SUBMITTER)
        try:
            workflow_spec = parse_workflow_spec(json.loads(body.workflow_json))
        except SpecError as error:
            raise _Refused(f"invalid workflow spec: {error}") from None
        except ValueError as error:
            raise _Refused(f"invalid workflow spec: not JSON ({error})") from None
        self._check_colony_name(workflow_spec.colonyname)
        return self.start_workflow(workflow_spec, command.author, body.nonce, [], command, events)

    def start_workflow(
        self,
        workflow_spec: WorkflowSpec,
        submitter: bytes,
        nonce: bytes,
        root_input: list[object],
        command: CommandId,
        events: Events,
    ) -> str:
        """Create a workflow's processes (idempotent by id); roots get ``root_input``.

        Submissions, cron runs and generator runs all start workflows here.
        """
        wid = workflow_id(workflow_spec, submitter, nonce)
        if wid in self.workflows:
            return wid
        workflow = Workflow(wid, submitter, self.now_ms)
        self.workflows[wid] = workflow
        by_name = workflow_spec.by_nodename()
        ids = {name: spec_id(spec, submitter, nonce) for name, spec in by_name.items()}
        for name in workflow_spec.topological_order():
            spec = by_name[name]
            process = self._new_process(ids[name], spec, spec.to_json(), submitter)
            process.workflow_id = wid
            for parent_name in dict.fromkeys(spec.conditions.dependencies):
                parent = self.processes[ids[parent_name]]
                process.parents.append(parent.id)
                parent.children.append(process.id)
            process.parents_pending = len(process.parents)
            workflow.process_ids.append(process.id)
        for process_id in workflow.process_ids:
            process = self.processes[process_id]
            if process.is_ready:
                process.input = list(root_input)
                self._make_ready(process, command, events)
        return wid

    def _add_child(self, body: AddChild, command: CommandId, events: Events) -> str:
        parent = self._running_at(body.parent_id, command.author)
        if not parent.workflow_id:
            raise _Refused(f"process {parent.id} is not part of a workflow")
        spec = self._parse_spec(body.spec_json)
        process_id = spec_id(spec, command.author, body.nonce)
        if process_id in self.processes:
            return process_id
        workflow = self.workflows[parent.workflow_id]
        child = self._new_process(process_id, spec, body.spec_json, workflow.submitter)
        child.workflow_id = workflow.id
        child.parents.append(parent.id)
        child.parents_pending = 1
        if body.insert:
            for grandchild_id in parent.children:
                grandchild = self.processes[grandchild_id]
                grandchild.parents.append(child.id)
                grandchild.parents_pending += 1
                child.children.append(grandchild_id)
        parent.children.append(child.id)
        workflow.process_ids.append(child.id)
        return process_id

    def _new_process(
        self, process_id: str, spec: FunctionSpec, spec_json: str, submitter: bytes
    ) -> Process:
        process = Process(process_id, spec, spec_json, submitter, self.now_ms, self._next_order)
        self._next_order += 1
        self.processes[process_id] = process
        self._stats(spec).submitted += 1
        return process

    def _stats(self, spec: FunctionSpec) -> FunctionStats:
        key = (spec.conditions.executortype, spec.funcname)
        stats = self.functions.get(key)
        if stats is None:
            stats = self.functions[key] = FunctionStats(*key)
        return stats

    # --- the waiting queue --------------------------------------------------

    def _make_ready(self, process: Process, command: CommandId, events: Events) -> None:
        process.ready_ms = self.now_ms
        queue = self._queues.setdefault(process.spec.conditions.executortype, [])
        bisect.insort(queue, (process.queue_key(), process.id))
        if process.spec.maxwaittime > 0:
            deadline = self._wait_deadline(process)
            heapq.heappush(
                self._deadlines, (deadline, _DEADLINE_WAIT, process.id, process.ready_ms)
            )
        events.append(
            ProcessReady(
                command, process.id, process.spec.conditions.executortype, process.spec.priority
            )
        )

    def _unqueue(self, process: Process) -> None:
        queue = self._queues[process.spec.conditions.executortype]
        entry = (process.queue_key(), process.id)
        position = bisect.bisect_left(queue, entry)
        if position >= len(queue) or queue[position] != entry:
            raise LedgerInvariantError(f"ready process {process.id} missing from its queue")
        del queue[position]

    def ready_processes(self, executor_type: str) -> Iterator[Process]:
        """Claimable processes of a type, best first (priority, then submission order)."""
        for _, process_id in self._queues.get(executor_type, ()):
            yield self.processes[process_id]

    # --- executors ----------------------------------------------------------

    def _register_executor(self, body: RegisterExecutor, command: CommandId, events: Events) -> str:
        certificate = self._require_role(command.author, Role.EXECUTOR)
        for key, other in self.executors.items():
            if other.name == body.name and key != command.author:
                raise _Refused(f"executor name {body.name!r} is taken")
        executor = self.executors.get(command.author)
        if executor is None:
            self.executors[command.author] = Executor(
                command.author,
                body.name,
                certificate.executor_type,
                certificate.location,
                certificate.capabilities,
                self.now_ms,
            )
            events.append(ExecutorJoined(command, command.author, body.name))
        else:
            executor.name = body.name
        return body.name

    def _unregister_executor(
        self, body: UnregisterExecutor, command: CommandId, events: Events
    ) -> str:
        executor = self._registered_executor(command.author)
        self._remove_executor(
            executor, f"unregistered: {body.reason}".rstrip(": "), command, events
        )
        return executor.name

    def _register_function(self, body: RegisterFunction, command: CommandId, events: Events) -> str:
        executor = self._registered_executor(command.author)
        executor.functions[body.funcname] = body.description
        return body.funcname

    def _executor_lost(self, body: ExecutorLost, command: CommandId, events: Events) -> str:
        self._require_role(command.author, Role.SERVER)
        executor = self.executors.get(body.executor_key)
        if executor is None:
            raise _Refused("no such executor")
        self._remove_executor(executor, f"lost: {body.reason}".rstrip(": "), command, events)
        return executor.name

    def _remove_executor(
        self, executor: Executor, reason: str, command: CommandId, events: Events
    ) -> None:
        for process_id in list(executor.running):
            process = self.processes[process_id]
            process.executor_losses += 1
            if process.executor_losses > self.config.requeues_on_executor_loss_max:
                self._finish(
                    process,
                    ProcessState.FAILED,
                    command,
                    events,
                    [f"executor {executor.name} {reason}; too many executors lost"],
                )
            else:
                self._requeue(process, f"executor {executor.name} {reason}", command, events)
        del self.executors[executor.key]
        events.append(ExecutorLeft(command, executor.key, reason))

    # --- claims and their end -------------------------------------------------

    def _claim(self, body: Claim, command: CommandId, events: Events) -> str:
        executor = self._registered_executor(command.author)
        available = matching.free(executor, (self.processes[p].spec for p in executor.running))
        if body.process_id:
            process = self._process(body.process_id)
            if not process.is_ready:
                raise _Refused(
                    f"process {process.id} is {process.state.value}"
                    + (
                        " and waits for its parents"
                        if process.state is ProcessState.WAITING
                        else ""
                    )
                )
            reason = matching.mismatch(process.spec, executor, available)
            if reason:
                raise _Refused(f"process {process.id} does not match: {reason}")
        else:
            found = next(
                (
                    p
                    for p in self.ready_processes(executor.executor_type)
                    if not matching.mismatch(p.spec, executor, available)
                ),
                None,
            )
            if found is None:
                raise _Refused("no waiting process matches this executor")
            process = found
        self._unqueue(process)
        process.state = ProcessState.RUNNING
        process.executor = executor.key
        process.assigned_ms = self.now_ms
        executor.running.append(process.id)
        self._stats(process.spec).wait.add(self.now_ms - process.ready_ms)
        if process.spec.maxexectime > 0:
            heapq.heappush(
                self._deadlines,
                (self._exec_deadline(process), _DEADLINE_EXEC, process.id, process.assigned_ms),
            )
        events.append(ProcessAssigned(command, process.id, executor.key))
        return process.id

    def _close(self, body: Close, command: CommandId, events: Events) -> str:
        process = self._running_at(body.process_id, command.author)
        try:
            output = json.loads(body.output_json)
        except ValueError as error:
            raise _Refused(f"output is not JSON: {error}") from None
        if not isinstance(output, list):
            raise _Refused("output must be a JSON list")
        process.output = output
        self._finish(process, ProcessState.SUCCESS, command, events)
        return process.id

    def _fail(self, body: Fail, command: CommandId, events: Events) -> str:
        process = self._running_at(body.process_id, command.author)
        self._finish(process, ProcessState.FAILED, command, events, list(body.errors) or ["failed"])
        return process.id

    def _cancel(self, body: Cancel, command: CommandId, events: Events) -> str:
        workflow = self.workflows.get(body.target_id)
        process = self.processes.get(body.target_id)
        submitter = workflow.submitter if workflow else process.submitter if process else None
        if submitter is None:
            raise _Refused(f"no process or workflow {body.target_id}")
        if submitter != command.author:
            raise _Refused("only the submitter may cancel")
        if process is not None and process.workflow_id:
            workflow = self.workflows[process.workflow_id]
        if workflow is not None:
            if workflow.state.is_final:
                raise _Refused(f"workflow {workflow.id} already {workflow.state.value}")
            self._end_workflow(
                workflow, ProcessState.CANCELLED, "cancelled by its submitter", command, events
            )
        elif process is not None:
            if process.state.is_final:
                raise _Refused(f"process {process.id} already {process.state.value}")
            self._finish(
                process, ProcessState.CANCELLED, command, events, ["cancelled by its submitter"]
            )
        return body.target_id

    def _requeue(self, process: Process, reason: str, command: CommandId, events: Events) -> None:
        executor_key = process.executor
        if executor_key is not None and executor_key in self.executors:
            self.executors[executor_key].running.remove(process.id)
        process.state = ProcessState.WAITING
        process.executor = None
        events.append(ProcessRequeued(command, process.id, executor_key or b"", reason))
        self._make_ready(process, command, events)

    def _finish(
        self,
        process: Process,
        state: ProcessState,
        command: CommandId,
        events: Events,
        errors: list[str] | None = None,
    ) -> None:
        """Move ``process`` to a final state, then carry its workflow along."""
        executor_key = process.executor
        if process.state is ProcessState.RUNNING and executor_key in self.executors:
            self.executors[executor_key].running.remove(process.id)
            self._stats(process.spec).run.add(self.now_ms - process.assigned_ms)
        elif process.is_ready:
            self._unqueue(process)
        process.state = state
        process.ended_ms = self.now_ms
        if errors:
            process.errors.extend(errors)
        stats = self._stats(process.spec)
        if state is ProcessState.SUCCESS:
            stats.succeeded += 1
        else:
            stats.failed += 1
        events.append(ProcessFinished(command, process.id, state, executor_key))
        if not process.workflow_id:
            return
        workflow = self.workflows[process.workflow_id]
        if state is ProcessState.SUCCESS:
            self._release_children(process, command, events)
            if all(self.processes[p].state is ProcessState.SUCCESS for p in workflow.process_ids):
                workflow.state = ProcessState.SUCCESS
                workflow.ended_ms = self.now_ms
                events.append(WorkflowFinished(command, workflow.id, workflow.state))
        elif not workflow.state.is_final:
            why = f"process {process.id} ({process.spec.nodename or process.spec.funcname}) {state.value}"
            self._end_workflow(workflow, state, why, command, events)

    def _release_children(self, parent: Process, command: CommandId, events: Events) -> None:
        for child_id in parent.children:
            child = self.processes[child_id]
            child.parents_pending -= 1
            if child.parents_pending == 0 and child.state is ProcessState.WAITING:
                child.input = [item for p in child.parents for item in self.processes[p].output]
                self._make_ready(child, command, events)

    def _end_workflow(
        self, workflow: Workflow, state: ProcessState, why: str, command: CommandId, events: Events
    ) -> None:
        workflow.state = state
        workflow.ended_ms = self.now_ms
        for process_id in workflow.process_ids:
            process = self.processes[process_id]
            if not process.state.is_final:
                self._finish(process, state, command, events, [f"workflow ended: {why}"])
        events.append(WorkflowFinished(command, workflow.id, state))

    # --- logs and attributes --------------------------------------------------

    def _add_log(self, body: AddLog, command: CommandId, events: Events) -> str:
        process = self._running_at(body.process_id, command.author)
        process.logs.append((self.now_ms, body.message))
        excess = len(process.logs) - self.config.logs_per_process_max
        if excess > 0:  # keep the newest lines; say how many were dropped
            del process.logs[:excess]
            process.logs_dropped += excess
        return process.id

    def _set_attribute(self, body: SetAttribute, command: CommandId, events: Events) -> str:
        process = self._running_at(body.process_id, command.author)
        if (
            body.key not in process.attributes
            and len(process.attributes) >= self.config.attributes_per_process_max
        ):
            raise _Refused(f"process {process.id} has the maximum number of attributes")
        process.attributes[body.key] = body.value
        return process.id

    # --- time -----------------------------------------------------------------

    def _tick(self, body: Tick, command: CommandId, events: Events) -> str:
        self._require_role(command.author, Role.SERVER)
        if body.now_ms < self.now_ms:
            return ""  # a new leader's clock may lag the old one's; time never goes back
        self.now_ms = body.now_ms
        while self._deadlines and self._deadlines[0][0] <= self.now_ms:
            _, kind, process_id, stamp = heapq.heappop(self._deadlines)
            process = self.processes[process_id]
            if kind == _DEADLINE_WAIT and process.is_ready and process.ready_ms == stamp:
                self._finish(
                    process,
                    ProcessState.FAILED,
                    command,
                    events,
                    [f"maxwaittime of {process.spec.maxwaittime} s exceeded"],
                )
            elif (
                kind == _DEADLINE_EXEC
                and process.state is ProcessState.RUNNING
                and process.assigned_ms == stamp
            ):
                self._exec_time_exceeded(process, command, events)
        return ""

    def _exec_time_exceeded(self, process: Process, command: CommandId, events: Events) -> None:
        limit = process.spec.maxretries
        reason = f"maxexectime of {process.spec.maxexectime} s exceeded"
        if limit == -1 or process.retries < limit:
            process.retries += 1
            self._requeue(process, reason, command, events)
        else:
            self._finish(
                process,
                ProcessState.FAILED,
                command,
                events,
                [f"{reason} after {process.retries} retries"],
            )

    # --- membership -----------------------------------------------------------

    def _admit(self, body: Admit, command: CommandId, events: Events) -> str:
        try:
            certificate = decode_record(Certificate, body.certificate)
            self.membership.admit(certificate, self.now_ms / 1000)
        except CertificateError as error:
            raise _Refused(f"certificate refused: {error}") from None
        return certificate.name

    def _revoke(self, body: Revoke, command: CommandId, events: Events) -> str:
        try:
            revocation = decode_record(Revocation, body.revocation)
            self.membership.add_revocation(revocation)
        except CertificateError as error:
            raise _Refused(f"revocation refused: {error}") from None
        self._revocations.setdefault(revocation.serial, body.revocation)
        events.append(MemberRevoked(command, revocation.member_key, revocation.serial))
        executor = self.executors.get(revocation.member_key)
        if executor is not None:
            self._remove_executor(executor, "revoked", command, events)
        return str(revocation.serial)

    # --- the meta-filesystem's metadata (rules in fsmeta.py) ----------------------

    def _fs(self, body: fsmeta.FsCommand, command: CommandId, events: Events) -> str:
        # Any admitted member (the author was authenticated above), as in ColonyOS.
        try:
            return fsmeta.apply_command(self.fsmeta, body, command.author, command.seq, self.now_ms)
        except fsmeta.FsMetaRefused as refusal:
            raise _Refused(refusal.reason) from None

    # --- crons and generators (rules in crons.py, generators.py) ------------------

    def _trigger(
        self,
        body: crons.CronCommand | generators.GeneratorCommand,
        command: CommandId,
        events: Events,
    ) -> str:
        try:
            if isinstance(body, crons.CRON_COMMANDS):
                return crons.apply_command(self.crons, self, body, command, events)
            return generators.apply_command(self.generators, self, body, command, events)
        except TriggerRefused as refusal:
            raise _Refused(refusal.reason) from None

    # --- snapshots (log compaction) ----------------------------------------------

    def snapshot(self) -> bytes:
        """The whole state as canonical CBOR: equal states give equal bytes on every replica."""
        return encode_state(
            LedgerState(
                self.membership,
                self._revocations,
                self.now_ms,
                self.applied_index,
                self._next_order,
                self._replay,
                self.functions,
                self.executors,
                self.workflows,
                self.processes,
                fsmeta=self.fsmeta,
                crons=self.crons,
                generators=self.generators,
            )
        )

    @classmethod
    def from_snapshot(
        cls, colony: Colony, data: bytes, config: LedgerConfig | None = None
    ) -> Ledger:
        """A ledger restored from ``snapshot()`` bytes; a bad snapshot is a ``SnapshotError``."""
        ledger = cls(colony, genesis_ms=0, config=config)
        ledger.restore(data)
        return ledger

    def restore(self, data: bytes) -> None:
        """Replace the whole state by a snapshot's, or raise ``SnapshotError`` and change nothing.

        The containers are refilled in place, so readers holding
        ``ledger.processes`` (long-polls) see the restored state.
        """
        state = decode_state(
            self.colony,
            data,
            replay_window=self.config.replay_window,
            snapshot_bytes_max=self.config.snapshot_bytes_max,
        )
        self.membership = state.membership
        self._revocations = state.revocations
        self.now_ms = state.now_ms
        self.applied_index = state.applied_index
        self._next_order = state.next_order
        self._replay = state.replay
        _refill(self.functions, state.functions)
        _refill(self.executors, state.executors)
        _refill(self.workflows, state.workflows)
        _refill(self.processes, state.processes)
        self.fsmeta = state.fsmeta
        self.crons = state.crons
        self.generators = state.generators
        self._rebuild_indexes()

    def _rebuild_indexes(self) -> None:
        """Waiting queues and deadlines follow from the processes (see ``snapshot.py``)."""
        self._queues = {}
        self._deadlines = []
        for process in self.processes.values():
            if process.is_ready:
                queue = self._queues.setdefault(process.spec.conditions.executortype, [])
                queue.append((process.queue_key(), process.id))
                if process.spec.maxwaittime > 0:
                    deadline = self._wait_deadline(process)
                    self._deadlines.append((deadline, _DEADLINE_WAIT, process.id, process.ready_ms))
            elif process.state is ProcessState.RUNNING and process.spec.maxexectime > 0:
                deadline = self._exec_deadline(process)
                self._deadlines.append((deadline, _DEADLINE_EXEC, process.id, process.assigned_ms))
        for queue in self._queues.values():
            queue.sort()
        heapq.heapify(self._deadlines)

    def _wait_deadline(self, process: Process) -> int:
        return process.ready_ms + process.spec.maxwaittime * 1000

    def _exec_deadline(self, process: Process) -> int:
        return (
            process.assigned_ms
            + process.spec.maxexectime * 1000
            + self.config.exec_deadline_grace_ms
        )

    # --- reading ----------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        result = {state.value: 0 for state in ProcessState}
        for process in self.processes.values():
            result[process.state.value] += 1
        return result


def _refill(mine: dict[K, V], theirs: dict[K, V]) -> None:
    mine.clear()
    mine.update(theirs)
