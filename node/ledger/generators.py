"""Generators: batch packed arguments into workflow runs, each run exactly once.

Owns the generator records and the rules of the generator commands
(``AddGenerator``, ``RemoveGenerator``, ``PackGenerator``,
``FireGenerator``). The ledger keeps a :class:`GeneratorBook` and hands
every generator command to :func:`apply_command`.

How it works (ColonyOS's generators): members pack string arguments into a
generator; once ``trigger`` arguments wait, or ``timeout_s`` has passed
since the oldest waiting one was packed (with ``timeout_s > 0``), the
leader proposes ``FireGenerator(id, run)`` naming the generator's next run
number. The rule accepts it only for that run and only when the generator
is due in ledger time, takes the oldest ``trigger`` arguments (all waiting
ones, at most ``trigger``, on a timeout) and starts the workflow with them
as its roots' ``args`` (ColonyOS overwrites the roots' args the same way);
``runs`` moves on, so a duplicate proposal of the same run is refused.

Differences from ColonyOS, on purpose: the timeout counts from the oldest
waiting argument rather than from the last run (so a lone argument packed
long after a run still waits its full timeout for company), and a batch
whose workflow the spec rules refuse (arguments too large together) is
dropped with the reason kept in ``last_error`` instead of blocking every
later batch.

Invariants: every packed argument is in exactly one run or still waiting,
in packing order; ``runs`` counts the batches taken.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from colonymesh.node.certs import Role
from colonymesh.node.ledger.commands import (
    SPEC_JSON_BYTES_MAX,
    WORKFLOW_JSON_BYTES_MAX,
    AddGenerator,
    FireGenerator,
    PackGenerator,
    RemoveGenerator,
)
from colonymesh.node.ledger.crons import typed_record
from colonymesh.node.ledger.events import CommandId, LedgerEvent
from colonymesh.node.ledger.triggers import (
    RecordError,
    TriggerRefused,
    WorkflowHost,
    check_name,
    is_member_with,
    parse_workflow,
    require_role,
    resolve,
    run_nonce,
    trigger_id,
    workflow_state,
)
from colonymesh.node.spec import SpecError, WorkflowSpec, parse_workflow_spec

GENERATORS_MAX = 10_000
TRIGGER_MAX = 1000
PENDING_ARGS_MAX = 10_000
TIMEOUT_S_MAX = 365 * 86400

GeneratorCommand = AddGenerator | RemoveGenerator | PackGenerator | FireGenerator
GENERATOR_COMMANDS = (AddGenerator, RemoveGenerator, PackGenerator, FireGenerator)


@dataclass(slots=True)
class Generator:
    id: str
    name: str
    owner: bytes
    workflow: WorkflowSpec
    workflow_json: str
    trigger: int
    timeout_s: int  # 0: only full batches run
    added_ms: int
    pending: list[tuple[int, str]] = field(
        default_factory=list
    )  # (packed at ms, arg), oldest first
    runs: int = 0
    last_run_ms: int = 0
    last_workflow_id: str = ""
    last_error: str = ""

    def deadline_ms(self) -> int | None:
        """When the oldest waiting argument times out (None: nothing waits, or no timeout)."""
        if not self.pending or self.timeout_s <= 0:
            return None
        return self.pending[0][0] + self.timeout_s * 1000

    def is_due(self, now_ms: int) -> bool:
        if len(self.pending) >= self.trigger:
            return True
        deadline = self.deadline_ms()
        return deadline is not None and now_ms >= deadline


@dataclass(slots=True)
class GeneratorBook:
    generators: dict[str, Generator] = field(default_factory=dict)  # by id, in order of addition

    def __bool__(self) -> bool:
        return bool(self.generators)

    def due(self, now_ms: int) -> list[tuple[str, int]]:
        """``(generator id, run)`` of every run the ledger would start now (the leader's to-do)."""
        return [(g.id, g.runs) for g in self.generators.values() if g.is_due(now_ms)]

    def next_deadline_ms(self) -> int | None:
        return min(
            (d for g in self.generators.values() if (d := g.deadline_ms()) is not None),
            default=None,
        )


def apply_command(
    book: GeneratorBook,
    host: WorkflowHost,
    body: GeneratorCommand,
    command: CommandId,
    events: list[LedgerEvent],
) -> str:
    """Apply one generator command; its subject, or :class:`TriggerRefused` having changed nothing."""
    match body:
        case AddGenerator():
            return _add(book, host, body, command)
        case RemoveGenerator():
            generator = resolve(book.generators.values(), body.generator, "generator")
            if generator.owner != command.author:
                raise TriggerRefused(
                    f"only the owner of generator {generator.name!r} may remove it"
                )
            del book.generators[generator.id]
            return generator.id
        case PackGenerator():
            require_role(host, command.author, Role.SUBMITTER)
            generator = resolve(book.generators.values(), body.generator, "generator")
            if len(generator.pending) >= PENDING_ARGS_MAX:
                raise TriggerRefused(
                    f"generator {generator.name!r} holds the maximum of {PENDING_ARGS_MAX} "
                    "waiting arguments"
                )
            generator.pending.append((host.now_ms, body.arg))
            return generator.id
        case FireGenerator():
            return _fire(book, host, body, command, events)


def _add(book: GeneratorBook, host: WorkflowHost, body: AddGenerator, command: CommandId) -> str:
    require_role(host, command.author, Role.SUBMITTER)
    generator_id = trigger_id("generator", command.author, body.nonce)
    if generator_id in book.generators:
        return generator_id
    check_name(body.name, "generator")
    if any(g.name == body.name for g in book.generators.values()):
        raise TriggerRefused(f"a generator named {body.name!r} exists")
    if len(book.generators) >= GENERATORS_MAX:
        raise TriggerRefused(f"the colony has the maximum of {GENERATORS_MAX} generators")
    if not 1 <= body.trigger <= TRIGGER_MAX:
        raise TriggerRefused(f"trigger: must be 1 to {TRIGGER_MAX} arguments")
    if not 0 <= body.timeout_s <= TIMEOUT_S_MAX:
        raise TriggerRefused(f"timeout: must be 0 to {TIMEOUT_S_MAX} seconds")
    workflow = parse_workflow(host.colony.name, body.workflow_json)
    book.generators[generator_id] = Generator(
        id=generator_id,
        name=body.name,
        owner=command.author,
        workflow=workflow,
        workflow_json=body.workflow_json,
        trigger=body.trigger,
        timeout_s=body.timeout_s,
        added_ms=host.now_ms,
    )
    return generator_id


def _fire(
    book: GeneratorBook,
    host: WorkflowHost,
    body: FireGenerator,
    command: CommandId,
    events: list[LedgerEvent],
) -> str:
    require_role(host, command.author, Role.SERVER)
    generator = book.generators.get(body.generator_id)
    if generator is None:
        raise TriggerRefused(f"no generator {body.generator_id}")
    if body.run != generator.runs:
        raise TriggerRefused(
            f"generator {generator.name!r}: run {body.run} is not its next ({generator.runs})"
        )
    if not generator.is_due(host.now_ms):
        raise TriggerRefused(f"generator {generator.name!r} is not due")
    batch = generator.pending[: generator.trigger]
    if not is_member_with(host, generator.owner, Role.SUBMITTER):
        reason = "its owner is no longer a submitter"
        del generator.pending[: len(batch)]
        generator.runs += 1
        generator.last_error = f"run {body.run}: {len(batch)} arguments dropped: {reason}"
        return ""
    del generator.pending[: len(batch)]
    nonce = run_nonce(generator.id, generator.runs)
    generator.runs += 1
    generator.last_run_ms = host.now_ms
    try:
        workflow = with_root_args(generator.workflow, [arg for _, arg in batch])
    except SpecError as error:
        generator.last_error = f"run {body.run}: {len(batch)} arguments dropped: {error}"
        return ""
    generator.last_error = ""
    generator.last_workflow_id = host.start_workflow(
        workflow, generator.owner, nonce, [], command, events
    )
    return generator.last_workflow_id


def with_root_args(workflow: WorkflowSpec, args: list[str]) -> WorkflowSpec:
    """The workflow with its roots' args replaced by ``args``, validated as a submission is."""
    specs = tuple(
        spec if spec.conditions.dependencies else dataclasses.replace(spec, args=tuple(args))
        for spec in workflow.functionspecs
    )
    # No larger than a member could have submitted (the ledger keeps and
    # snapshots every process's spec text).
    for index, spec in enumerate(specs):
        size = len(spec.to_json().encode())
        if size > SPEC_JSON_BYTES_MAX:
            raise SpecError(
                f"functionspecs[{index}].args",
                f"the batch makes the spec {size} bytes, over {SPEC_JSON_BYTES_MAX}",
            )
    result = parse_workflow_spec(dataclasses.replace(workflow, functionspecs=specs).to_json_obj())
    size = len(result.to_json().encode())
    if size > WORKFLOW_JSON_BYTES_MAX:
        raise SpecError("functionspecs", f"the batch makes the workflow {size} bytes")
    return result


# --- views and snapshots ---------------------------------------------------------


def generator_view(generator: Generator, host: WorkflowHost) -> dict[str, Any]:
    """The JSON document of a generator, in ColonyOS's field names where it has them."""
    return {
        "generatorid": generator.id,
        "name": generator.name,
        "initiatorid": generator.owner.hex(),
        "trigger": generator.trigger,
        "timeout": generator.timeout_s,
        "added_ms": generator.added_ms,
        "lastrun_ms": generator.last_run_ms,
        "runs": generator.runs,
        "pending": [arg for _, arg in generator.pending],
        "firstpack_ms": generator.pending[0][0] if generator.pending else 0,
        "lastworkflowid": generator.last_workflow_id,
        "lastworkflowstate": workflow_state(host, generator.last_workflow_id),
        "lasterror": generator.last_error,
        "workflowspec": generator.workflow.to_json_obj(),
    }


def encode_generators(book: GeneratorBook) -> list[list[Any]]:
    return [
        [
            g.id,
            g.name,
            g.owner,
            g.workflow_json,
            g.trigger,
            g.timeout_s,
            g.added_ms,
            [[ms, arg] for ms, arg in g.pending],
            g.runs,
            g.last_run_ms,
            g.last_workflow_id,
            g.last_error,
        ]
        for g in book.generators.values()
    ]


_GENERATOR_FIELDS: tuple[tuple[str, type], ...] = (
    ("id", str),
    ("name", str),
    ("owner", bytes),
    ("workflow_json", str),
    ("trigger", int),
    ("timeout_s", int),
    ("added_ms", int),
    ("pending", list),
    ("runs", int),
    ("last_run_ms", int),
    ("last_workflow_id", str),
    ("last_error", str),
)
_PENDING_FIELDS: tuple[tuple[str, type], ...] = (("ms", int), ("arg", str))


def decode_generators(value: object, colony_name: str) -> GeneratorBook:
    """A :class:`GeneratorBook` from :func:`encode_generators` data, or :class:`RecordError`."""
    if type(value) is not list:
        raise RecordError("generators: expected a list")
    book = GeneratorBook()
    for index, item in enumerate(value):
        path = f"generators[{index}]"
        (gid, name, owner, text, trigger, timeout, added, pending, runs, last, wid, error) = (
            typed_record(item, path, _GENERATOR_FIELDS)
        )
        try:
            workflow = parse_workflow(colony_name, text)
        except TriggerRefused as refusal:
            raise RecordError(f"{path}: {refusal.reason}") from None
        if not 1 <= trigger <= TRIGGER_MAX or timeout < 0:
            raise RecordError(f"{path}: trigger or timeout out of range")
        waiting = [
            (ms, arg)
            for i, pair in enumerate(pending)
            for ms, arg in (typed_record(pair, f"{path}.pending[{i}]", _PENDING_FIELDS),)
        ]
        if gid in book.generators:
            raise RecordError(f"{path}: duplicate id {gid}")
        book.generators[gid] = Generator(
            gid,
            name,
            owner,
            workflow,
            text,
            trigger,
            timeout,
            added,
            waiting,
            runs,
            last,
            wid,
            error,
        )
    return book
