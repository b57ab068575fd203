"""Generators as ledger rules: packing, firing by count or timeout, exactly once per run."""

from __future__ import annotations

import json

import pytest

from colonymesh.node.certs import Role, encode_record
from colonymesh.node.ledger.commands import (
    AddGenerator,
    Admit,
    FireGenerator,
    PackGenerator,
    RemoveGenerator,
)
from colonymesh.node.ledger.generators import PENDING_ARGS_MAX
from support.ledger import LedgerHarness, make_harness, spec

WORKFLOW = {
    "colonyname": "",
    "functionspecs": [
        {**spec("load", args=["placeholder"]), "nodename": "load"},
        {
            **spec("report", args=["keep"], conditions={"dependencies": ["load"]}),
            "nodename": "report",
        },
    ],
}


@pytest.fixture
def h() -> LedgerHarness:
    return make_harness()


def add(h: LedgerHarness, trigger: int = 3, timeout_s: int = 0, name: str = "batch") -> str:
    body = AddGenerator(
        name, json.dumps(WORKFLOW), name.encode().ljust(16, b"."), trigger, timeout_s
    )
    generator_id, _ = h.ok(h.submitter, body)
    return generator_id


def pack(h: LedgerHarness, *args: str, ref: str = "batch") -> None:
    for arg in args:
        h.ok(h.submitter, PackGenerator(ref, arg))


def test_fires_when_trigger_args_are_packed(h: LedgerHarness) -> None:
    generator_id = add(h, trigger=3)
    generator = h.ledger.generators.generators[generator_id]
    pack(h, "a", "b")
    assert h.ledger.generators.due(h.ledger.now_ms) == []
    assert "not due" in h.refused(h.server, FireGenerator(generator_id, 0))
    pack(h, "c", "d")
    assert h.ledger.generators.due(h.ledger.now_ms) == [(generator_id, 0)]
    workflow_id, _ = h.ok(h.server, FireGenerator(generator_id, 0))
    load, report = (h.ledger.processes[p] for p in h.ledger.workflows[workflow_id].process_ids)
    assert load.spec.args == ("a", "b", "c")  # the roots' args are the batch (as ColonyOS)
    assert report.spec.args == ("keep",)
    assert h.ledger.workflows[workflow_id].submitter == h.submitter.keys.public_key
    assert [arg for _, arg in generator.pending] == ["d"] and generator.runs == 1


def test_a_run_fires_once_even_from_two_leaders(h: LedgerHarness) -> None:
    second = h.lab.admit("server-2", (Role.SERVER,))
    h.ok(second, Admit(encode_record(second.certificate)))
    generator_id = add(h, trigger=2)
    pack(h, "a", "b", "c", "d")
    h.ok(h.server, FireGenerator(generator_id, 0))
    assert "run 0 is not its next (1)" in h.refused(second, FireGenerator(generator_id, 0))
    h.ok(second, FireGenerator(generator_id, 1))  # the second batch is the next run
    assert len(h.ledger.workflows) == 2
    assert "not due" in h.refused(h.server, FireGenerator(generator_id, 2))


def test_timeout_fires_a_partial_batch(h: LedgerHarness) -> None:
    generator_id = add(h, trigger=10, timeout_s=30)
    generator = h.ledger.generators.generators[generator_id]
    assert h.ledger.generators.next_deadline_ms() is None
    pack(h, "first")
    first_packed = h.ledger.now_ms
    h.tick(20)
    pack(h, "second")
    assert h.ledger.generators.next_deadline_ms() == first_packed + 30_000
    assert "not due" in h.refused(h.server, FireGenerator(generator_id, 0))
    h.tick(10)  # 30 s since the oldest waiting argument
    assert h.ledger.generators.due(h.ledger.now_ms) == [(generator_id, 0)]
    workflow_id, _ = h.ok(h.server, FireGenerator(generator_id, 0))
    root = h.ledger.processes[h.ledger.workflows[workflow_id].process_ids[0]]
    assert root.spec.args == ("first", "second") and generator.pending == []


def test_without_timeout_a_partial_batch_waits(h: LedgerHarness) -> None:
    generator_id = add(h, trigger=2, timeout_s=0)
    pack(h, "lonely")
    h.tick(3600 - 1)
    assert h.ledger.generators.due(h.ledger.now_ms) == []
    assert "not due" in h.refused(h.server, FireGenerator(generator_id, 0))


def test_packing_needs_a_submitter_and_a_generator(h: LedgerHarness) -> None:
    add(h)
    assert "no generator 'nope'" in h.refused(h.submitter, PackGenerator("nope", "x"))
    executor = h.executor("e")
    assert "submitter role" in h.refused(executor, PackGenerator("batch", "x"))
    assert "server role" in h.refused(h.submitter, FireGenerator("batch", 0))


def test_waiting_arguments_are_capped(h: LedgerHarness) -> None:
    generator_id = add(h, trigger=1000)
    generator = h.ledger.generators.generators[generator_id]
    generator.pending.extend((0, "x") for _ in range(PENDING_ARGS_MAX))
    assert "maximum" in h.refused(h.submitter, PackGenerator("batch", "y"))


def test_a_batch_too_large_for_a_workflow_is_dropped_with_the_reason(h: LedgerHarness) -> None:
    generator_id = add(h, trigger=600)
    generator = h.ledger.generators.generators[generator_id]
    generator.pending.extend((0, "x" * 4000) for _ in range(600))  # 2.4 MB of args
    subject, _ = h.ok(h.server, FireGenerator(generator_id, 0))
    assert subject == "" and not h.ledger.workflows
    assert "600 arguments dropped" in generator.last_error and generator.runs == 1
    pack(h, "fits")
    assert generator.pending[0][1] == "fits"


@pytest.mark.parametrize(
    ("trigger", "timeout_s", "reason"),
    [(0, 0, "trigger: must be 1 to"), (1001, 0, "trigger"), (1, -1, "timeout: must be 0 to")],
)
def test_bad_generators_are_refused(
    h: LedgerHarness, trigger: int, timeout_s: int, reason: str
) -> None:
    body = AddGenerator("g", json.dumps(WORKFLOW), b"n" * 16, trigger, timeout_s)
    assert reason in h.refused(h.submitter, body)


def test_names_are_unique_and_removal_is_the_owners(h: LedgerHarness) -> None:
    generator_id = add(h)
    body = AddGenerator("batch", json.dumps(WORKFLOW), b"other nonce 1234", 1, 0)
    assert "exists" in h.refused(h.submitter, body)
    assert "only the owner" in h.refused(h.executor("e"), RemoveGenerator("batch"))
    assert h.ok(h.submitter, RemoveGenerator(generator_id))[0] == generator_id
    assert "no generator" in h.refused(h.server, FireGenerator(generator_id, 0))
