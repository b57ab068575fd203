"""The leader's membership decisions and the spec intake, against stand-in servers (no I/O)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from colonymesh.consensus.confchange import ConfChange, ConfChangeOp
from colonymesh.consensus.types import ConfState, NodeId
from colonymesh.node.certs import create_colony
from colonymesh.node.colony.membership import GroupKeeper
from colonymesh.node.colony.protocol import Proposed
from colonymesh.node.colony.specgossip import NotASubmission, SpecIntake, submission_id
from colonymesh.node.envelope import seal_frame
from colonymesh.node.identity import KeyPair, Signer
from colonymesh.node.ledger.commands import SubmitFunction
from colonymesh.node.spec import parse_function_spec, spec_id

OWNER = KeyPair.generate()
COLONY = create_colony(OWNER, "group", 1_700_000_000)


@dataclass
class Status:
    id: str
    conf: ConfState
    commit: int = 10
    progress: tuple[tuple[str, int], ...] = ()


@dataclass
class FakeServer:
    peer: Any = None
    driver: Any = None


def keeper(spares: list[str], target: int = 3) -> GroupKeeper:
    return GroupKeeper(FakeServer(), lambda: spares, voters_target=target, voter_dead_s=5.0)


def seen(k: GroupKeeper, ages: dict[str, float]) -> None:
    now = trio.current_time()
    for member, age in ages.items():
        k._last_ok[member] = now - age


async def test_a_dead_voter_is_replaced_add_first_then_removed() -> None:
    voters = ConfState(voters=(NodeId("a"), NodeId("b"), NodeId("c")))
    k = keeper(["d"])
    seen(k, {"a": 0, "b": 9, "c": 0})
    assert k._next_change(Status("a", voters)) == ConfChange(ConfChangeOp.ADD_LEARNER, NodeId("d"))
    learning = ConfState(voters=voters.voters, learners=(NodeId("d"),))
    seen(k, {"d": 0})
    behind = Status("a", learning, commit=10, progress=(("d", 4),))
    assert k._next_change(behind) is None  # it catches up first
    caught_up = Status("a", learning, commit=10, progress=(("d", 10),))
    assert k._next_change(caught_up) == ConfChange(ConfChangeOp.ADD_VOTER, NodeId("d"))
    four = ConfState(voters=(NodeId("a"), NodeId("b"), NodeId("c"), NodeId("d")))
    assert k._next_change(Status("a", four)) == ConfChange(ConfChangeOp.REMOVE_NODE, NodeId("b"))
    three = ConfState(voters=(NodeId("a"), NodeId("c"), NodeId("d")))
    assert k._next_change(Status("a", three)) is None  # whole again


async def test_no_spare_no_change_and_a_dead_learner_is_dropped() -> None:
    voters = ConfState(voters=(NodeId("a"), NodeId("b"), NodeId("c")))
    k = keeper([])
    seen(k, {"a": 0, "b": 9, "c": 0})
    assert k._next_change(Status("a", voters)) is None  # nobody to add: keep the 2 of 3
    learning = ConfState(voters=voters.voters, learners=(NodeId("d"),))
    seen(k, {"d": 9})
    assert k._next_change(Status("a", learning)) == ConfChange(
        ConfChangeOp.REMOVE_NODE, NodeId("d")
    )


async def test_a_small_group_grows_to_its_target() -> None:
    k = keeper(["b", "c"], target=3)
    one = Status("a", ConfState(voters=(NodeId("a"),)))
    assert k._next_change(one) == ConfChange(ConfChangeOp.ADD_LEARNER, NodeId("b"))


# --- the spec intake ----------------------------------------------------------------


@dataclass
class Ledger:
    colony: Any = COLONY
    processes: dict[str, Any] = field(default_factory=dict)
    workflows: dict[str, Any] = field(default_factory=dict)


class IntakeServer:
    def __init__(self) -> None:
        self.ledger = Ledger()
        self.is_leader = False
        self.proposed: list[bytes] = []

    async def propose_frame(self, frame: bytes) -> Proposed:
        self.proposed.append(frame)
        pid, _ = submission_id(frame, COLONY.colony_id)
        self.ledger.processes[pid] = object()
        return Proposed(True, subject=pid)


SUBMITTER = KeyPair.generate()
SPEC = {"funcname": "f", "args": [1], "conditions": {"executortype": "x"}}


def submission(seq: int = 1, nonce: bytes = b"n" * 16) -> bytes:
    body = SubmitFunction(json.dumps(SPEC), nonce)
    return seal_frame(Signer(SUBMITTER), COLONY.colony_id, body, seq=seq, timestamp_ms=seq)


def test_the_id_is_the_ledgers_spec_id() -> None:
    pid, author = submission_id(submission(), COLONY.colony_id)
    assert author == SUBMITTER.public_key
    assert pid == spec_id(parse_function_spec(SPEC), SUBMITTER.public_key, b"n" * 16)


async def test_only_the_leader_proposes_and_only_once() -> None:
    server = IntakeServer()
    intake = SpecIntake(server, gossip=None)
    pid = intake.offer(submission(seq=1))
    assert intake.offer(submission(seq=2)) == pid  # the same submission, sealed again
    assert list(intake.pending) == [pid]
    await intake._drain()
    assert server.proposed == []  # a follower keeps it pending
    server.is_leader = True
    await intake._drain()
    await intake._drain()
    assert len(server.proposed) == 1 and intake.pending == {}
    assert intake.offer(submission(seq=3)) == pid and intake.pending == {}  # already applied


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_garbage_is_no_submission(data: bytes) -> None:
    try:
        submission_id(data, COLONY.colony_id)
    except NotASubmission:
        return
    raise AssertionError("garbage was taken for a submission")


def test_a_tampered_submission_is_refused() -> None:
    frame = bytearray(submission())
    frame[-3] ^= 0x40
    try:
        submission_id(bytes(frame), COLONY.colony_id)
    except NotASubmission:
        return
    raise AssertionError("a tampered frame was accepted")


def test_nonce_matters() -> None:
    a, _ = submission_id(submission(nonce=os.urandom(16)), COLONY.colony_id)
    b, _ = submission_id(submission(nonce=os.urandom(16)), COLONY.colony_id)
    assert a != b
