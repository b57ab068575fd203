"""The ledger's rules as a pure state machine: commands in, events and state out."""

from __future__ import annotations

import json
import os

import pytest

from colonymesh.node.certs import Role, encode_record, revoke
from colonymesh.node.envelope import EnvelopeSealer
from colonymesh.node.identity import KeyPair, Signer
from colonymesh.node.ledger.commands import (
    AddChild,
    AddLog,
    Cancel,
    Claim,
    Close,
    ExecutorLost,
    Fail,
    RegisterExecutor,
    Revoke,
    SetAttribute,
    SubmitFunction,
    Tick,
    UnregisterExecutor,
)
from colonymesh.node.ledger.events import (
    CommandRefused,
    ExecutorLeft,
    ProcessAssigned,
    ProcessFinished,
    ProcessReady,
    ProcessRequeued,
    WorkflowFinished,
)
from colonymesh.node.ledger.ledger import LedgerInvariantError
from colonymesh.node.ledger.model import ProcessState
from support.colony import NOW
from support.ledger import LedgerHarness, make_harness, spec


@pytest.fixture
def h() -> LedgerHarness:
    return make_harness()


def test_submit_claim_close(h: LedgerHarness) -> None:
    executor = h.executor("py-1")
    pid = h.submit(spec("echo", args=["hi"]))
    assert h.ledger.processes[pid].state is ProcessState.WAITING
    claimed, events = h.ok(executor, Claim())
    assert claimed == pid
    assert events == [ProcessAssigned(events[0].command, pid, executor.keys.public_key)]
    h.tick(1.5)
    _, events = h.ok(executor, Close(pid, json.dumps(["hi"])))
    process = h.ledger.processes[pid]
    assert process.state is ProcessState.SUCCESS and process.output == ["hi"]
    assert isinstance(events[0], ProcessFinished) and events[0].state is ProcessState.SUCCESS
    stats = h.ledger.functions[("python", "echo")]
    assert (stats.submitted, stats.succeeded, stats.run.max_ms) == (1, 1, 1500)
    assert h.ledger.executors[executor.keys.public_key].running == []


def test_submission_is_idempotent_by_spec_id(h: LedgerHarness) -> None:
    body = SubmitFunction(json.dumps(spec()), b"n" * 16)
    first, events = h.ok(h.submitter, body)
    again, events_again = h.ok(h.submitter, SubmitFunction(body.spec_json, body.nonce))
    assert first == again and len(h.ledger.processes) == 1
    assert any(isinstance(e, ProcessReady) for e in events) and events_again == []


def test_the_first_committed_claim_wins(h: LedgerHarness) -> None:
    a, b = h.executor("a"), h.executor("b")
    pid = h.submit(spec())
    h.ok(a, Claim(pid))
    assert "running" in h.refused(b, Claim(pid))
    assert "no waiting process" in h.refused(b, Claim())
    assert h.ledger.processes[pid].executor == a.keys.public_key


def test_only_the_assignee_may_close_fail_log_or_extend(h: LedgerHarness) -> None:
    a, b = h.executor("a"), h.executor("b")
    pid = h.submit(spec())
    h.ok(a, Claim(pid))
    for body in (Close(pid), Fail(pid, ("x",)), AddLog(pid, "x"), SetAttribute(pid, "k", "v")):
        assert "only the assigned executor" in h.refused(b, body)
        assert "only the assigned executor" in h.refused(h.submitter, body)
    assert h.ledger.processes[pid].state is ProcessState.RUNNING
    h.ok(a, AddLog(pid, "working"))
    h.ok(a, SetAttribute(pid, "slurm.jobid", "42"))
    assert h.ledger.processes[pid].logs == [(h.ledger.now_ms, "working")]


def test_claims_follow_priority_then_submission_order(h: LedgerHarness) -> None:
    executor = h.executor("a")
    low = h.submit(spec("f", priority=0))
    high = h.submit(spec("f", priority=5))
    low2 = h.submit(spec("f", priority=0))
    order = [h.ok(executor, Claim())[0] for _ in range(3)]
    assert order == [high, low, low2]


