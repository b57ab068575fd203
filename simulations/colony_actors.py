"""The actors of the ``colony`` scenario: ledger servers, executors and a submitter.

What it owns (the shared world and messages live in
:mod:`~colonymesh.simulations.colony_world`): :class:`ColonyServer` (the Raft adapter of
:mod:`~colonymesh.simulations.raft_server` with the real
:class:`~colonymesh.node.ledger.ledger.Ledger` as its state machine instead of
the key-value store), :class:`ExecutorActor` and :class:`SubmitterActor`.

How it works, after the real peers (``node/colony``): every Raft entry is one
member-signed envelope frame. Actors seal a command once and send the frame
to the server they think leads; on a timeout or a redirect they send the
*same* frame again (to the hinted leader), so a frame may be appended twice
and the ledger's replay window refuses the second copy. The leader ticks the
ledger clock every ``tick_interval_s`` and declares lost every executor it has
not heard from for ``stale_s`` since it became leader (ExecutorLost). A
dormant executor the ledger gives no process to waits in a long-poll, as the
real worker does (decision 11): the leader counts it as heard from while it
is parked -- up and dormant -- and an executor the ledger shows running
something must heartbeat like any other.

Executors hold one slot: Claim, "run" the process for a drawn virtual
duration, then Close (or Fail). A run stops early when (a) ``maxexectime``
has passed since the ledger assigned it -- counted from the assignment time
the ledger recorded, not from when the claim's answer arrived, because the
ledger re-queues at ``assigned + maxexectime + grace``; (b) the executor's
liveness lease lapses: it renews the lease by heartbeats the leader answers,
and a lease lasts ``lease_s`` (< ``stale_s``) from the heartbeat's sending,
so an executor cut off from the leader stops before the leader may declare it
lost and the ledger hand its process to someone else.

Clocks: servers and executors read virtual time here; the ledger's time comes
from the leader's clock, so the scenario assumes synchronised server clocks
(a server whose clock runs ahead re-queues running processes early).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Protocol

from colonymesh.consensus import NotLeader, ProposalDropped
from colonymesh.consensus.types import Entry, EntryKind
from colonymesh.node.certs import encode_record
from colonymesh.node.envelope import seal_frame
from colonymesh.node.ledger.commands import (
    Admit,
    Claim,
    Close,
    ExecutorLost,
    Fail,
    RegisterExecutor,
    SubmitFunction,
    SubmitWorkflow,
    Tick,
    UnregisterExecutor,
)
from colonymesh.node.ledger.events import (
    CommandApplied,
    CommandRefused,
)
from colonymesh.node.ledger.ledger import Ledger
from colonymesh.simulations.colony_world import (
    GENESIS_MS,
    NOW_S,
    WORK_AVAILABLE,
    Answer,
    ColonyWorld,
    Heartbeat,
    HeartbeatAck,
    Member,
    Proposal,
    Redirect,
    RunRecord,
    WorkAvailable,
)
from colonymesh.simulations.engine import NodeIO
from colonymesh.simulations.kv import KvStore
from colonymesh.simulations.raft_server import RaftCluster, RaftServer


class LedgerStore(KvStore):
    """The ledger behind :class:`RaftServer`'s state-machine seam (``kv``)."""

    __slots__ = ("ledger",)
    world: ColonyWorld | None = None  # set on a per-run subclass (see :func:`store_for`)

    def __init__(self) -> None:
        super().__init__()
        world = type(self).world
        if world is None:
            raise RuntimeError("LedgerStore used without a world")
        self.ledger = world.new_ledger()

    def encode(self) -> bytes:
        return self.ledger.snapshot()

    @classmethod
    def decode(cls, blob: bytes) -> LedgerStore:
        store = cls()
        store.ledger.restore(blob)
        return store


def store_for(world: ColonyWorld) -> type[LedgerStore]:
    return type("BoundLedgerStore", (LedgerStore,), {"world": world, "__slots__": ()})


