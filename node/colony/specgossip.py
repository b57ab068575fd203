"""Submissions by gossip: the path that works when a submitter cannot reach the leader.

What it owns: the gossip topic :data:`SPECS_TOPIC` for signed submissions,
the server peers' intake of it (:class:`SpecIntake`) and the relay any
``node run`` peer offers members that run no gossip themselves
(:class:`SpecRelay`, ``colony.relay_spec``).

How it works. A submission is the submitter's own sealed envelope frame of a
:class:`~colonymesh.node.ledger.commands.SubmitFunction` or
:class:`~colonymesh.node.ledger.commands.SubmitWorkflow` -- the very frame the
direct path sends to the leader -- so nobody on the way can alter it, and
its id (``spec_id``/``workflow_id`` of the spec, the submitter's key and the
nonce) is known to the submitter before anything commits. The client sends
it to the leader first (the fast path); if the leader cannot be reached, it
publishes the frame on gossip (or asks a connected peer to publish it), and
waits for the id to appear at any server it can read from.

Every server keeps gossiped submissions it has not seen applied in a bounded
pending table (by id, at most :data:`PENDING_MAX`, each for
:data:`PENDING_TTL_S`). Only the leader proposes them, one at a time, and
drops an entry as soon as the ledger holds the id. A new leader proposes what
is still pending, so a leader dying between receipt and commit loses
nothing. Appending exactly once: an id already in the ledger is never
proposed; if two leaders in quick succession both append the same frame, the
ledger applies it once (the replay window refuses the second copy of a
frame, and the same id creates no second process).

Invariants: nothing from the topic reaches the log unless it decodes as a
submission of this colony, its signature verifies and its spec parses; the
ledger re-checks everything (author's role, signature) on apply.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import trio

from colonymesh.node.colony.protocol import FRAME_BYTES_MAX
from colonymesh.node.envelope import check_signature, decode_frame, message
from colonymesh.node.errors import ColonymeshError
from colonymesh.node.ledger.commands import SubmitFunction, SubmitWorkflow
from colonymesh.node.schema import limit
from colonymesh.node.spec import parse_function_spec, parse_workflow_spec, spec_id, workflow_id

log = logging.getLogger("colonymesh.node.colony")

SPECS_TOPIC = "colony.specs"
PENDING_MAX = 10_000
PENDING_TTL_S = 120.0
SUBMISSION_BYTES_MAX = 1024 * 1024  # a gossip message's cap


@message("colony.relay_spec")
@dataclass(frozen=True, slots=True)
class RelaySpec:
    """A member asks a peer to publish its own sealed submission on the specs topic."""

    frame: bytes = field(metadata=limit(SUBMISSION_BYTES_MAX))


@message("colony.relayed")
@dataclass(frozen=True, slots=True)
class Relayed:
    published: bool
    reason: str = field(default="", metadata=limit(1024))


class NotASubmission(ColonymeshError):
    """A frame on the specs topic that is no valid submission of this colony."""


def submission_id(frame: bytes, colony_id: bytes) -> tuple[str, bytes]:
    """The process or workflow id a sealed submission will have, and its author's key."""
    try:
        decoded = decode_frame(frame, FRAME_BYTES_MAX, colony_id)
        check_signature(decoded)
        body = decoded.envelope.body
        author = decoded.envelope.sender
        if isinstance(body, SubmitFunction):
            return spec_id(
                parse_function_spec(json.loads(body.spec_json)), author, body.nonce
            ), author
        if isinstance(body, SubmitWorkflow):
            workflow = parse_workflow_spec(json.loads(body.workflow_json))
            return workflow_id(workflow, author, body.nonce), author
    except (ColonymeshError, ValueError) as error:
        raise NotASubmission(f"not a valid submission: {error}") from None
    raise NotASubmission(f"a {decoded.envelope.kind} is no submission")


@dataclass(slots=True)
class IntakeStatistics:
    received: int = 0  # valid submissions offered (gossip or relay)
    refused: int = 0  # frames that are no valid submission
    proposed: int = 0  # proposals this server made as leader
    applied: int = 0  # of those, applied by the ledger
    already: int = 0  # dropped because the ledger held the id already


class SpecIntake:
    """A server peer's side: pending gossiped submissions, proposed once by the leader."""

    def __init__(self, server: Any, gossip: Any) -> None:
        self.server = server  # LedgerServer
        self.gossip = gossip
        self.colony_id: bytes = server.ledger.colony.colony_id
        self.pending: dict[str, tuple[bytes, float]] = {}  # id -> (frame, received at)
        self.stats = IntakeStatistics()
        self._wake = trio.Event()

    def _known(self, submission: str) -> bool:
        ledger = self.server.ledger
        return submission in ledger.processes or submission in ledger.workflows

    def offer(self, frame: bytes) -> str | None:
        """Take a submission from gossip or a relay; its id, or None if refused."""
        try:
            submission, _ = submission_id(frame, self.colony_id)
        except NotASubmission as error:
            self.stats.refused += 1
            log.info("specs topic: %s", error)
            return None
        self.stats.received += 1
        if self._known(submission) or submission in self.pending:
            return submission
        if len(self.pending) >= PENDING_MAX:
            oldest = min(self.pending, key=lambda k: self.pending[k][1])
            del self.pending[oldest]
        self.pending[submission] = (frame, trio.current_time())
        self._wake.set()
        return submission

    def _delivered(self, delivered: Any) -> None:
        self.offer(delivered.data)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.gossip.subscribe(SPECS_TOPIC, self._delivered)
        task_status.started()
        while True:
            with trio.move_on_after(0.25):  # also catch becoming leader with work pending
                await self._wake.wait()
            self._wake = trio.Event()
            await self._drain()

    async def _drain(self) -> None:
        now = trio.current_time()
        for submission, (_, since) in list(self.pending.items()):
            if self._known(submission):
                self.stats.already += 1
                del self.pending[submission]
            elif now - since > PENDING_TTL_S:
                del self.pending[submission]
        if not self.server.is_leader:
            return
        for submission, (frame, _) in sorted(self.pending.items(), key=lambda kv: kv[1][1]):
            if self._known(submission):
                self.pending.pop(submission, None)
                continue
            self.stats.proposed += 1
            answer = await self.server.propose_frame(frame)
            if answer.not_leader or answer.retry:
                return  # keep it: the next leader (or the next round) proposes it
            self.pending.pop(submission, None)
            if answer.applied:
                self.stats.applied += 1
            else:
                log.info("gossiped submission %s refused: %s", submission[:12], answer.reason)


class SpecRelay:
    """Every node's side: publish a member's own sealed submission on its behalf."""

    def __init__(self, peer: Any, gossip: Any, intake: SpecIntake | None = None) -> None:
        self.peer = peer
        self.gossip = gossip
        self.intake = intake
        self.relayed = 0
        peer.on("colony.relay_spec", self._relay)

    async def _relay(self, incoming: Any) -> Relayed:
        frame: bytes = incoming.body.frame
        colony_id = self.peer.config.membership.colony.colony_id
        try:
            _, author = submission_id(frame, colony_id)
        except NotASubmission as error:
            return Relayed(False, str(error))
        if author != incoming.envelope.sender:
            return Relayed(False, "only the submitter's own submissions are relayed")
        if self.intake is not None:  # a server's own publications are not delivered to it
            self.intake.offer(frame)
        try:
            await self.gossip.publish(SPECS_TOPIC, frame)
        except ColonymeshError as error:
            return Relayed(self.intake is not None, f"not published: {error}")
        self.relayed += 1
        return Relayed(True)
