"""The colony scenario's shared world: keys, certificates, messages, and what the checkers read.

What it owns: the messages between the simulated actors and the servers
(:class:`Proposal`, :class:`Answer`, :class:`Redirect`, :class:`Heartbeat`,
:class:`HeartbeatAck`), the timing of the colony (:class:`ColonyTiming`), and
:class:`ColonyWorld`: the colony's owner, one member (key pair and
certificate) per node, derived from the run's seed so runs are repeatable,
and the records the checkers use -- the assignee of every process as the
applied log says (checker 3: only the assignee closes or fails it), every
executor's run intervals in virtual time (checker 2: no process runs at two
executors at once), and the submissions the submitter saw acknowledged
(checker 1, at the end of the run).

Invariant: ``observe`` sees each log index once (from the first replica to
apply it); the Raft checker proves every replica applies the same entries.
"""

from __future__ import annotations

from dataclasses import dataclass

from colonymesh.node.certs import (
    Capabilities,
    Certificate,
    Colony,
    Role,
    create_colony,
    issue_certificate,
)
from colonymesh.node.identity import KeyPair, Signer
from colonymesh.node.ledger.events import (
    CommandApplied,
    CommandRefused,
    LedgerEvent,
    ProcessAssigned,
    ProcessFinished,
    ProcessRequeued,
)
from colonymesh.node.ledger.ledger import Ledger
from colonymesh.node.ledger.model import ProcessState

NOW_S = 1_800_000_000  # the colony's wall clock at virtual time 0
GENESIS_MS = NOW_S * 1000
EXECUTOR_TYPE = "sim"


# --- messages between actors and servers ---------------------------------------


@dataclass(frozen=True, slots=True)
class Proposal:
    frame: bytes
    seq: int


@dataclass(frozen=True, slots=True)
class Answer:
    seq: int
    applied: bool
    subject: str = ""
    reason: str = ""
    funcname: str = ""
    assigned_ms: int = 0


@dataclass(frozen=True, slots=True)
class Redirect:
    seq: int
    leader_hint: int  # -1: unknown


@dataclass(frozen=True, slots=True)
class Heartbeat:
    sent_at: float


@dataclass(frozen=True, slots=True)
class HeartbeatAck:
    sent_at: float


# --- the world ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ColonyTiming:
    tick_interval_s: float = 0.5
    stale_s: float = 5.0  # the leader declares an executor lost after this silence
    lease_s: float = 2.0  # an executor stops its run this long after its last acked heartbeat
    heartbeat_s: float = 0.4
    request_timeout_s: float = 1.0
    claim_idle_s: float = 0.5  # wait after "no waiting process"
    redirect_pause_s: float = 0.05


@dataclass(slots=True)
class Member:
    keys: KeyPair
    signer: Signer
    certificate: Certificate


@dataclass(slots=True)
class RunRecord:
    """One executor's run of one process, in virtual time (``end`` None while running)."""

    process_id: str
    node: int
    start: float
    end: float | None = None