class ColonyServer(RaftServer):
    """A server peer: Raft + ledger, proposals from actors, ticks and liveness while leading."""

    def __init__(self, io: NodeIO, cluster: RaftCluster, world: ColonyWorld) -> None:
        self.store_cls = store_for(world)
        super().__init__(io, cluster)
        self.world = world
        self.member = world.member(io.index)
        self.seq = int((NOW_S + io.now) * 1_000_000)
        self.proposals: dict[tuple[bytes, int], int] = {}  # (author, seq) -> actor node
        self.tick_due = 0.0
        self.led_term = -1
        self.led_since = 0.0
        self.last_seen: dict[bytes, float] = {}
        self.lost_asked: dict[bytes, float] = {}

    @property
    def ledger(self) -> Ledger:
        kv = self.kv
        if not isinstance(kv, LedgerStore):
            raise RuntimeError("server state machine is not a ledger")
        return kv.ledger

    def next_deadline(self) -> float | None:
        d = super().next_deadline()
        if self.node is not None and self.is_leader():
            return self.tick_due if d is None else min(d, self.tick_due)
        return d

    def fire(self, now: float) -> None:
        super().fire(now)
        if self.node is not None and self.is_leader() and now >= self.tick_due:
            self._lead(now)

    def _seal(self, body: object, now: float) -> bytes:
        self.seq += 1
        return seal_frame(
            self.member.signer,
            self.world.colony.colony_id,
            body,
            seq=self.seq,
            timestamp_ms=int((NOW_S + now) * 1000),
        )

    def _lead(self, now: float) -> None:
        """The leader's duties: tick the ledger clock; declare silent executors lost."""
        _, term = self.role_term()
        if term != self.led_term:
            self.led_term = term
            self.led_since = now
            self.last_seen.clear()
            self.lost_asked.clear()
        timing = self.world.timing
        self.tick_due = now + timing.tick_interval_s
        frames = [self._seal(Tick(GENESIS_MS + int(now * 1000)), now)]
        world = self.world
        for key, executor in self.ledger.executors.items():
            if not executor.running and world.long_polling(key):
                self.last_seen[key] = now  # a parked executor's long-poll is open
                continue
            seen = self.last_seen.get(key, self.led_since)
            asked = self.lost_asked.get(key, -1e18)
            if now - seen >= timing.stale_s and now - asked >= timing.stale_s:
                self.lost_asked[key] = now
                frames.append(self._seal(ExecutorLost(key, "silent"), now))
        self.world.rewake(timing.rewake_after_s, timing.rewake_per_tick_max)
        self._send_wakes()
        node = self._node()
        for frame in frames:
            try:
                node.propose(frame)
            except (NotLeader, ProposalDropped):
                break
        self._drain(now)

    def deliver(self, src: int, msg: object, now: float) -> None:
        if isinstance(msg, Proposal):
            self._proposal(src, msg)
            self._drain(now)
        elif isinstance(msg, Heartbeat):
            if self.node is not None and self.is_leader():
                self.last_seen[self.world.member(src).keys.public_key] = now
                self.io.send(src, HeartbeatAck(msg.sent_at))
            else:
                self.io.send(src, Redirect(-1, self._hint()))
        else:
            super().deliver(src, msg, now)

    def _hint(self) -> int:
        lead = self._node().leader if self.node is not None else None
        return -1 if lead is None else self.cluster.index_of.get(lead, -1)

    def _send_wakes(self) -> None:
        for node, executor_type in self.world.take_wakes():
            message = WORK_AVAILABLE.get(executor_type)
            if message is None:
                message = WORK_AVAILABLE[executor_type] = WorkAvailable(executor_type)
            self.io.send(node, message)

    def _proposal(self, src: int, msg: Proposal) -> None:
        author = self.world.member(src).keys.public_key
        try:
            self._node().propose(msg.frame)
        except NotLeader:
            self.io.send(src, Redirect(msg.seq, self._hint()))
            return
        except ProposalDropped:
            self.io.send(src, Redirect(msg.seq, -1))
            return
        self.proposals[(author, msg.seq)] = src

    def _apply(self, e: Entry) -> None:
        self.applied = int(e.index)
        if e.kind != EntryKind.NORMAL or not e.data:
            return
        ledger = self.ledger
        events = ledger.apply(int(e.index), e.data)
        self.world.observe(int(e.index), events)
        if self.world.wakes:
            self._send_wakes()
        first = events[0]
        if not isinstance(first, CommandApplied | CommandRefused) or first.command is None:
            return
        dst = self.proposals.pop((first.command.author, first.command.seq), None)
        if dst is None:
            return
        if isinstance(first, CommandRefused):
            self.io.send(dst, Answer(first.command.seq, False, reason=first.reason))
            return
        funcname, assigned_ms = "", 0
        process = ledger.processes.get(first.subject)
        if first.kind == "ledger.claim" and process is not None:
            funcname, assigned_ms = process.spec.funcname, process.assigned_ms
        self.io.send(dst, Answer(first.command.seq, True, first.subject, "", funcname, assigned_ms))