def test_matching_by_type_name_location_and_resources(h: LedgerHarness) -> None:
    small = h.executor("small", cpu=1000, location="edge")
    gpu = h.executor("gpu", cpu=8000, gpus=2, gpu_name="a100", location="hpc")
    other_type = h.executor("other", executor_type="slurm")
    needs_gpu = h.submit(spec(conditions={"gpu": {"count": 2, "name": "A100"}}))
    needs_cpu = h.submit(spec(conditions={"cpu": "2"}))
    at_edge = h.submit(spec(conditions={"locationname": "edge"}))
    named = h.submit(spec(conditions={"executornames": ["gpu"]}))
    assert "gpus" in h.refused(small, Claim(needs_gpu))
    assert "cpu" in h.refused(small, Claim(needs_cpu))
    assert "type" in h.refused(other_type, Claim(at_edge))
    assert "not among" in h.refused(small, Claim(named))
    assert "location" in h.refused(gpu, Claim(at_edge))
    assert h.ok(small, Claim())[0] == at_edge
    assert h.ok(gpu, Claim())[0] == needs_gpu
    # The gpus are now in use: the next gpu spec must wait even though cpu is free.
    second_gpu = h.submit(spec(conditions={"gpu": {"count": 1}}))
    assert "gpus" in h.refused(gpu, Claim(second_gpu))
    assert h.ok(gpu, Claim())[0] == needs_cpu


def test_maxwaittime_fails_a_waiting_process(h: LedgerHarness) -> None:
    pid = h.submit(spec(maxwaittime=10))
    h.tick(9)
    assert h.ledger.processes[pid].state is ProcessState.WAITING
    events = h.tick(2)
    assert h.ledger.processes[pid].state is ProcessState.FAILED
    assert "maxwaittime" in h.ledger.processes[pid].errors[0]
    assert any(isinstance(e, ProcessFinished) for e in events)
    assert "no waiting process" in h.refused(h.executor("late"), Claim())


def test_maxexectime_requeues_until_maxretries_then_fails(h: LedgerHarness) -> None:
    executor = h.executor("a")
    pid = h.submit(spec(maxexectime=5, maxretries=1))
    h.ok(executor, Claim(pid))
    h.tick(6)  # past maxexectime, but within the ledger's grace for the executor to stop
    assert h.ledger.processes[pid].state is ProcessState.RUNNING
    events = h.tick(1.5)
    assert [type(e) for e in events][1:3] == [ProcessRequeued, ProcessReady]
    process = h.ledger.processes[pid]
    assert process.state is ProcessState.WAITING and process.retries == 1
    h.ok(executor, Claim(pid))
    h.tick(7.5)
    assert process.state is ProcessState.FAILED and "after 1 retries" in process.errors[0]


def test_a_stale_deadline_does_not_fire_after_a_close(h: LedgerHarness) -> None:
    executor = h.executor("a")
    pid = h.submit(spec(maxexectime=5))
    h.ok(executor, Claim(pid))
    h.ok(executor, Close(pid))
    h.tick(10)
    assert h.ledger.processes[pid].state is ProcessState.SUCCESS


def test_executor_loss_requeues_its_processes_without_using_retries(h: LedgerHarness) -> None:
    dying, survivor = h.executor("dying"), h.executor("survivor")
    pid = h.submit(spec())
    h.ok(dying, Claim(pid))
    assert "server" in h.refused(survivor, ExecutorLost(dying.keys.public_key, "silent"))
    _, events = h.ok(h.server, ExecutorLost(dying.keys.public_key, "silent for 30 s"))
    assert isinstance(events[-1], ExecutorLeft)
    process = h.ledger.processes[pid]
    assert process.state is ProcessState.WAITING and process.retries == 0
    assert "not running" in h.refused(dying, Close(pid))
    assert h.ok(survivor, Claim())[0] == pid


def test_unregister_requeues_too(h: LedgerHarness) -> None:
    executor = h.executor("a")
    pid = h.submit(spec())
    h.ok(executor, Claim(pid))
    h.ok(executor, UnregisterExecutor("shutting down"))
    assert h.ledger.processes[pid].state is ProcessState.WAITING
    assert executor.keys.public_key not in h.ledger.executors


def test_an_explicit_failure_is_final(h: LedgerHarness) -> None:
    executor = h.executor("a")
    pid = h.submit(spec(maxretries=5))
    h.ok(executor, Claim(pid))
    h.ok(executor, Fail(pid, ("division by zero",)))
    process = h.ledger.processes[pid]
    assert process.state is ProcessState.FAILED and process.errors == ["division by zero"]
    assert "failed" in h.refused(executor, Close(pid))
    assert "no waiting process" in h.refused(executor, Claim())


def _node(
    name: str, funcname: str, deps: list[str] | None = None, **extra: object
) -> dict[str, object]:
    return spec(funcname, nodename=name, conditions={"dependencies": deps or []}, **extra)