class ColonyWorld:
    """Keys, certificates and the records every checker reads; shared across restarts."""

    def __init__(
        self, rng_bytes: bytes, servers: int, executors: int, timing: ColonyTiming
    ) -> None:
        self.timing = timing
        seeds = [rng_bytes[i : i + 32] for i in range(0, len(rng_bytes), 32)]
        self.owner = KeyPair.from_seed(seeds[0])
        self.colony: Colony = create_colony(self.owner, "sim", NOW_S - 7200)
        self.servers_n = servers
        self.members: list[Member] = []  # node index -> member
        for i in range(servers + 1 + executors):
            if i < servers:
                roles, name, etype = (Role.SERVER,), f"server-{i}", ""
            elif i == servers:
                roles, name, etype = (Role.SUBMITTER,), "submitter", ""
            else:
                roles, name, etype = (Role.EXECUTOR,), f"exec-{i}", EXECUTOR_TYPE
            keys = KeyPair.from_seed(seeds[i + 1])
            cert = issue_certificate(
                self.owner,
                self.colony,
                keys.public_key,
                name=name,
                roles=roles,
                not_before=NOW_S - 3600,
                not_after=NOW_S + 10 * 86400,
                serial=i + 1,
                executor_type=etype,
                capabilities=Capabilities(cpu_millicores=64_000, mem_bytes=2**40),
            )
            self.members.append(Member(keys, Signer(keys), cert))
        self.node_of_key = {m.keys.public_key: i for i, m in enumerate(self.members)}
        # Records from the applied log (first replica to apply an index).
        self.applied_max = 0
        self.assignee: dict[str, bytes] = {}
        self.final: dict[str, ProcessState] = {}
        self.claims = 0
        self.requeues = 0
        self.executor_losses = 0
        self.closes = 0
        self.fails = 0
        self.reports_refused = 0
        self.ledger_events = 0
        self.violation: str | None = None
        # The actors' own records.
        self.runs: dict[str, list[RunRecord]] = {}
        self.running_at: dict[int, RunRecord] = {}  # node -> its current run
        self.runs_total = 0
        self.runs_stopped = 0
        self.runs_timed_out = 0
        self.acked: dict[str, str] = {}  # process or workflow id -> "ok" | "fail" | "mixed"
        self.workflows_acked: list[str] = []

    def new_ledger(self) -> Ledger:
        return Ledger(
            self.colony,
            genesis_ms=GENESIS_MS,
            certificates=[m.certificate for m in self.members],
        )

    def observe(self, index: int, events: list[LedgerEvent]) -> None:
        """Record what the entry at ``index`` did; checks (3) only assignees close."""
        if index <= self.applied_max:
            return
        self.applied_max = index
        self.ledger_events += len(events)
        for ev in events:
            if isinstance(ev, CommandApplied) and ev.kind in ("ledger.close", "ledger.fail"):
                assignee = self.assignee.get(ev.subject)
                if assignee != ev.command.author:
                    self._fail(
                        f"process {ev.subject} closed by {self._name(ev.command.author)}, "
                        f"assigned to {self._name(assignee)}"
                    )
                if ev.kind == "ledger.close":
                    self.closes += 1
                else:
                    self.fails += 1
            elif isinstance(ev, CommandRefused) and ev.kind in ("ledger.close", "ledger.fail"):
                self.reports_refused += 1
            elif isinstance(ev, ProcessAssigned):
                self.claims += 1
                self.assignee[ev.process_id] = ev.executor
            elif isinstance(ev, ProcessRequeued):
                self.requeues += 1
                self.assignee.pop(ev.process_id, None)
            elif isinstance(ev, ProcessFinished):
                self.assignee.pop(ev.process_id, None)
                if ev.process_id in self.final:
                    self._fail(f"process {ev.process_id} finished twice")
                self.final[ev.process_id] = ev.state
            elif isinstance(ev, CommandApplied) and ev.kind == "ledger.executor_lost":
                self.executor_losses += 1

    def run_stopped(self, node: int, now: float) -> None:
        record = self.running_at.pop(node, None)
        if record is not None and record.end is None:
            record.end = now

    def _name(self, key: bytes | None) -> str:
        if key is None:
            return "nobody"
        node = self.node_of_key.get(key)
        return "a stranger" if node is None else self.members[node].certificate.name

    def _fail(self, message: str) -> None:
        if self.violation is None:
            self.violation = message

    def run_started(self, process_id: str, node: int, now: float) -> RunRecord:
        """Checks (2): no other actor runs ``process_id`` now."""
        runs = self.runs.setdefault(process_id, [])
        for r in runs:
            if r.node != node and (r.end is None or r.end > now):
                self._fail(
                    f"process {process_id} run twice concurrently: by "
                    f"{self.members[r.node].certificate.name} since t={r.start:.3f} and by "
                    f"{self.members[node].certificate.name} from t={now:.3f}"
                )
        record = RunRecord(process_id, node, now)
        runs.append(record)
        self.running_at[node] = record
        self.runs_total += 1
        return record
