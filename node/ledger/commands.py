"""The commands the ledger applies: envelope bodies, each signed by its author.

A Raft entry of the colony ledger is exactly one sealed envelope frame. Every
replica decodes it, checks the author's signature and certificate against the
ledger's own membership at ledger time, and only then applies it, so not even
a leader can forge a submission, a claim or a close. JSON travels as text
(ColonyOS's function specs and process outputs), parsed identically by every
replica.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from colonymesh.node.certs import RECORD_BYTES_MAX
from colonymesh.node.envelope import message
from colonymesh.node.schema import exact, limit

SPEC_JSON_BYTES_MAX = 256 * 1024
WORKFLOW_JSON_BYTES_MAX = 2 * 1024 * 1024
OUTPUT_JSON_BYTES_MAX = 1024 * 1024
LOG_LINE_BYTES_MAX = 64 * 1024
ID_CHARS_MAX = 128
NONCE_BYTES = 16


@message("ledger.submit")
@dataclass(frozen=True, slots=True)
class SubmitFunction:
    spec_json: str = field(metadata=limit(SPEC_JSON_BYTES_MAX))
    nonce: bytes = field(metadata=exact(NONCE_BYTES))


@message("ledger.submit_workflow")
@dataclass(frozen=True, slots=True)
class SubmitWorkflow:
    workflow_json: str = field(metadata=limit(WORKFLOW_JSON_BYTES_MAX))
    nonce: bytes = field(metadata=exact(NONCE_BYTES))


@message("ledger.add_child")
@dataclass(frozen=True, slots=True)
class AddChild:
    """A running parent's executor adds a process to the parent's workflow (fan-out).

    With ``insert``, the parent's existing children wait for the new child too,
    so a reduce step placed after a map step also waits for everything the map
    step adds.
    """

    parent_id: str = field(metadata=limit(ID_CHARS_MAX))
    spec_json: str = field(metadata=limit(SPEC_JSON_BYTES_MAX))
    nonce: bytes = field(metadata=exact(NONCE_BYTES))
    insert: bool = True


@message("ledger.register_executor")
@dataclass(frozen=True, slots=True)
class RegisterExecutor:
    """An executor announces itself; type, capabilities and location come from its certificate."""

    name: str = field(metadata=limit(256))


@message("ledger.unregister_executor")
@dataclass(frozen=True, slots=True)
class UnregisterExecutor:
    reason: str = field(default="", metadata=limit(1024))


@message("ledger.register_function")
@dataclass(frozen=True, slots=True)
class RegisterFunction:
    funcname: str = field(metadata=limit(256))
    description: str = field(default="", metadata=limit(4096))
    args_schema_json: str = field(default="", metadata=limit(64 * 1024))


@message("ledger.claim")
@dataclass(frozen=True, slots=True)
class Claim:
    """Claim a waiting process; with no id, the ledger picks the best match.

    The ledger picks by priority, then submission order, among the processes
    the executor matches and has room for. Naming a process claims exactly
    that one, or is refused.
    """

    process_id: str = field(default="", metadata=limit(ID_CHARS_MAX))


@message("ledger.close")
@dataclass(frozen=True, slots=True)
class Close:
    process_id: str = field(metadata=limit(ID_CHARS_MAX))
    output_json: str = field(default="[]", metadata=limit(OUTPUT_JSON_BYTES_MAX))


@message("ledger.fail")
@dataclass(frozen=True, slots=True)
class Fail:
    process_id: str = field(metadata=limit(ID_CHARS_MAX))
    errors: tuple[str, ...] = field(default=(), metadata=limit(64))


@message("ledger.cancel")
@dataclass(frozen=True, slots=True)
class Cancel:
    """Cancel a process or a whole workflow (by its id); only its submitter may."""

    target_id: str = field(metadata=limit(ID_CHARS_MAX))


@message("ledger.log")
@dataclass(frozen=True, slots=True)
class AddLog:
    process_id: str = field(metadata=limit(ID_CHARS_MAX))
    message: str = field(metadata=limit(LOG_LINE_BYTES_MAX))


@message("ledger.attribute")
@dataclass(frozen=True, slots=True)
class SetAttribute:
    process_id: str = field(metadata=limit(ID_CHARS_MAX))
    key: str = field(metadata=limit(256))
    value: str = field(metadata=limit(64 * 1024))


@message("ledger.tick")
@dataclass(frozen=True, slots=True)
class Tick:
    """The leader's clock, the only way time enters the ledger (so replicas agree on it)."""

    now_ms: int


@message("ledger.executor_lost")
@dataclass(frozen=True, slots=True)
class ExecutorLost:
    """A server found an executor silent past the stale timeout; its work is re-queued."""

    executor_key: bytes = field(metadata=exact(32))
    reason: str = field(default="", metadata=limit(1024))


