"""A member's handle on the colony ledger: propose commands, read processes, long-poll.

Any peer can use it. It seals commands with the member's key (so replicas can
verify the author), sends them to the server it believes leads, follows
leader hints, and fails over to the next server when one is unreachable.
Reads go to any server. The client never retries a command it may have
delivered with a *new* sequence number unless the command is idempotent
(submissions are, by spec id and nonce); callers of non-idempotent commands
(claims) reconcile by reading instead.

Failover: while the outcome of a command is unknown (the server died or timed
out after it may have appended it, or it answered "not committed, retry"),
the client re-sends the *same* signed frame to the next server. The ledger
spends a frame's sequence number the first time it meets it (whether the
command then applies or is refused), so a retry of a frame that was already
delivered is refused as a replay: the client reports that as delivered with
its answer lost (``Proposed.applied`` with ``reason == LOST_ANSWER``; the
first delivery may have been applied *or refused*), and for idempotent
commands proposes the body once more, freshly sealed, to learn the outcome;
callers of other commands reconcile by reading the ledger. A server without a live connection gets a short dial deadline,
so a dead server costs seconds, not the whole timeout.

Finding the servers without configuration: the client keeps a
:class:`~colonymesh.node.colony.discovery.ServerDirectory` (the node's own,
fed by gossip and the DHT, or a private one) and tries the leader it
announces, then its voters, before the configured servers. When it knows no
server that answers, it asks the peers it is connected to
(``colony.where_leader``) for their newest announcement and verifies it
itself, so a member that knows only a bootstrap peer -- not a server --
finds the leader, and finds the next one when the leader dies.
"""

from __future__ import annotations

import json
import logging
import os
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from colonymesh.node.certs import encode_record
from colonymesh.node.colony.discovery import LeaderIs, ServerDirectory, WhereLeader
from colonymesh.node.colony.protocol import (
    ClaimAnswer,
    ClaimWork,
    GetProcess,
    GetStatus,
    GetWorkflow,
    Heartbeat,
    HeartbeatAck,
    ListProcesses,
    Propose,
    Proposed,
    View,
    WaitWork,
)
from colonymesh.node.colony.scheduler import ListCrons, ListGenerators
from colonymesh.node.colony.specgossip import (
    SPECS_TOPIC,
    NotASubmission,
    Relayed,
    RelaySpec,
    submission_id,
)
from colonymesh.node.envelope import EnvelopeSealer
from colonymesh.node.errors import ColonymeshError
from colonymesh.node.identity import Signer
from colonymesh.node.ledger.commands import (
    AddChild,
    AddCron,
    AddGenerator,
    Admit,
    PackGenerator,
    RegisterExecutor,
    RegisterFunction,
    RemoveCron,
    RemoveGenerator,
    RunCron,
    SetAttribute,
    SubmitFunction,
    SubmitWorkflow,
)
from colonymesh.node.peer.peer import Peer

log = logging.getLogger("colonymesh.node.colony")


_LEDGER_SEALERS: weakref.WeakKeyDictionary[Peer, EnvelopeSealer] = weakref.WeakKeyDictionary()


def ledger_sealer(peer: Peer) -> EnvelopeSealer:
    """The one sealer of ``peer``'s ledger commands, shared by all its clients and duties.

    The ledger keeps one replay window per author and refuses a sequence
    number that trails the newest it applied by more than the window. A
    sealer starts counting at its creation time in microseconds, so a second
    sealer of the same key made later (an executor's or a file client on a
    server node, whose ticks are sealed too) would get the first one's
    commands refused from its first command on. One sealer per peer keeps
    every author's numbers in one increasing sequence.
    """
    sealer = _LEDGER_SEALERS.get(peer)
    if sealer is None:
        colony_id = peer.config.membership.colony.colony_id
        sealer = EnvelopeSealer(Signer(peer.config.keys), colony_id, time.time())
        _LEDGER_SEALERS[peer] = sealer
    return sealer


PROPOSE_OVERHEAD_BYTES = 1024  # the request envelope around a sealed command
DIAL_TIMEOUT_S = 3.0  # dialling a server we hold no connection to (it may be dead)
DISCOVER_EVERY_S = 0.25  # ask connected peers where the leader is at most this often
DISCOVER_TIMEOUT_S = 1.0
# Commands that give the same result when applied twice: safe to re-seal.
IDEMPOTENT = (
    SubmitFunction,
    SubmitWorkflow,
    AddChild,
    Admit,
    RegisterExecutor,
    RegisterFunction,
    SetAttribute,
    AddCron,
    AddGenerator,
)
# How the ledger refuses a frame whose sequence number it already applied
# (colonymesh.node.envelope.ReplayWindow): the frame was applied before.
_REPLAYED = "was already accepted"
LOST_ANSWER = "delivered before (applied or refused); its answer was lost with the server"