# --- the clients ------------------------------------------------------------------


@dataclass(slots=True)
class _Request:
    frame: bytes
    seq: int
    deadline: float
    body: object
    redirected: bool = False


class _Client:
    """What every actor shares: seal once, send to the believed leader, resend the same frame."""

    __slots__ = ("io", "leader", "pending", "seq", "world")

    def __init__(self, io: NodeIO, world: ColonyWorld) -> None:
        self.io = io
        self.world = world
        self.seq = int((NOW_S + io.now) * 1_000_000)
        self.leader = io.rng.randrange(world.servers_n)
        self.pending: _Request | None = None

    @property
    def member(self) -> Member:
        return self.world.member(self.io.index)

    def request(self, body: object, now: float) -> None:
        self.seq += 1
        frame = seal_frame(
            self.member.signer,
            self.world.colony.colony_id,
            body,
            seq=self.seq,
            timestamp_ms=int((NOW_S + now) * 1000),
        )
        self.pending = _Request(frame, self.seq, 0.0, body)
        self._send(now)

    def _send(self, now: float) -> None:
        req = self.pending
        if req is None:
            return
        req.deadline = now + self.world.timing.request_timeout_s
        self.io.send(self.leader, Proposal(req.frame, req.seq), len(req.frame))

    def _redirected(self, now: float, hint: int) -> None:
        """Go to the hinted leader after a short pause (stale hints must not ping-pong)."""
        n = self.world.servers_n
        self.leader = hint if 0 <= hint < n else (self.leader + 1) % n
        if self.pending is not None:
            self.pending.deadline = now + self.world.timing.redirect_pause_s
            self.pending.redirected = True

    def client_message(self, msg: object, now: float) -> Answer | None:
        """Handle a server's message; returns the pending request's answer when it comes."""
        req = self.pending
        if isinstance(msg, Redirect):
            if req is not None and msg.seq == req.seq:
                self._redirected(now, msg.leader_hint)
            elif msg.leader_hint >= 0:
                self.leader = msg.leader_hint
            return None
        if isinstance(msg, Answer) and req is not None and msg.seq == req.seq:
            self.pending = None
            return msg
        return None

    def client_timer(self, now: float) -> None:
        req = self.pending
        if req is not None and now >= req.deadline:
            if not req.redirected:  # no answer: try the next server
                self.leader = (self.leader + 1) % self.world.servers_n
            req.redirected = False
            self._send(now)


class RunModel(Protocol):
    """What an executor asks the scenario: when to kill a run, how long a run takes."""

    maxexectime_s: float

    def draw_duration(self, rng: random.Random, funcname: str) -> float: ...


