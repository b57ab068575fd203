"""Crons as ledger rules: due times, firing exactly once per tick, wait-for-previous, chaining."""

from __future__ import annotations

import json
from typing import Any

import pytest

from colonymesh.node.certs import Role, encode_record, revoke
from colonymesh.node.ledger.commands import (
    AddCron,
    Admit,
    Claim,
    Close,
    FireCron,
    RemoveCron,
    Revoke,
    RunCron,
)
from colonymesh.node.ledger.cronexpr import next_after, parse
from colonymesh.node.ledger.model import ProcessState
from support.colony import NOW, Member
from support.ledger import LedgerHarness, make_harness, spec

ONE = {"colonyname": "", "functionspecs": [{**spec("tick"), "nodename": "tick"}]}
CHAIN = {
    "colonyname": "",
    "functionspecs": [
        {**spec("gen"), "nodename": "gen"},
        {**spec("sum", conditions={"dependencies": ["gen"]}), "nodename": "sum"},
    ],
}


@pytest.fixture
def h() -> LedgerHarness:
    return make_harness()


def add_cron(
    h: LedgerHarness,
    name: str = "every10",
    *,
    workflow: dict[str, Any] = ONE,
    expression: str = "",
    interval_s: int = 0,
    wait: bool = False,
    nonce: bytes = b"c" * 16,
) -> str:
    body = AddCron(name, json.dumps(workflow), nonce, expression, interval_s, wait)
    cron_id, _ = h.ok(h.submitter, body)
    return cron_id


def fire(h: LedgerHarness, cron_id: str, server: Member | None = None) -> str:
    due = h.ledger.crons.crons[cron_id].next_due_ms
    workflow_id, _ = h.ok(server or h.server, FireCron(cron_id, due))
    return workflow_id


def finish(h: LedgerHarness, workflow_id: str, outputs: dict[str, list[Any]]) -> None:
    """Run every process of the workflow to SUCCESS with the given outputs by funcname."""
    executor = h.executor(f"x-{len(h.entries)}")
    for process_id in list(h.ledger.workflows[workflow_id].process_ids):
        process = h.ledger.processes[process_id]
        h.ok(executor, Claim(process_id))
        h.ok(executor, Close(process_id, json.dumps(outputs.get(process.spec.funcname, []))))
    assert h.ledger.workflows[workflow_id].state is ProcessState.SUCCESS


def test_an_interval_cron_fires_once_per_tick(h: LedgerHarness) -> None:
    cron_id = add_cron(h, interval_s=10)
    cron = h.ledger.crons.crons[cron_id]
    assert cron.next_due_ms == h.ledger.now_ms + 10_000
    assert h.ledger.crons.due(h.ledger) == []
    assert "not due before" in h.refused(h.server, FireCron(cron_id, cron.next_due_ms))
    h.tick(10)
    assert h.ledger.crons.due(h.ledger) == [(cron_id, cron.next_due_ms)]
    due = cron.next_due_ms
    workflow_id = fire(h, cron_id)
    workflow = h.ledger.workflows[workflow_id]
    assert workflow.submitter == h.submitter.keys.public_key  # runs are the owner's
    assert (cron.runs, cron.last_workflow_id, cron.next_due_ms) == (1, workflow_id, due + 10_000)
    assert "not its next tick" in h.refused(h.server, FireCron(cron_id, due))
    assert len(h.ledger.workflows) == 1 and h.ledger.crons.due(h.ledger) == []


def test_two_leaders_firing_the_same_tick_start_one_run(h: LedgerHarness) -> None:
    """An old leader that has not learnt it was deposed and the new one both propose a tick."""
    second = h.lab.admit("server-2", (Role.SERVER,))
    h.ok(second, Admit(encode_record(second.certificate)))
    cron_id = add_cron(h, interval_s=5)
    h.tick(5)
    due = h.ledger.crons.crons[cron_id].next_due_ms
    old, new = FireCron(cron_id, due), FireCron(cron_id, due)
    h.ok(h.server, old)
    assert "not its next tick" in h.refused(second, new)
    h.tick(5)
    fire(h, cron_id, second)  # the new leader fires the next tick
    assert h.ledger.crons.crons[cron_id].runs == 2 and len(h.ledger.workflows) == 2


def test_missed_ticks_coalesce_into_one_run_keeping_the_phase(h: LedgerHarness) -> None:
    cron_id = add_cron(h, interval_s=10)
    start = h.ledger.now_ms
    h.tick(95)  # nine ticks missed while the colony had no leader
    fire(h, cron_id)
    cron = h.ledger.crons.crons[cron_id]
    assert cron.runs == 1 and cron.next_due_ms == start + 100_000
    assert h.ledger.crons.due(h.ledger) == []


def test_a_cron_expression_fires_on_its_seconds(h: LedgerHarness) -> None:
    cron_id = add_cron(h, expression="*/15 * * * * *")
    cron = h.ledger.crons.crons[cron_id]
    assert cron.next_due_ms == next_after(parse("*/15 * * * * *"), h.ledger.now_ms)
    assert cron.next_due_ms % 15_000 == 0
    h.tick(16)
    first_due = cron.next_due_ms
    fire(h, cron_id)
    assert cron.next_due_ms == first_due + 15_000


