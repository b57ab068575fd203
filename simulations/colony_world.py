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

from collections.abc import Callable
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
    ProcessReady,
    ProcessRequeued,
    WorkflowFinished,
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


@dataclass(frozen=True, slots=True)
class WorkAvailable:
    """A waiting process's spec reached a dormant executor (the gossip of issue 7, modelled)."""

    executor_type: str


WORK_AVAILABLE: dict[str, WorkAvailable] = {}  # one shared message per executor type


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
    rewake_after_s: float = 1.0  # a process waiting this long wakes one more executor
    rewake_per_tick_max: int = 32  # per executor type and leader tick


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
    """Keys, certificates and the records every checker reads; shared across restarts.

    Scale: a member's keys and certificate are made the first time its node
    signs or is named (most executors of a large colony never are), and only
    servers and submitters are in the genesis ledger; executors admit
    themselves (``Admit``) when first woken, as a real peer does. Dormant
    executors wait in per-type stacks (most recently parked first, so a small
    working set stays registered) and cost no events until a
    :class:`WorkAvailable` reaches them.
    """

    def __init__(
        self,
        rng_bytes: bytes,
        servers: int,
        executors: int,
        timing: ColonyTiming,
        *,
        submitters: int = 1,
        executor_types: list[str] | None = None,
        capabilities: list[Capabilities] | None = None,
        locations: list[str] | None = None,
    ) -> None:
        self.timing = timing
        self._seeds = rng_bytes
        self.owner = KeyPair.from_seed(rng_bytes[:32])
        self.colony: Colony = create_colony(self.owner, "sim", NOW_S - 7200)
        self.servers_n = servers
        self.submitters_n = submitters
        self.nodes_n = servers + submitters + executors
        # Node index -> executor type ("" for servers and submitters).
        types = executor_types if executor_types is not None else [EXECUTOR_TYPE] * executors
        if len(types) != executors:
            raise ValueError("one executor type per executor")
        self.types: list[str] = [""] * (servers + submitters) + types
        self._caps = capabilities
        self._locations = locations
        self._members: list[Member | None] = [None] * self.nodes_n
        self.node_of_key: dict[bytes, int] = {}
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
        # Time series: arrival (workload time) and end (virtual time) of submissions.
        self.arrived_at: dict[str, float] = {}
        self.finished_at: dict[str, float] = {}
        self.clock: Callable[[], float] = lambda: 0.0  # virtual time (set by the scenario)
        # Waiting processes (queue length) and the dormant executors' wake-up.
        self.ready: dict[str, tuple[str, float]] = {}  # process id -> (type, ready since)
        self.idle: dict[str, list[int]] = {}  # executor type -> parked nodes, newest last
        self.parked = bytearray(self.nodes_n)  # 1: in its idle stack
        self.woken: dict[int, float] = {}  # node -> when a wake-up was sent, until it lands
        self.wakes: list[tuple[int, str]] = []  # (node, type) for the applying server to send
        self.wakes_sent = 0
        self.activated = bytearray(self.nodes_n)  # 1: has joined the ledger once (durable)

    # --- members (lazy) ---------------------------------------------------------

    def member(self, i: int) -> Member:
        member = self._members[i]
        if member is None:
            member = self._members[i] = self._make_member(i)
            self.node_of_key[member.keys.public_key] = i
        return member

    def _make_member(self, i: int) -> Member:
        s = self.servers_n
        if i < s:
            roles, name, etype = (Role.SERVER,), f"server-{i}", ""
        elif i < s + self.submitters_n:
            roles = (Role.SUBMITTER,)
            name = "submitter" if self.submitters_n == 1 else f"submitter-{i - s}"
            etype = ""
        else:
            roles, name, etype = (Role.EXECUTOR,), f"exec-{i}", self.types[i]
        keys = KeyPair.from_seed(self._seeds[32 * (i + 1) : 32 * (i + 2)])
        caps = Capabilities(cpu_millicores=64_000, mem_bytes=2**40)
        if self._caps is not None and i >= s + self.submitters_n:
            caps = self._caps[i - s - self.submitters_n]
        location = "" if self._locations is None else self._locations[i]
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
            location=location,
            capabilities=caps,
        )
        return Member(keys, Signer(keys), cert)

    @property
    def members(self) -> list[Member]:
        """Every member (builds them all: for small colonies and tests)."""
        return [self.member(i) for i in range(self.nodes_n)]

    def new_ledger(self) -> Ledger:
        founders = self.servers_n + self.submitters_n
        return Ledger(
            self.colony,
            genesis_ms=GENESIS_MS,
            certificates=[self.member(i).certificate for i in range(founders)],
        )

    # --- dormant executors --------------------------------------------------------

    def park(self, node: int) -> None:
        """``node`` is up and dormant: it may be woken for its type's work."""
        self.woken.pop(node, None)
        if not self.parked[node]:
            self.parked[node] = 1
            self.idle.setdefault(self.types[node], []).append(node)

    def unpark(self, node: int) -> None:
        """``node`` crashed or woke: it is no longer waiting to be woken."""
        self.parked[node] = 0
        self.woken.pop(node, None)

    def long_polling(self, key: bytes) -> bool:
        """Whether the executor of ``key`` is parked: up, dormant, waiting for work."""
        node = self.node_of_key.get(key)
        return node is not None and self.parked[node] == 1

    def _wake(self, executor_type: str) -> bool:
        stack = self.idle.get(executor_type)
        while stack:
            node = stack.pop()
            if self.parked[node]:
                self.parked[node] = 0
                self.woken[node] = self.clock()
                self.wakes.append((node, executor_type))
                self.wakes_sent += 1
                return True
        return False

    def take_wakes(self) -> list[tuple[int, str]]:
        wakes, self.wakes = self.wakes, []
        return wakes

    def rewake(self, waited_s: float, per_type_max: int) -> None:
        """The leader's safety net, per tick: wake-ups that never landed go back to the
        stacks, and processes waiting longer than ``waited_s`` wake one more executor each."""
        now = self.clock()
        while self.woken:
            node, at = next(iter(self.woken.items()))
            if now - at < 2 * waited_s:
                break
            del self.woken[node]
            self.park(node)
        budget: dict[str, int] = {}
        for executor_type, since in self.ready.values():
            if now - since < waited_s:
                break  # ready in time order, oldest first
            left = budget.get(executor_type, per_type_max)
            if left > 0 and self._wake(executor_type):
                budget[executor_type] = left - 1

    # --- the applied log ------------------------------------------------------------

    def observe(self, index: int, events: list[LedgerEvent]) -> None:
        """Record what the entry at ``index`` did; checks (3) only assignees close."""
        if index <= self.applied_max:
            return
        self.applied_max = index
        self.ledger_events += len(events)
        now = self.clock()
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
            elif isinstance(ev, ProcessReady):
                self.ready[ev.process_id] = (ev.executor_type, now)
                self._wake(ev.executor_type)
            elif isinstance(ev, ProcessAssigned):
                self.claims += 1
                self.assignee[ev.process_id] = ev.executor
                self.ready.pop(ev.process_id, None)
            elif isinstance(ev, ProcessRequeued):
                self.requeues += 1
                self.assignee.pop(ev.process_id, None)
            elif isinstance(ev, ProcessFinished):
                self.assignee.pop(ev.process_id, None)
                self.ready.pop(ev.process_id, None)
                if ev.process_id in self.final:
                    self._fail(f"process {ev.process_id} finished twice")
                self.final[ev.process_id] = ev.state
                self.finished_at[ev.process_id] = now
            elif isinstance(ev, WorkflowFinished):
                self.finished_at[ev.workflow_id] = now
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
        return "a stranger" if node is None else self.member(node).certificate.name

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
                    f"{self.member(r.node).certificate.name} since t={r.start:.3f} and by "
                    f"{self.member(node).certificate.name} from t={now:.3f}"
                )
        record = RunRecord(process_id, node, now)
        runs.append(record)
        self.running_at[node] = record
        self.runs_total += 1
        return record