@message("ledger.admit")
@dataclass(frozen=True, slots=True)
class Admit:
    """Record an owner-signed certificate, proposed by its holder or any member."""

    certificate: bytes = field(metadata=limit(RECORD_BYTES_MAX))


@message("ledger.revoke")
@dataclass(frozen=True, slots=True)
class Revoke:
    revocation: bytes = field(metadata=limit(RECORD_BYTES_MAX))


@message("ledger.fs_add")
@dataclass(frozen=True, slots=True)
class AddFile:
    """A new revision of file ``name`` under ``label`` (metadata only: the bytes are on peers).

    ``addrs`` are where the author listens, a first provider for readers.
    """

    label: str = field(metadata=limit(1024))
    name: str = field(metadata=limit(1024))
    size: int
    cid: str = field(metadata=limit(128))
    addrs: tuple[str, ...] = field(default=(), metadata=limit(8))


@message("ledger.fs_rm")
@dataclass(frozen=True, slots=True)
class RemoveFile:
    label: str = field(metadata=limit(1024))
    name: str = field(metadata=limit(1024))


@message("ledger.fs_label_rm")
@dataclass(frozen=True, slots=True)
class RemoveLabel:
    """Remove every file under ``label`` and the labels below it."""

    label: str = field(metadata=limit(1024))


@message("ledger.fs_snapshot")
@dataclass(frozen=True, slots=True)
class CreateSnapshot:
    """Pin the latest revision of every file under ``label`` as snapshot ``name``."""

    label: str = field(metadata=limit(1024))
    name: str = field(metadata=limit(256))


@message("ledger.fs_snapshot_rm")
@dataclass(frozen=True, slots=True)
class RemoveSnapshot:
    snapshot: str = field(metadata=limit(256))  # its id or its name


# --- crons and generators (rules in crons.py and generators.py) ----------------

CRON_NAME_CHARS_MAX = 128
GENERATOR_ARG_CHARS_MAX = 4096


@message("ledger.add_cron")
@dataclass(frozen=True, slots=True)
class AddCron:
    """Run a workflow on a schedule: a six-field cron expression or an interval (not both)."""

    name: str = field(metadata=limit(CRON_NAME_CHARS_MAX))
    workflow_json: str = field(metadata=limit(WORKFLOW_JSON_BYTES_MAX))
    nonce: bytes = field(metadata=exact(NONCE_BYTES))
    cron_expression: str = field(default="", metadata=limit(256))
    interval_s: int = 0
    wait_for_previous: bool = False


@message("ledger.remove_cron")
@dataclass(frozen=True, slots=True)
class RemoveCron:
    cron: str = field(metadata=limit(ID_CHARS_MAX))  # id or name


@message("ledger.run_cron")
@dataclass(frozen=True, slots=True)
class RunCron:
    """Its owner starts a run now, outside the schedule (which stays as it was)."""

    cron: str = field(metadata=limit(ID_CHARS_MAX))


@message("ledger.fire_cron")
@dataclass(frozen=True, slots=True)
class FireCron:
    """A server (the leader) fires the cron's tick at ``due_ms``; applies once per tick."""

    cron_id: str = field(metadata=limit(ID_CHARS_MAX))
    due_ms: int


@message("ledger.add_generator")
@dataclass(frozen=True, slots=True)
class AddGenerator:
    """Batch packed arguments: run the workflow per ``trigger`` of them, or after ``timeout_s``."""

    name: str = field(metadata=limit(CRON_NAME_CHARS_MAX))
    workflow_json: str = field(metadata=limit(WORKFLOW_JSON_BYTES_MAX))
    nonce: bytes = field(metadata=exact(NONCE_BYTES))
    trigger: int = 1
    timeout_s: int = 0


@message("ledger.remove_generator")
@dataclass(frozen=True, slots=True)
class RemoveGenerator:
    generator: str = field(metadata=limit(ID_CHARS_MAX))  # id or name


@message("ledger.pack_generator")
@dataclass(frozen=True, slots=True)
class PackGenerator:
    generator: str = field(metadata=limit(ID_CHARS_MAX))  # id or name
    arg: str = field(metadata=limit(GENERATOR_ARG_CHARS_MAX))


@message("ledger.fire_generator")
@dataclass(frozen=True, slots=True)
class FireGenerator:
    """A server (the leader) submits the generator's run number ``run``; applies once."""

    generator_id: str = field(metadata=limit(ID_CHARS_MAX))
    run: int


LedgerCommand = (
    SubmitFunction
    | SubmitWorkflow
    | AddChild
    | RegisterExecutor
    | UnregisterExecutor
    | RegisterFunction
    | Claim
    | Close
    | Fail
    | Cancel
    | AddLog
    | SetAttribute
    | Tick
    | ExecutorLost
    | Admit
    | Revoke
    | AddFile
    | RemoveFile
    | RemoveLabel
    | CreateSnapshot
    | RemoveSnapshot
)