def test_wait_for_previous_holds_the_tick_until_the_run_ends(h: LedgerHarness) -> None:
    cron_id = add_cron(h, interval_s=10, wait=True)
    h.tick(10)
    first = fire(h, cron_id)
    h.tick(10)
    due = h.ledger.crons.crons[cron_id].next_due_ms
    assert h.ledger.crons.due(h.ledger) == []
    assert "waits for its previous run" in h.refused(h.server, FireCron(cron_id, due))
    finish(h, first, {})
    assert h.ledger.crons.due(h.ledger) == [(cron_id, due)]  # late, once
    second = fire(h, cron_id)
    assert second != first and h.ledger.crons.crons[cron_id].runs == 2


def test_without_wait_for_previous_runs_overlap(h: LedgerHarness) -> None:
    cron_id = add_cron(h, interval_s=10)
    h.tick(10)
    first = fire(h, cron_id)
    h.tick(10)
    second = fire(h, cron_id)
    assert not h.ledger.workflows[first].state.is_final and first != second


def test_leaf_outputs_of_a_run_feed_the_next_runs_roots(h: LedgerHarness) -> None:
    cron_id = add_cron(h, workflow=CHAIN, interval_s=10)
    h.tick(10)
    first = fire(h, cron_id)
    roots = [h.ledger.processes[p] for p in h.ledger.workflows[first].process_ids]
    assert roots[0].input == []
    finish(h, first, {"gen": [1, 2], "sum": [3]})
    h.tick(10)
    second = fire(h, cron_id)
    gen, total = (h.ledger.processes[p] for p in h.ledger.workflows[second].process_ids)
    assert gen.spec.funcname == "gen" and gen.input == [3]  # the leaf "sum" fed the root
    assert total.input == []  # not ready yet: gets its parents' outputs later


def test_run_now_starts_a_run_and_keeps_the_schedule(h: LedgerHarness) -> None:
    cron_id = add_cron(h, interval_s=60)
    due = h.ledger.crons.crons[cron_id].next_due_ms
    workflow_id, _ = h.ok(h.submitter, RunCron("every10"))  # by name
    assert workflow_id in h.ledger.workflows
    assert h.ledger.crons.crons[cron_id].next_due_ms == due
    executor = h.executor("nosy")
    assert "only the owner" in h.refused(executor, RunCron(cron_id))


def test_remove_stops_the_cron(h: LedgerHarness) -> None:
    cron_id = add_cron(h, interval_s=1)
    h.tick(1)
    due = h.ledger.crons.crons[cron_id].next_due_ms
    assert "only the owner" in h.refused(h.executor("nosy"), RemoveCron(cron_id))
    assert h.ok(h.submitter, RemoveCron("every10"))[0] == cron_id
    assert "no cron" in h.refused(h.server, FireCron(cron_id, due))
    assert "no cron" in h.refused(h.submitter, RemoveCron(cron_id))


def test_a_revoked_owners_cron_ticks_but_starts_nothing(h: LedgerHarness) -> None:
    cron_id = add_cron(h, interval_s=10)
    revocation = revoke(h.lab.owner, h.submitter.certificate, now=NOW)
    h.ok(h.server, Revoke(encode_record(revocation)))
    h.tick(10)
    subject, _ = h.ok(h.server, FireCron(cron_id, h.ledger.crons.crons[cron_id].next_due_ms))
    cron = h.ledger.crons.crons[cron_id]
    assert subject == "" and (cron.runs, cron.skipped) == (0, 1) and not h.ledger.workflows


@pytest.mark.parametrize(
    ("expression", "interval_s", "reason"),
    [
        ("", 0, "exactly one"),
        ("* * * * * *", 5, "exactly one"),
        ("* * * * *", 0, "cron expression: expected 6 fields"),
        ("0 0 0 30 2 *", 0, "never fires"),
        ("", -5, "interval: must be"),
    ],
)
def test_bad_schedules_are_refused(
    h: LedgerHarness, expression: str, interval_s: int, reason: str
) -> None:
    body = AddCron("bad", json.dumps(ONE), b"n" * 16, expression, interval_s)
    assert reason in h.refused(h.submitter, body)
    assert not h.ledger.crons


def test_bad_crons_are_refused_with_the_reason(h: LedgerHarness) -> None:
    add_cron(h, interval_s=5)
    again = AddCron("every10", json.dumps(ONE), b"d" * 16, "", 5)
    assert "exists" in h.refused(h.submitter, again)
    bad_spec = {"functionspecs": [spec("x", conditions={"cpu": "lots"})]}
    body = AddCron("bad", json.dumps(bad_spec), b"e" * 16, "", 5)
    assert "conditions.cpu" in h.refused(h.submitter, body)
    body = AddCron("other", json.dumps({**ONE, "colonyname": "elsewhere"}), b"f" * 16, "", 5)
    assert "colony 'elsewhere'" in h.refused(h.submitter, body)
    body = AddCron(" spaced", json.dumps(ONE), b"g" * 16, "", 5)
    assert "name" in h.refused(h.submitter, body)
    executor = h.executor("not-a-submitter")
    assert "submitter role" in h.refused(executor, AddCron("x", json.dumps(ONE), b"h" * 16, "", 5))
    assert "server role" in h.refused(h.submitter, FireCron("x", 0))


def test_adding_is_idempotent_by_nonce(h: LedgerHarness) -> None:
    first = add_cron(h, interval_s=5)
    assert add_cron(h, interval_s=5) == first and len(h.ledger.crons.crons) == 1
