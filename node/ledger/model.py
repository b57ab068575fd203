"""The ledger's records: processes, workflows, executors, functions.

Mutable on purpose and only ever mutated by :class:`~colonymesh.node.ledger.ledger.Ledger`
while applying a command; everyone else reads them. Times are the ledger's
milliseconds (from :class:`~colonymesh.node.ledger.commands.Tick`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from colonymesh.node.certs import Capabilities
from colonymesh.node.spec import FunctionSpec


class ProcessState(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (ProcessState.SUCCESS, ProcessState.FAILED, ProcessState.CANCELLED)


@dataclass(slots=True)
class Process:
    id: str
    spec: FunctionSpec
    spec_json: str
    submitter: bytes
    submitted_ms: int
    order: int  # position in the waiting queue among equal priorities (submission order)
    state: ProcessState = ProcessState.WAITING
    workflow_id: str = ""
    parents: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    parents_pending: int = 0  # parents not yet succeeded; the process is ready at 0
    ready_ms: int = 0
    executor: bytes | None = None
    assigned_ms: int = 0
    ended_ms: int = 0
    retries: int = 0
    executor_losses: int = 0
    input: list[object] = field(default_factory=list)
    output: list[object] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    attributes: dict[str, str] = field(default_factory=dict)
    logs: list[tuple[int, str]] = field(default_factory=list)
    logs_dropped: int = 0

    @property
    def is_ready(self) -> bool:
        return self.state is ProcessState.WAITING and self.parents_pending == 0

    def queue_key(self) -> tuple[int, int]:
        return (-self.spec.priority, self.order)


@dataclass(slots=True)
class Workflow:
    id: str
    submitter: bytes
    submitted_ms: int
    process_ids: list[str] = field(default_factory=list)
    state: ProcessState = ProcessState.WAITING
    ended_ms: int = 0


@dataclass(slots=True)
class Executor:
    key: bytes
    name: str
    executor_type: str
    location: str
    capabilities: Capabilities
    registered_ms: int
    running: list[str] = field(default_factory=list)
    functions: dict[str, str] = field(default_factory=dict)  # funcname -> description


@dataclass(slots=True)
class TimingStats:
    count: int = 0
    total_ms: int = 0
    min_ms: int = 0
    max_ms: int = 0

    def add(self, value_ms: int) -> None:
        self.min_ms = value_ms if self.count == 0 else min(self.min_ms, value_ms)
        self.max_ms = max(self.max_ms, value_ms)
        self.count += 1
        self.total_ms += value_ms

    @property
    def avg_ms(self) -> float:
        return self.total_ms / self.count if self.count else 0.0


@dataclass(slots=True)
class FunctionStats:
    """Counters per (executor type, function name), as ColonyOS keeps per function."""

    executor_type: str
    funcname: str
    submitted: int = 0
    succeeded: int = 0
    failed: int = 0
    wait: TimingStats = field(default_factory=TimingStats)
    run: TimingStats = field(default_factory=TimingStats)