class ExecutorActor(_Client):
    """A simulated executor with one slot (see the module docs).

    States: ``dormant`` (parked in the world's idle stack: no timer, no
    heartbeat -- the cost of an idle executor is nothing), ``wake`` (woken by
    a :class:`WorkAvailable`: heartbeating until the leader answers, so the
    lease holds before it claims), ``admit``/``unregister``/``register``/
    ``claim``/``report`` (a request in flight), ``idle`` (a short back-off
    before claiming again) and ``running``. Heartbeats run in every state but
    ``dormant``.
    """

    __slots__ = (
        "acked_at",
        "claim_at",
        "heartbeat_due",
        "lease_until",
        "run",
        "run_ends",
        "run_fails",
        "run_timed_out",
        "scenario",
        "state",
    )

    def __init__(self, io: NodeIO, world: ColonyWorld, scenario: RunModel) -> None:
        super().__init__(io, world)
        self.scenario = scenario
        self.state = "boot"
        self.run: RunRecord | None = None
        self.run_ends = 0.0
        self.run_fails = False
        self.run_timed_out = False
        self.claim_at = 0.0
        self.lease_until = -1.0
        self.acked_at = io.now
        self.heartbeat_due = 0.0

    def start(self, now: float) -> None:
        if self.world.activated[self.io.index]:
            # A restarted executor hands back what the ledger still assigns it, then joins.
            self.state = "unregister"
            self.heartbeat_due = now
            self.request(UnregisterExecutor("restarted"), now)
        else:
            self._sleep()

    def _sleep(self) -> None:
        self.state = "dormant"
        self.world.park(self.io.index)

    def next_deadline(self) -> float | None:
        if self.state == "dormant":
            return None if self.pending is None else self.pending.deadline
        times = [self.heartbeat_due]
        if self.pending is not None:
            times.append(self.pending.deadline)
        if self.run is not None:
            times.append(min(self.run_ends, max(self.lease_until, self.io.now)))
        if self.state == "idle":
            times.append(self.claim_at)
        return min(times)

    def fire(self, now: float) -> None:
        timing = self.world.timing
        if self.state != "dormant" and now >= self.heartbeat_due:
            if now - self.acked_at > 2 * timing.heartbeat_s:  # no answer: try the next server
                self.leader = (self.leader + 1) % self.world.servers_n
                self.acked_at = now
            self.heartbeat_due = now + timing.heartbeat_s
            self.io.send(self.leader, Heartbeat(now))
        self.client_timer(now)
        if self.run is not None:
            if now >= self.lease_until:
                self._stop(now)  # cut off from the leader: it may give the process away
                self.world.runs_stopped += 1
                self.state = "idle"
                self.claim_at = now
            elif now >= self.run_ends:
                pid = self.run.process_id
                self._stop(now)
                if self.run_timed_out:
                    # As the real worker: killed at maxexectime, nothing reported;
                    # the ledger re-queues it on its own clock.
                    self.world.runs_timed_out += 1
                    self.state = "idle"
                    self.claim_at = now
                    return
                self.state = "report"
                if self.run_fails:
                    self.request(Fail(pid, ("the workload fails it",)), now)
                else:
                    self.request(Close(pid, json.dumps([pid[:8]])), now)
        if self.state == "idle" and self.pending is None and now >= self.claim_at:
            self._claim(now)

    def _claim(self, now: float) -> None:
        self.state = "claim"
        self.request(Claim(), now)

    def _stop(self, now: float) -> None:
        if self.run is not None:
            self.world.run_stopped(self.io.index, now)
            self.run = None

    def deliver(self, src: int, msg: object, now: float) -> None:
        if isinstance(msg, WorkAvailable):
            if self.state == "dormant" and self.pending is None:
                self.world.unpark(self.io.index)
                self.state = "wake"
                self.acked_at = now
                self.heartbeat_due = now  # heartbeat at once; claim when the lease holds
            return
        if isinstance(msg, HeartbeatAck):
            self.acked_at = now
            self.lease_until = max(self.lease_until, msg.sent_at + self.world.timing.lease_s)
            if self.state == "wake" and now < self.lease_until:
                if self.world.activated[self.io.index]:
                    self._claim(now)
                else:
                    self.world.activated[self.io.index] = 1
                    self.state = "admit"
                    self.request(Admit(encode_record(self.member.certificate)), now)
            return
        answer = self.client_message(msg, now)
        if answer is None:
            return
        state = self.state
        if not answer.applied and "not a member" in answer.reason:
            self.state = "admit"  # its Admit never committed (lost, or a crash before it)
            self.request(Admit(encode_record(self.member.certificate)), now)
            return
        if state == "unregister" or state == "admit":
            self._register(now)
        elif state == "register" or state == "report":
            self._claim(now)
        elif state == "claim":
            self._claimed(answer, now)

    def _register(self, now: float) -> None:
        self.state = "register"
        self.request(RegisterExecutor(self.member.certificate.name), now)

    def _claimed(self, answer: Answer, now: float) -> None:
        self.state = "idle"
        if not answer.applied:
            if "not a registered executor" in answer.reason:
                self._register(now)
                return
            if "no waiting process" in answer.reason:
                self._sleep()  # nothing to do: dormant until work is announced
                return
            self.claim_at = now + self.world.timing.claim_idle_s
            return
        pid = answer.subject
        maxexec = float(self.scenario.maxexectime_s)
        stop_at = (answer.assigned_ms - GENESIS_MS) / 1000 + maxexec
        if now >= stop_at or now >= self.lease_until:
            self.claim_at = now  # too late to run it safely; the ledger re-queues it
            return
        rng = self.io.rng
        duration = self.scenario.draw_duration(rng, answer.funcname)
        self.run = self.world.run_started(pid, self.io.index, now)
        self.run_fails = answer.funcname == "fail" or answer.funcname.startswith("fail-")
        self.run_ends = now + duration
        self.run_timed_out = self.run_ends > stop_at
        if self.run_timed_out:
            self.run_ends = stop_at
        self.state = "running"


