"""What crons and generators share: the ledger they start workflows in, and their refusals.

Crons (``crons.py``) and generators (``generators.py``) are rules of the
ledger that start workflows on the colony's behalf. They reach the ledger
only through :class:`WorkflowHost` (the :class:`~colonymesh.node.ledger.ledger.Ledger`
satisfies it), refuse a command by raising :class:`TriggerRefused` (the
ledger turns it into a ``CommandRefused`` event), and name every run's
workflow deterministically from the trigger's id and run number, so every
replica creates the same workflow and process ids.

Firing is exactly once per tick because a firing is a log command that
names the tick (a cron's due time, a generator's run number): the rules
accept it only while it is the trigger's *next* tick, and applying it moves
the trigger past it. Two leaders proposing the same firing (an old one
that has not yet learnt it was deposed, and the new one) therefore start
one run: the second command is refused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Protocol, TypeVar

from colonymesh.node.certs import Colony, Membership, Role
from colonymesh.node.ledger.events import CommandId, LedgerEvent
from colonymesh.node.ledger.model import Process, Workflow
from colonymesh.node.spec import SpecError, WorkflowSpec, parse_workflow_spec

NAME_CHARS_MAX = 128
RUN_NONCE_BYTES = 16


class TriggerRefused(Exception):
    """A cron or generator command the rules refuse; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RecordError(ValueError):
    """A cron or generator record in a snapshot is malformed."""


class WorkflowHost(Protocol):
    """The part of the ledger crons and generators use."""

    colony: Colony
    membership: Membership
    now_ms: int
    workflows: dict[str, Workflow]
    processes: dict[str, Process]

    def start_workflow(
        self,
        workflow: WorkflowSpec,
        submitter: bytes,
        nonce: bytes,
        root_input: list[object],
        command: CommandId,
        events: list[LedgerEvent],
    ) -> str: ...


def require_role(host: WorkflowHost, author: bytes, role: Role) -> None:
    certificate = host.membership.certificate_of(author, host.now_ms / 1000)
    if certificate is None or not certificate.has_role(role):
        raise TriggerRefused(f"author lacks the {role.value} role")


def is_member_with(host: WorkflowHost, member: bytes, role: Role) -> bool:
    certificate = host.membership.certificate_of(member, host.now_ms / 1000)
    return certificate is not None and certificate.has_role(role)


def parse_workflow(colony_name: str, text: str) -> WorkflowSpec:
    """The workflow a trigger will start, validated now so that a run cannot be refused later."""
    try:
        workflow = parse_workflow_spec(json.loads(text))
    except SpecError as error:
        raise TriggerRefused(f"invalid workflow spec: {error}") from None
    except (ValueError, RecursionError) as error:
        raise TriggerRefused(f"invalid workflow spec: not JSON ({error})") from None
    if workflow.colonyname and workflow.colonyname != colony_name:
        raise TriggerRefused(
            f"workflow spec is for colony {workflow.colonyname!r}, this is {colony_name!r}"
        )
    return workflow


def check_name(name: str, what: str) -> None:
    if not name or len(name) > NAME_CHARS_MAX or not name.isprintable() or name != name.strip():
        raise TriggerRefused(
            f"{what} name must be 1 to {NAME_CHARS_MAX} printable characters without "
            "surrounding spaces"
        )


def trigger_id(kind: str, author: bytes, nonce: bytes) -> str:
    """A new cron's or generator's id: 64 hex characters, the same on every replica."""
    digest = hashlib.sha256()
    for part in (b"colonymesh.trigger", kind.encode(), author, nonce):
        digest.update(len(part).to_bytes(4, "big") + part)
    return digest.hexdigest()


def run_nonce(trigger: str, run: int) -> bytes:
    """The nonce of a trigger's ``run``-th workflow (so its ids are deterministic and unique)."""
    digest = hashlib.sha256(
        b"colonymesh.trigger.run\0" + trigger.encode() + b"\0" + str(run).encode()
    )
    return digest.digest()[:RUN_NONCE_BYTES]


def leaf_outputs(host: WorkflowHost, workflow_id: str) -> list[object]:
    """The outputs of a workflow's leaves (processes without children), in workflow order.

    ColonyOS feeds these to the next cron run's roots as their input.
    """
    workflow = host.workflows.get(workflow_id)
    if workflow is None:
        return []
    outputs: list[object] = []
    for process_id in workflow.process_ids:
        process = host.processes.get(process_id)
        if process is not None and not process.children:
            outputs.extend(process.output)
    return outputs


def workflow_running(host: WorkflowHost, workflow_id: str) -> bool:
    workflow = host.workflows.get(workflow_id)
    return workflow is not None and not workflow.state.is_final


def workflow_state(host: WorkflowHost, workflow_id: str) -> str:
    workflow = host.workflows.get(workflow_id)
    return workflow.state.value if workflow is not None else ""


class Named(Protocol):
    id: str
    name: str


N = TypeVar("N", bound=Named)


def resolve(records: Iterable[N], ref: str, what: str) -> N:
    """The record ``ref`` names: by id, or else by name."""
    by_name: N | None = None
    for record in records:
        if record.id == ref:
            return record
        if record.name == ref:
            by_name = record
    if by_name is None:
        raise TriggerRefused(f"no {what} {ref!r}")
    return by_name
