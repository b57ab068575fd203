"""Crons: workflows the ledger starts on a schedule, each tick exactly once.

Owns the cron records and the rules of the cron commands (``AddCron``,
``RemoveCron``, ``RunCron``, ``FireCron``). The ledger keeps a
:class:`CronBook` and hands every cron command to :func:`apply_command`.

How it works: a cron holds a ColonyOS WorkflowSpec and either a six-field
cron expression (``cronexpr.py``) or an interval. ``next_due_ms`` is its
next tick in ledger time. The leader, seeing ``next_due_ms <= now_ms``
in its replica (:meth:`CronBook.due`), proposes ``FireCron(id, due_ms)``;
the rule accepts it only if ``due_ms`` is still the cron's next tick and
ledger time has reached it, starts the run and moves ``next_due_ms`` on.
A duplicate proposal for the same tick (an old and a new leader, or a
retry) is refused, so each tick starts at most one run.

As in ColonyOS: the outputs of the previous run's leaves become the input
of the next run's roots; with ``wait_for_previous`` a tick whose previous
run is still going is not fired until that run ends (then it fires once,
late); ``RunCron`` starts a run at once and leaves the schedule alone.
Unlike ColonyOS, the schedule is computed from the tick, not from when the
server got round to it, and missed ticks (a colony without a leader for a
while) are coalesced into one run: the next tick is the first one after
both the fired tick and ledger time.

Invariants: ``next_due_ms`` only grows; ``runs`` counts the workflows the
cron started, each with the deterministic id of ``(cron id, run)``;
a cron whose owner is no longer a submitter keeps ticking but starts
nothing (``skipped`` counts those ticks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from colonymesh.node.certs import Role
from colonymesh.node.ledger import cronexpr
from colonymesh.node.ledger.commands import AddCron, FireCron, RemoveCron, RunCron
from colonymesh.node.ledger.events import CommandId, LedgerEvent
from colonymesh.node.ledger.triggers import (
    RecordError,
    TriggerRefused,
    WorkflowHost,
    check_name,
    is_member_with,
    leaf_outputs,
    parse_workflow,
    require_role,
    resolve,
    run_nonce,
    trigger_id,
    workflow_running,
    workflow_state,
)
from colonymesh.node.spec import WorkflowSpec

CRONS_MAX = 10_000
INTERVAL_S_MAX = 10 * 365 * 86400

CronCommand = AddCron | RemoveCron | RunCron | FireCron
CRON_COMMANDS = (AddCron, RemoveCron, RunCron, FireCron)


@dataclass(slots=True)
class Cron:
    id: str
    name: str
    owner: bytes
    workflow: WorkflowSpec
    workflow_json: str  # as the owner wrote it
    expression: str  # "" for an interval cron
    interval_s: int  # 0 for an expression cron
    wait_for_previous: bool
    added_ms: int
    next_due_ms: int
    runs: int = 0
    skipped: int = 0
    last_run_ms: int = 0
    last_workflow_id: str = ""
    schedule: cronexpr.CronExpression | None = field(default=None, compare=False)

    def following_due(self, due_ms: int, now_ms: int) -> int:
        """The tick after ``due_ms``, skipping those ledger time has already passed."""
        if self.schedule is not None:
            return cronexpr.next_after(self.schedule, max(due_ms, now_ms))
        step = self.interval_s * 1000
        if due_ms + step > now_ms:
            return due_ms + step
        return due_ms + ((now_ms - due_ms) // step + 1) * step


@dataclass(slots=True)
class CronBook:
    crons: dict[str, Cron] = field(default_factory=dict)  # by id, in order of addition

    def __bool__(self) -> bool:
        return bool(self.crons)

    def due(self, host: WorkflowHost) -> list[tuple[str, int]]:
        """``(cron id, due_ms)`` of every tick the ledger would fire now (the leader's to-do)."""
        return [
            (cron.id, cron.next_due_ms)
            for cron in self.crons.values()
            if cron.next_due_ms <= host.now_ms
            and not (cron.wait_for_previous and workflow_running(host, cron.last_workflow_id))
        ]

    def next_deadline_ms(self) -> int | None:
        """The earliest tick of any cron (it may be held back by a running previous run)."""
        return min((cron.next_due_ms for cron in self.crons.values()), default=None)


def apply_command(
    book: CronBook,
    host: WorkflowHost,
    body: CronCommand,
    command: CommandId,
    events: list[LedgerEvent],
) -> str:
    """Apply one cron command; its subject, or :class:`TriggerRefused` having changed nothing."""
    match body:
        case AddCron():
            return _add(book, host, body, command)
        case RemoveCron():
            cron = _owned(book, body.cron, command.author)
            del book.crons[cron.id]
            return cron.id
        case RunCron():
            cron = _owned(book, body.cron, command.author)
            return _start_run(cron, host, command, events)
        case FireCron():
            return _fire(book, host, body, command, events)


def _owned(book: CronBook, ref: str, author: bytes) -> Cron:
    cron = resolve(book.crons.values(), ref, "cron")
    if cron.owner != author:
        raise TriggerRefused(f"only the owner of cron {cron.name!r} may change or run it")
    return cron


def _add(book: CronBook, host: WorkflowHost, body: AddCron, command: CommandId) -> str:
    require_role(host, command.author, Role.SUBMITTER)
    cron_id = trigger_id("cron", command.author, body.nonce)
    if cron_id in book.crons:
        return cron_id  # the same command sealed again: idempotent
    check_name(body.name, "cron")
    if any(cron.name == body.name for cron in book.crons.values()):
        raise TriggerRefused(f"a cron named {body.name!r} exists")
    if len(book.crons) >= CRONS_MAX:
        raise TriggerRefused(f"the colony has the maximum of {CRONS_MAX} crons")
    schedule = _schedule(body)
    workflow = parse_workflow(host.colony.name, body.workflow_json)
    cron = Cron(
        id=cron_id,
        name=body.name,
        owner=command.author,
        workflow=workflow,
        workflow_json=body.workflow_json,
        expression=body.cron_expression,
        interval_s=body.interval_s,
        wait_for_previous=body.wait_for_previous,
        added_ms=host.now_ms,
        next_due_ms=0,
        schedule=schedule,
    )
    cron.next_due_ms = first_due(cron, host.now_ms)
    book.crons[cron_id] = cron
    return cron_id


def _schedule(body: AddCron) -> cronexpr.CronExpression | None:
    if bool(body.cron_expression) == (body.interval_s != 0):
        raise TriggerRefused("give a cron expression or an interval (exactly one)")
    if body.cron_expression:
        try:
            return cronexpr.parse(body.cron_expression)
        except cronexpr.CronSyntaxError as error:
            raise TriggerRefused(f"cron expression: {error}") from None
    if not 0 < body.interval_s <= INTERVAL_S_MAX:
        raise TriggerRefused(f"interval: must be 1 to {INTERVAL_S_MAX} seconds")
    return None


def first_due(cron: Cron, now_ms: int) -> int:
    if cron.schedule is not None:
        return cronexpr.next_after(cron.schedule, now_ms)
    return now_ms + cron.interval_s * 1000


def _fire(
    book: CronBook,
    host: WorkflowHost,
    body: FireCron,
    command: CommandId,
    events: list[LedgerEvent],
) -> str:
    require_role(host, command.author, Role.SERVER)
    cron = book.crons.get(body.cron_id)
    if cron is None:
        raise TriggerRefused(f"no cron {body.cron_id}")
    if body.due_ms != cron.next_due_ms:
        raise TriggerRefused(
            f"cron {cron.name!r}: {body.due_ms} is not its next tick ({cron.next_due_ms})"
        )
    if body.due_ms > host.now_ms:
        raise TriggerRefused(
            f"cron {cron.name!r}: not due before {body.due_ms} (now {host.now_ms})"
        )
    if cron.wait_for_previous and workflow_running(host, cron.last_workflow_id):
        raise TriggerRefused(
            f"cron {cron.name!r}: waits for its previous run {cron.last_workflow_id}"
        )
    cron.next_due_ms = cron.following_due(body.due_ms, host.now_ms)
    if not is_member_with(host, cron.owner, Role.SUBMITTER):
        cron.skipped += 1  # the owner left or was revoked: tick on, start nothing
        return ""
    return _start_run(cron, host, command, events)


def _start_run(
    cron: Cron, host: WorkflowHost, command: CommandId, events: list[LedgerEvent]
) -> str:
    root_input = leaf_outputs(host, cron.last_workflow_id) if cron.last_workflow_id else []
    nonce = run_nonce(cron.id, cron.runs)
    workflow_id = host.start_workflow(cron.workflow, cron.owner, nonce, root_input, command, events)
    cron.runs += 1
    cron.last_run_ms = host.now_ms
    cron.last_workflow_id = workflow_id
    return workflow_id


# --- views and snapshots ---------------------------------------------------------


def cron_view(cron: Cron, host: WorkflowHost) -> dict[str, Any]:
    """The JSON document of a cron, in ColonyOS's field names where it has them."""
    return {
        "cronid": cron.id,
        "name": cron.name,
        "initiatorid": cron.owner.hex(),
        "cronexpression": cron.expression,
        "interval": cron.interval_s if cron.interval_s else -1,
        "waitforprevprocessgraph": cron.wait_for_previous,
        "added_ms": cron.added_ms,
        "nextrun_ms": cron.next_due_ms,
        "lastrun_ms": cron.last_run_ms,
        "prevprocessgraphid": cron.last_workflow_id,
        "prevprocessgraphstate": workflow_state(host, cron.last_workflow_id),
        "runs": cron.runs,
        "skipped": cron.skipped,
        "workflowspec": cron.workflow.to_json_obj(),
    }


def encode_crons(book: CronBook) -> list[list[Any]]:
    return [
        [
            c.id,
            c.name,
            c.owner,
            c.workflow_json,
            c.expression,
            c.interval_s,
            c.wait_for_previous,
            c.added_ms,
            c.next_due_ms,
            c.runs,
            c.skipped,
            c.last_run_ms,
            c.last_workflow_id,
        ]
        for c in book.crons.values()
    ]


_CRON_FIELDS: tuple[tuple[str, type], ...] = (
    ("id", str),
    ("name", str),
    ("owner", bytes),
    ("workflow_json", str),
    ("expression", str),
    ("interval_s", int),
    ("wait_for_previous", bool),
    ("added_ms", int),
    ("next_due_ms", int),
    ("runs", int),
    ("skipped", int),
    ("last_run_ms", int),
    ("last_workflow_id", str),
)


def decode_crons(value: object, colony_name: str) -> CronBook:
    """A :class:`CronBook` from :func:`encode_crons` data; a defect is a :class:`RecordError`."""
    if type(value) is not list:
        raise RecordError("crons: expected a list")
    book = CronBook()
    for index, item in enumerate(value):
        path = f"crons[{index}]"
        (
            cid,
            name,
            owner,
            text,
            expression,
            interval,
            wait,
            added,
            due,
            runs,
            skipped,
            last,
            wid,
        ) = typed_record(item, path, _CRON_FIELDS)
        try:
            workflow = parse_workflow(colony_name, text)
            schedule = cronexpr.parse(expression) if expression else None
        except TriggerRefused as error:
            raise RecordError(f"{path}: {error.reason}") from None
        except cronexpr.CronSyntaxError as error:
            raise RecordError(f"{path}.expression: {error}") from None
        cron = Cron(
            cid,
            name,
            owner,
            workflow,
            text,
            expression,
            interval,
            wait,
            added,
            due,
            runs,
            skipped,
            last,
            wid,
            schedule,
        )
        if (schedule is None and interval <= 0) or (schedule is not None and interval != 0):
            raise RecordError(f"{path}: neither or both of expression and interval")
        if cron.id in book.crons:
            raise RecordError(f"{path}: duplicate id {cron.id}")
        book.crons[cron.id] = cron
    return book


def typed_record(value: object, path: str, fields: tuple[tuple[str, type], ...]) -> list[Any]:
    if type(value) is not list or len(value) != len(fields):
        raise RecordError(f"{path}: expected a record of {len(fields)} fields")
    for item, (name, kind) in zip(value, fields, strict=True):
        if type(item) is not kind:
            raise RecordError(f"{path}.{name}: expected {kind.__name__}")
    return value