@dataclass(slots=True)
class Submission:
    body: SubmitFunction | SubmitWorkflow
    expect: str  # "ok" | "fail" | "mixed"
    at: float = 0.0  # arrival time (virtual seconds): not submitted before


@dataclass(slots=True)
class SubmitterState:
    """The submitter's durable progress: it resumes after a crash."""

    queue: list[Submission] = field(default_factory=list)
    next_index: int = 0


class SubmitterActor(_Client):
    """Submits its queue in order, one submission at a time, each not before its arrival."""

    __slots__ = ("due", "gap_s", "state")

    def __init__(self, io: NodeIO, world: ColonyWorld, state: SubmitterState, gap_s: float) -> None:
        super().__init__(io, world)
        self.state = state
        self.gap_s = gap_s
        self.due = 0.0

    def start(self, now: float) -> None:
        self.due = now

    def _due(self) -> float:
        return max(self.due, self.state.queue[self.state.next_index].at)

    def next_deadline(self) -> float | None:
        if self.pending is not None:
            return self.pending.deadline
        if self.state.next_index < len(self.state.queue):
            return self._due()
        return None

    def fire(self, now: float) -> None:
        self.client_timer(now)
        if (
            self.pending is None
            and self.state.next_index < len(self.state.queue)
            and now >= self._due()
        ):
            self.request(self.state.queue[self.state.next_index].body, now)

    def deliver(self, src: int, msg: object, now: float) -> None:
        answer = self.client_message(msg, now)
        if answer is None:
            return
        sub = self.state.queue[self.state.next_index]
        if answer.applied:
            self.world.acked[answer.subject] = sub.expect
            self.world.arrived_at[answer.subject] = sub.at
            if isinstance(sub.body, SubmitWorkflow):
                self.world.workflows_acked.append(answer.subject)
            self.state.next_index += 1
        # A refusal (e.g. the frame's replay was refused after a lost answer) is
        # retried with a fresh frame: submissions are idempotent by spec id.
        self.due = now + self.gap_s * self.io.rng.random() * 2