def test_workflow_outputs_become_inputs_in_dependency_order(h: LedgerHarness) -> None:
    executor = h.executor("a")
    wid = h.submit_workflow([_node("a", "gen"), _node("b", "gen"), _node("c", "sum", ["a", "b"])])
    ids = h.ledger.workflows[wid].process_ids
    by_name = {h.ledger.processes[p].spec.nodename: h.ledger.processes[p] for p in ids}
    assert not by_name["c"].is_ready
    first = h.ok(executor, Claim())[0]
    second = h.ok(executor, Claim())[0]
    assert {first, second} == {by_name["a"].id, by_name["b"].id}
    assert "no waiting process" in h.refused(executor, Claim())
    h.ok(executor, Close(by_name["b"].id, "[2]"))
    h.ok(executor, Close(by_name["a"].id, "[1]"))
    assert by_name["c"].is_ready and by_name["c"].input == [1, 2]
    _, events = h.ok(executor, Close(h.ok(executor, Claim())[0], "[3]"))
    assert WorkflowFinished(events[0].command, wid, ProcessState.SUCCESS) in events
    assert h.ledger.workflows[wid].state is ProcessState.SUCCESS


def test_a_failure_fails_the_whole_graph_and_stops_running_siblings(h: LedgerHarness) -> None:
    a, b = h.executor("a"), h.executor("b")
    wid = h.submit_workflow([_node("x", "f"), _node("y", "f"), _node("z", "f", ["x", "y"])])
    x = h.ok(a, Claim())[0]
    y = h.ok(b, Claim())[0]
    _, events = h.ok(a, Fail(x, ("boom",)))
    finished = {e.process_id: e for e in events if isinstance(e, ProcessFinished)}
    assert finished[y].executor == b.keys.public_key  # b is told to stop
    assert all(
        h.ledger.processes[p].state is ProcessState.FAILED
        for p in h.ledger.workflows[wid].process_ids
    )
    assert h.ledger.workflows[wid].state is ProcessState.FAILED
    assert h.ledger.executors[b.keys.public_key].running == []


def test_map_reduce_fan_out_with_add_child(h: LedgerHarness) -> None:
    executor = h.executor("a")
    wid = h.submit_workflow([_node("map", "split"), _node("reduce", "sum", ["map"])])
    map_id = h.ok(executor, Claim())[0]
    children = [
        h.ok(executor, AddChild(map_id, json.dumps(spec("square", args=[i])), os.urandom(16)))[0]
        for i in range(3)
    ]
    assert "only the assigned executor" in h.refused(
        h.submitter, AddChild(map_id, json.dumps(spec()), os.urandom(16))
    )
    h.ok(executor, Close(map_id, "[]"))
    reduce = next(
        h.ledger.processes[p]
        for p in h.ledger.workflows[wid].process_ids
        if h.ledger.processes[p].spec.nodename == "reduce"
    )
    assert not reduce.is_ready and reduce.parents_pending == 3
    for _ in children:
        pid = h.ok(executor, Claim())[0]
        arg = h.ledger.processes[pid].spec.args[0]
        h.ok(executor, Close(pid, json.dumps([arg * arg])))
    assert reduce.is_ready and sorted(reduce.input) == [0, 1, 4]  # type: ignore[type-var]


def test_cancel_by_submitter_only(h: LedgerHarness) -> None:
    executor = h.executor("a")
    pid = h.submit(spec())
    h.ok(executor, Claim(pid))
    assert "only the submitter" in h.refused(executor, Cancel(pid))
    _, events = h.ok(h.submitter, Cancel(pid))
    assert (
        ProcessFinished(events[0].command, pid, ProcessState.CANCELLED, executor.keys.public_key)
        in events
    )
    assert "already cancelled" in h.refused(h.submitter, Cancel(pid))


def test_roles_are_enforced(h: LedgerHarness) -> None:
    executor = h.executor("a")
    server_key = h.server.keys.public_key
    assert "submitter" in h.refused(executor, SubmitFunction(json.dumps(spec()), os.urandom(16)))
    assert "server" in h.refused(executor, Tick(h.ledger.now_ms + 1))
    assert "executor" in h.refused(h.submitter, RegisterExecutor("me"))
    assert "not a registered executor" in h.refused(h.server, Claim())
    assert server_key not in h.ledger.executors