class Publisher(Protocol):
    """What the client needs of a gossip service: publish a message on a topic."""

    async def publish(self, topic: str, data: bytes) -> bytes: ...


class ColonyUnavailable(ColonymeshError):
    """No server peer answered in time (none reachable, or no leader elected)."""


class CommandRefused(ColonymeshError):
    """The ledger refused the command; the message says why."""


@dataclass(slots=True)
class ClientStatistics:
    """How often failover paths ran (``statistics()`` of the executor and the tests)."""

    proposed: int = 0
    resent: int = 0  # the same frame sent again after a failure or a not-committed answer
    lost_answers: int = 0  # a re-sent frame turned out delivered before
    discoveries: int = 0  # rounds of asking connected peers where the leader is
    gossiped: int = 0  # submissions published on the specs topic (leader unreachable)


class ColonyClient:
    def __init__(
        self,
        peer: Peer,
        servers: Sequence[str] = (),
        *,
        timeout_s: float = 15.0,
        directory: ServerDirectory | None = None,
        gossip: Publisher | None = None,
        direct_timeout_s: float | None = None,
    ) -> None:
        self.peer = peer
        self.servers = list(servers)
        self.directory = directory or ServerDirectory(peer.config.membership)
        self.gossip = gossip
        # How long a submission tries the leader before it goes by gossip.
        self.direct_timeout_s = direct_timeout_s if direct_timeout_s is not None else timeout_s
        self._directory_seen = -1
        self._discovered_at = -float("inf")
        self.timeout_s = timeout_s
        self._leader: str | None = None
        self.stats = ClientStatistics()
        self._sealer = ledger_sealer(peer)  # shared: see ledger_sealer

    # --- commands --------------------------------------------------------------

    def seal(self, body: object) -> bytes:
        return self._sealer.seal(body, time.time())

    async def propose(self, body: object) -> Proposed:
        """Deliver one sealed command to the leader; its outcome (applied or refused).

        ``applied`` with ``reason == LOST_ANSWER`` and no subject: the command
        reached the ledger once (applied or refused) but the server did not
        live to say which (only for commands that are not idempotent; read the
        ledger to reconcile; see the module docs).
        A command too large for any server to take raises :class:`CommandRefused`.
        """
        answer = await self._deliver(self.seal(body))
        if answer.applied and answer.reason == LOST_ANSWER and isinstance(body, IDEMPOTENT):
            answer = await self._deliver(self.seal(body))
        return answer

    async def claim_work(
        self, claim: object, wait_s: float, report: bytes = b""
    ) -> tuple[Proposed, Proposed | None]:
        """Claim through the leader's parking (``colony.claim_work``); both outcomes.

        Returns the claim's outcome (as :meth:`propose`) and the carried
        ``report``'s (an already sealed close or fail, proposed ahead of the
        claim), None if no server answered for it. On failover the same two
        frames are re-sent; the ledger spends each sequence number once.
        """
        frame = self.seal(claim)
        answer, carried = await self._deliver_request(
            frame, lambda: ClaimWork(frame, wait_s, report), self.timeout_s + wait_s, len(report)
        )
        return answer, carried

    async def _deliver(self, frame: bytes, timeout_s: float | None = None) -> Proposed:
        answer, _ = await self._deliver_request(frame, lambda: Propose(frame), timeout_s)
        return answer

    async def _deliver_request(
        self,
        frame: bytes,
        request: Callable[[], object],
        timeout_s: float | None = None,
        extra_bytes: int = 0,
    ) -> tuple[Proposed, Proposed | None]:
        cap = self.peer.config.messaging.frame_bytes_max - PROPOSE_OVERHEAD_BYTES - extra_bytes
        if len(frame) > cap:  # no server could take it: refuse now rather than retry
            raise CommandRefused(f"command of {len(frame)} bytes exceeds the cap of {cap}")
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        carried: Proposed | None = None
        deadline = trio.current_time() + timeout_s
        candidates = self._candidates()
        last_error = "no server answered"
        maybe_delivered = False
        self.stats.proposed += 1
        while trio.current_time() < deadline:
            server = candidates.pop(0) if candidates else None
            if server is None:
                await self._discover(deadline)
                await trio.sleep(0.05)  # an election may be under way
                candidates = self._candidates()
                continue
            try:
                await self._reach(server, deadline)
            except ColonymeshError as error:
                last_error = f"{server[-8:]}: {error}"
                if self._leader == server:
                    self._leader = None
                continue
            if maybe_delivered:
                self.stats.resent += 1
            try:
                answer = await self.peer.request(
                    server, request(), timeout=max(0.1, deadline - trio.current_time())
                )
            except ColonymeshError as error:
                last_error = f"{server[-8:]}: {error}"
                maybe_delivered = True
                if self._leader == server:
                    self._leader = None
                continue
            if isinstance(answer, ClaimAnswer):
                carried = answer.report if answer.report is not None else carried
                answer = answer.claim
            if not isinstance(answer, Proposed):
                last_error = f"{server[-8:]} answered {type(answer).__name__}"
                continue
            if answer.not_leader:
                hint = answer.leader_hint
                self._leader = hint or None
                if hint:
                    if hint not in self.servers:  # a server we had not met: learn it
                        self.servers.append(hint)
                    for address in answer.leader_addrs:
                        self.peer.add_address(hint, address)
                    candidates.insert(0, hint)
                continue
            self._leader = server
            if answer.retry:  # not committed (leader changed, or slow): same frame again
                last_error = f"{server[-8:]}: {answer.reason}"
                maybe_delivered = True
                await trio.sleep(0.05)
                candidates = self._candidates()
                continue
            if not answer.applied and maybe_delivered and _REPLAYED in answer.reason:
                self.stats.lost_answers += 1
                return Proposed(True, reason=LOST_ANSWER), carried
            return answer, carried
        raise ColonyUnavailable(f"command not delivered within {timeout_s:g} s ({last_error})")

    async def _reach(self, server: str, deadline: float) -> None:
        """Dial ``server`` with a short deadline unless a connection is up."""
        if self.peer.connections.connection_to(server) is None:
            await self.peer.connections.connect(
                server, min(deadline, trio.current_time() + DIAL_TIMEOUT_S)
            )

    async def run(self, body: object) -> str:
        """Propose ``body``; return its subject (process/workflow id), or raise its refusal."""
        answer = await self.propose(body)
        if not answer.applied:
            raise CommandRefused(answer.reason)
        return answer.subject

    async def admit_self(self) -> None:
        """Make sure the ledger knows our certificate (idempotent)."""
        certificate = self.peer.certificate
        if certificate is not None:
            await self.run(Admit(encode_record(certificate)))

    async def submit(self, spec: dict[str, Any] | str) -> str:
        text = spec if isinstance(spec, str) else json.dumps(spec)
        return await self._submit(SubmitFunction(text, os.urandom(16)))

    async def submit_workflow(self, workflow: dict[str, Any] | str) -> str:
        text = workflow if isinstance(workflow, str) else json.dumps(workflow)
        return await self._submit(SubmitWorkflow(text, os.urandom(16)))

    async def _submit(self, body: SubmitFunction | SubmitWorkflow) -> str:
        """The leader first (fast path); by gossip when it cannot be reached (``specgossip``)."""
        frame = self.seal(body)
        try:
            answer = await self._deliver(frame, self.direct_timeout_s)
        except ColonyUnavailable as error:
            return await self._submit_by_gossip(frame, isinstance(body, SubmitWorkflow), error)
        if answer.applied and answer.reason == LOST_ANSWER:
            answer = await self._deliver(self.seal(body))  # idempotent by id: ask once more
        if not answer.applied:
            raise CommandRefused(answer.reason)
        return answer.subject

    async def _submit_by_gossip(self, frame: bytes, workflow: bool, cause: Exception) -> str:
        """Publish the same sealed frame on the specs topic; its id once a server shows it."""
        try:
            submission, _ = submission_id(frame, self.peer.config.membership.colony.colony_id)
        except NotASubmission as error:
            raise CommandRefused(str(error)) from None
        log.info("leader unreachable (%s): submitting %s by gossip", cause, submission[:12])
        if not await self._publish(frame):
            raise ColonyUnavailable(f"leader unreachable ({cause}) and no peer took the submission")
        self.stats.gossiped += 1
        deadline = trio.current_time() + self.timeout_s
        while trio.current_time() < deadline:
            try:
                view = await (self.workflow(submission) if workflow else self.process(submission))
            except ColonyUnavailable:
                view = None
            if view is not None:
                return submission
            await trio.sleep(0.1)
        raise ColonyUnavailable(f"submission {submission} gossiped but not seen committed")

    async def _publish(self, frame: bytes) -> bool:
        """On our own gossip, else through the first connected peer that relays it."""
        if self.gossip is not None:
            try:
                await self.gossip.publish(SPECS_TOPIC, frame)
                return True
            except ColonymeshError as error:
                log.info("specs not published on our gossip: %s", error)
        for peer_id in self.peer.connected_peers():
            try:
                answer = await self.peer.request(peer_id, RelaySpec(frame), timeout=2.0)
            except ColonymeshError:
                continue
            if isinstance(answer, Relayed) and answer.published:
                return True
        return False

    # --- reads ------------------------------------------------------------------

    def _candidates(self) -> list[str]:
        """The leader we believe in first, then the announced group, then connected servers."""
        self._follow_directory()
        announced = self.directory.servers()
        ordered = [self._leader] if self._leader in self.servers else []
        ordered += [s for s in announced if s not in ordered]
        rest = [s for s in self.servers if s not in ordered]
        connected = [s for s in rest if self.peer.connections.connection_to(s) is not None]
        return [*ordered, *connected, *(s for s in rest if s not in connected)]

    def _follow_directory(self) -> None:
        """Learn the servers and addresses of a newer announcement; believe its leader."""
        directory = self.directory
        if directory.version == self._directory_seen:
            return
        self._directory_seen = directory.version
        for peer_id, address in directory.addresses():
            self.peer.add_address(peer_id, address)
        for server in directory.servers():
            if server not in self.servers:
                self.servers.append(server)
        if directory.leader is not None:
            self._leader = directory.leader

    async def _discover(self, deadline: float) -> None:
        """Ask connected peers for their newest announcement (rate-limited; see module docs)."""
        now = trio.current_time()
        if now - self._discovered_at < DISCOVER_EVERY_S:
            return
        self._discovered_at = now
        self.stats.discoveries += 1
        timeout = max(0.05, min(DISCOVER_TIMEOUT_S, deadline - now))
        peers = [p for p in self.peer.connected_peers() if p != self.peer.peer_id][:16]

        async def ask(peer_id: str) -> None:
            try:
                answer = await self.peer.request(peer_id, WhereLeader(), timeout=timeout)
            except ColonymeshError:
                return
            if isinstance(answer, LeaderIs) and answer.frame:
                self.directory.observe(answer.frame, answer.certificate)

        async with trio.open_nursery() as nursery:
            for peer_id in peers:
                nursery.start_soon(ask, peer_id)

    async def query(self, body: object, *, wait_s: float = 0.0) -> View:
        deadline = trio.current_time() + self.timeout_s + wait_s
        last_error = ""
        while trio.current_time() < deadline:
            candidates = self._candidates()
            if not candidates:
                await self._discover(deadline)
            for server in candidates:
                try:
                    await self._reach(server, deadline)
                    answer = await self.peer.request(
                        server, body, timeout=max(0.1, deadline - trio.current_time())
                    )
                except ColonymeshError as error:
                    last_error = str(error)
                    continue
                if isinstance(answer, View):
                    return answer
            if candidates:  # none answered: the group may have moved
                await self._discover(deadline)
            await trio.sleep(0.05)
        raise ColonyUnavailable(f"no server answered within {self.timeout_s:g} s ({last_error})")

    async def process(self, process_id: str, *, wait_final_s: float = 0.0) -> dict[str, Any] | None:
        view = await self.query(GetProcess(process_id, wait_final_s), wait_s=wait_final_s)
        return json.loads(view.json) if view.found else None

    async def workflow(
        self, workflow_id: str, *, wait_final_s: float = 0.0
    ) -> dict[str, Any] | None:
        view = await self.query(GetWorkflow(workflow_id, wait_final_s), wait_s=wait_final_s)
        return json.loads(view.json) if view.found else None

    async def wait(self, process_id: str, timeout_s: float | None = None) -> dict[str, Any]:
        """The process once SUCCESS, FAILED or CANCELLED (ColonyOS waits for SUCCESS only)."""
        deadline = None if timeout_s is None else trio.current_time() + timeout_s
        while True:
            remaining = (
                25.0 if deadline is None else max(0.0, min(25.0, deadline - trio.current_time()))
            )
            view = await self.process(process_id, wait_final_s=remaining)
            if view is not None and view["state"] in ("success", "failed", "cancelled"):
                return view
            if deadline is not None and trio.current_time() >= deadline:
                raise trio.TooSlowError(f"process {process_id} not final after {timeout_s} s")

    async def wait_workflow(
        self, workflow_id: str, timeout_s: float | None = None
    ) -> dict[str, Any]:
        deadline = None if timeout_s is None else trio.current_time() + timeout_s
        while True:
            remaining = (
                25.0 if deadline is None else max(0.0, min(25.0, deadline - trio.current_time()))
            )
            view = await self.workflow(workflow_id, wait_final_s=remaining)
            if view is not None and view["state"] in ("success", "failed", "cancelled"):
                return view
            if deadline is not None and trio.current_time() >= deadline:
                raise trio.TooSlowError(f"workflow {workflow_id} not final after {timeout_s} s")

    async def processes(
        self, state: str = "", executor_type: str = "", limit: int = 100
    ) -> list[dict[str, Any]]:
        view = await self.query(ListProcesses(state, executor_type, limit))
        result: list[dict[str, Any]] = json.loads(view.json)
        return result

    async def status(self) -> dict[str, Any]:
        view = await self.query(GetStatus())
        result: dict[str, Any] = json.loads(view.json)
        return result

    async def heartbeat(self, timeout_s: float) -> HeartbeatAck | None:
        """One heartbeat to the leader (following hints); its ack, or None if none came.

        Only a leader's ack counts (``ack.leader``): the executor's lease
        (``worker.py``) is renewed by nothing else. Bounded by ``timeout_s``
        overall, so a silent leader costs one lease check, not the client's
        command timeout.
        """
        deadline = trio.current_time() + timeout_s
        candidates = self._candidates()
        if not candidates:
            await self._discover(deadline)
            candidates = self._candidates()
        while candidates and trio.current_time() < deadline:
            server = candidates.pop(0)
            try:
                with trio.fail_at(deadline):
                    await self._reach(server, deadline)
                answer = await self.peer.request(
                    server, Heartbeat(), timeout=max(0.01, deadline - trio.current_time())
                )
            except (ColonymeshError, trio.TooSlowError):
                if self._leader == server:
                    self._leader = None
                continue
            if not isinstance(answer, HeartbeatAck):
                continue
            if answer.leader:
                self._leader = server
                return answer
            hint = answer.leader_hint
            if hint and hint != server:
                self._learn_leader(hint, answer.leader_addrs)
                candidates = [hint, *(c for c in candidates if c != hint)]
        return None

    def _learn_leader(self, hint: str, addresses: Sequence[str]) -> None:
        """Believe ``hint`` leads; remember it (and where it listens) if new to us."""
        self._leader = hint
        if hint not in self.servers:
            self.servers.append(hint)
        for address in addresses:
            self.peer.add_address(hint, address)

    async def wait_work(self, executor_type: str, wait_s: float) -> bool:
        return (await self.query(WaitWork(executor_type, wait_s), wait_s=wait_s)).found

    # --- crons and generators (node/ledger/crons.py, generators.py) -------------

    async def add_cron(
        self,
        name: str,
        workflow: dict[str, Any] | str,
        *,
        cron_expression: str = "",
        interval_s: int = 0,
        wait_for_previous: bool = False,
    ) -> str:
        """Add a cron (a six-field expression with seconds, or an interval); its id."""
        text = workflow if isinstance(workflow, str) else json.dumps(workflow)
        body = AddCron(name, text, os.urandom(16), cron_expression, interval_s, wait_for_previous)
        return await self.run(body)

    async def remove_cron(self, cron: str) -> str:
        """Remove a cron by id or name (only its owner may)."""
        return await self.run(RemoveCron(cron))

    async def run_cron(self, cron: str) -> str:
        """Start a run of the cron now (its schedule stays); the new workflow's id."""
        return await self.run(RunCron(cron))

    async def crons(self, cron: str = "") -> list[dict[str, Any]]:
        """Every cron's view, or the one named (id or name); [] if there is none such."""
        view = await self.query(ListCrons(cron))
        return list(json.loads(view.json)) if view.found else []

    async def add_generator(
        self, name: str, workflow: dict[str, Any] | str, *, trigger: int, timeout_s: int = 0
    ) -> str:
        """Add a generator: a run per ``trigger`` packed args, or after ``timeout_s``; its id."""
        text = workflow if isinstance(workflow, str) else json.dumps(workflow)
        return await self.run(AddGenerator(name, text, os.urandom(16), trigger, timeout_s))

    async def pack_generator(self, generator: str, arg: str) -> str:
        """Append one argument to a generator (by id or name); the generator's id."""
        return await self.run(PackGenerator(generator, arg))

    async def remove_generator(self, generator: str) -> str:
        return await self.run(RemoveGenerator(generator))

    async def generators(self, generator: str = "") -> list[dict[str, Any]]:
        view = await self.query(ListGenerators(generator))
        return list(json.loads(view.json)) if view.found else []
