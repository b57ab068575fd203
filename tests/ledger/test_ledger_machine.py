"""Hypothesis drives random commands from random members; invariants hold after every step."""

from __future__ import annotations

import json
import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from colonymesh.node.ledger import matching
from colonymesh.node.ledger.commands import (
    AddChild,
    AddLog,
    Cancel,
    Claim,
    Close,
    ExecutorLost,
    Fail,
    RegisterExecutor,
    SubmitFunction,
    SubmitWorkflow,
    UnregisterExecutor,
)
from colonymesh.node.ledger.events import ProcessAssigned, ProcessFinished
from colonymesh.node.ledger.model import ProcessState
from support.colony import Member
from support.ledger import LedgerHarness, make_harness, spec

SPECS = st.builds(
    lambda funcname, etype, priority, exectime, retries, cpu, gpus: spec(
        funcname,
        etype,
        priority=priority,
        maxexectime=exectime,
        maxretries=retries,
        conditions={k: v for k, v in (("cpu", cpu), ("gpu", {"count": gpus})) if v},
    ),
    st.sampled_from(["a", "b"]),
    st.sampled_from(["python", "process"]),
    st.integers(-2, 2),
    st.sampled_from([-1, 2, 5]),
    st.sampled_from([0, 1, -1]),
    st.sampled_from(["", "500m", "3"]),
    st.sampled_from([0, 0, 1]),
)


class LedgerMachine(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.h: LedgerHarness = make_harness()
        self.executors: list[Member] = [
            self.h.executor("py-small", "python", cpu=1000),
            self.h.executor("py-gpu", "python", cpu=4000, gpus=1),
            self.h.executor("proc", "process", cpu=8000),
        ]
        self.final: dict[str, ProcessState] = {}
        self.assignee: dict[str, bytes] = {}

    def _apply(self, member: Member, body: object) -> None:
        for event in self.h.run(member, body):
            if isinstance(event, ProcessAssigned):
                self.assignee[event.process_id] = event.executor
            if isinstance(event, ProcessFinished) and event.state is ProcessState.SUCCESS:
                # Only a Close by the assignee makes a process succeed.
                assert isinstance(body, Close) and body.process_id == event.process_id
                assert event.command.author == self.assignee[event.process_id]

    def _pid(self, data: st.DataObject) -> str:
        ids = list(self.h.ledger.processes)
        return data.draw(st.sampled_from(ids)) if ids else "missing"

    @rule(body=SPECS)
    def submit(self, body: dict[str, object]) -> None:
        self.h.run(self.h.submitter, SubmitFunction(json.dumps(body), os.urandom(16)))

    @rule(n=st.integers(1, 4), fan_in=st.booleans())
    def submit_workflow(self, n: int, fan_in: bool) -> None:
        nodes = [spec("a", "python", nodename=f"n{i}") for i in range(n)]
        if fan_in:
            nodes.append(
                spec(
                    "b",
                    "process",
                    nodename="join",
                    conditions={"dependencies": [f"n{i}" for i in range(n)]},
                )
            )
        text = json.dumps({"colonyname": "", "functionspecs": nodes})

        self.h.run(self.h.submitter, SubmitWorkflow(text, os.urandom(16)))

    def _running(self) -> list[str]:
        return [
            pid for pid, p in self.h.ledger.processes.items() if p.state is ProcessState.RUNNING
        ]

    def _actor(self, data: st.DataObject, pid: str) -> Member:
        """Usually the assignee, sometimes anyone else: both paths must hold."""
        assignee = self.h.ledger.processes[pid].executor
        members = [*self.executors, self.h.submitter]
        if data.draw(st.integers(0, 3)) > 0:
            return next(m for m in members if m.keys.public_key == assignee)
        return data.draw(st.sampled_from([m for m in members if m.keys.public_key != assignee]))

    @rule(data=st.data())
    def claim_any(self, data: st.DataObject) -> None:
        self._apply(data.draw(st.sampled_from(self.executors)), Claim())

    @rule(data=st.data())
    def claim_specific(self, data: st.DataObject) -> None:
        executor = data.draw(st.sampled_from(self.executors))
        self._apply(executor, Claim(self._pid(data)))

    @precondition(lambda self: bool(self._running()))
    @rule(data=st.data(), ok=st.booleans())
    def close_or_fail(self, data: st.DataObject, ok: bool) -> None:
        pid = data.draw(st.sampled_from(self._running()))
        member = self._actor(data, pid)
        self._apply(member, Close(pid, json.dumps([pid[:4]])) if ok else Fail(pid, ("x",)))

    @precondition(lambda self: bool(self._running()))
    @rule(data=st.data())
    def log_or_extend(self, data: st.DataObject) -> None:
        pid = data.draw(st.sampled_from(self._running()))
        member = self._actor(data, pid)
        self._apply(member, AddLog(pid, "line"))
        self._apply(member, AddChild(pid, json.dumps(spec("a", "python")), os.urandom(16)))

    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        ledger = self.h.ledger
        targets = [i for i, p in ledger.processes.items() if not p.state.is_final]
        targets += [i for i, w in ledger.workflows.items() if not w.state.is_final]
        if targets:
            self._apply(self.h.submitter, Cancel(data.draw(st.sampled_from(targets))))

    @rule(seconds=st.sampled_from([0.5, 3, 7]))
    def tick(self, seconds: float) -> None:
        self.h.tick(seconds)

    @rule(data=st.data())
    def executor_churn(self, data: st.DataObject) -> None:
        executor = data.draw(st.sampled_from(self.executors))
        key = executor.keys.public_key
        if key in self.h.ledger.executors:
            if data.draw(st.booleans()):
                self._apply(self.h.server, ExecutorLost(key, "silent"))
            else:
                self._apply(executor, UnregisterExecutor("bye"))
        else:
            self._apply(executor, RegisterExecutor(executor.certificate.name))

    @invariant()
    def running_processes_are_held_by_exactly_their_executor(self) -> None:
        ledger = self.h.ledger
        held: dict[str, bytes] = {}
        for key, executor in ledger.executors.items():
            for pid in executor.running:
                assert pid not in held, f"{pid} held twice"
                held[pid] = key
        for pid, process in ledger.processes.items():
            if process.state is ProcessState.RUNNING:
                assert held.get(pid) == process.executor, f"{pid} running but not held"
            else:
                assert pid not in held

    @invariant()
    def the_queues_hold_exactly_the_ready_processes(self) -> None:
        ledger = self.h.ledger
        queued = [pid for queue in ledger._queues.values() for _, pid in queue]
        assert len(queued) == len(set(queued))
        ready = {pid for pid, p in ledger.processes.items() if p.is_ready}
        assert set(queued) == ready

    @invariant()
    def final_states_never_change(self) -> None:
        for pid, process in self.h.ledger.processes.items():
            if pid in self.final:
                assert process.state is self.final[pid]
            elif process.state.is_final:
                self.final[pid] = process.state

    @invariant()
    def executors_never_run_more_than_they_declare(self) -> None:
        ledger = self.h.ledger
        for executor in ledger.executors.values():
            free = matching.free(executor, (ledger.processes[p].spec for p in executor.running))
            assert min(free.cpu_millicores, free.mem_bytes, free.storage_bytes, free.gpus) >= 0

    @invariant()
    def nothing_runs_before_its_parents_succeed(self) -> None:
        ledger = self.h.ledger
        for process in ledger.processes.values():
            if process.state is ProcessState.RUNNING or process.is_ready:
                assert all(
                    ledger.processes[p].state is ProcessState.SUCCESS for p in process.parents
                )


LedgerMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLedgerMachine = LedgerMachine.TestCase