def test_invalid_specs_are_refused_with_the_field_named(h: LedgerHarness) -> None:
    reason = h.refused(
        h.submitter, SubmitFunction(json.dumps(spec(conditions={"cpu": "lots"})), os.urandom(16))
    )
    assert "conditions.cpu" in reason
    assert "not JSON" in h.refused(h.submitter, SubmitFunction("{", os.urandom(16)))
    assert "dependencies" in h.refused(
        h.submitter,
        SubmitFunction(json.dumps(spec(conditions={"dependencies": ["x"]})), os.urandom(16)),
    )
    assert "colony" in h.refused(
        h.submitter,
        SubmitFunction(json.dumps(spec(conditions={"colonyname": "elsewhere"})), os.urandom(16)),
    )
    assert h.ledger.processes == {}


def test_unauthenticated_commands_change_nothing(h: LedgerHarness) -> None:
    body = SubmitFunction(json.dumps(spec()), os.urandom(16))
    stranger = Signer(KeyPair.generate())
    frame = EnvelopeSealer(stranger, h.lab.colony.colony_id, NOW).seal(body, NOW)
    assert "not a member" in h.apply_entry(frame)[0].reason  # type: ignore[union-attr]
    good = h.seal(h.submitter, body)
    tampered = good.replace(body.nonce, b"\x00" * 16)
    assert "signature" in h.apply_entry(tampered)[0].reason  # type: ignore[union-attr]
    assert "undecodable" in h.apply_entry(b"\xff" * 10)[0].reason  # type: ignore[union-attr]
    assert h.ledger.processes == {}
    h.apply_entry(good)
    replayed = h.apply_entry(good)[0]
    assert isinstance(replayed, CommandRefused) and "already accepted" in replayed.reason
    assert len(h.ledger.processes) == 1


def test_a_revoked_member_is_refused_and_its_work_requeued(h: LedgerHarness) -> None:
    executor = h.executor("a")
    pid = h.submit(spec())
    h.ok(executor, Claim(pid))
    revocation = revoke(h.lab.owner, executor.certificate, now=NOW)
    _, _events = h.ok(h.server, Revoke(encode_record(revocation)))
    assert h.ledger.processes[pid].state is ProcessState.WAITING
    assert "revoked" in h.refused(executor, Claim())


def test_time_never_goes_back(h: LedgerHarness) -> None:
    h.tick(10)
    now = h.ledger.now_ms
    h.ok(h.server, Tick(now - 5000))
    assert h.ledger.now_ms == now


def test_the_driver_must_apply_each_index_once(h: LedgerHarness) -> None:
    h.submit(spec())
    with pytest.raises(LedgerInvariantError):
        h.ledger.apply(1, h.entries[0])


def test_replicas_applying_the_same_log_agree(h: LedgerHarness) -> None:
    a = h.executor("a")
    wid = h.submit_workflow([_node("p", "f"), _node("q", "f", ["p"])])
    pid = h.ok(a, Claim())[0]
    h.ok(a, Close(pid, '["out"]'))
    h.tick(3)
    replica = make_replica(h)
    events = [replica.apply(i + 1, entry) for i, entry in enumerate(h.entries)]
    assert replica.counts() == h.ledger.counts()
    assert replica.workflows[wid].process_ids == h.ledger.workflows[wid].process_ids
    assert [p.input for p in replica.processes.values()] == [
        p.input for p in h.ledger.processes.values()
    ]
    assert len(events) == len(h.entries)


def make_replica(h: LedgerHarness):  # type: ignore[no-untyped-def]
    from colonymesh.node.ledger.ledger import Ledger
    from support.ledger import GENESIS_MS

    initial = [m.certificate for m in h.lab.members[:3]]
    return Ledger(h.lab.colony, genesis_ms=GENESIS_MS, certificates=initial)


def test_an_executor_admits_itself_with_its_owner_signed_certificate(h: LedgerHarness) -> None:
    executor = h.executor("solo", register=False)
    assert executor.certificate.has_role(Role.EXECUTOR)
    assert executor.keys.public_key in {c.member_key for c in h.ledger.membership.members()}


def test_a_refused_command_cannot_be_replayed_into_success(h: LedgerHarness) -> None:
    """Its author was told it failed: a later replay must not carry it out."""
    executor = h.executor("a")
    frame = h.seal(executor, Claim())
    assert "no waiting process" in h.apply_entry(frame)[0].reason  # type: ignore[union-attr]
    h.submit(spec())
    replayed = h.apply_entry(frame)[0]
    assert isinstance(replayed, CommandRefused) and "already accepted" in replayed.reason
    assert h.ledger.executors[executor.keys.public_key].running == []
