"""Hypothesis drives random commands; at random points the ledger is snapshotted and
restored into twins, which from then on get every entry too: they must answer each with
the same events and end with byte-identical snapshots (Raft §7 applied to the ledger)."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from colonymesh.node.certs import encode_record, issue_certificate, revoke
from colonymesh.node.identity import KeyPair, Signer
from colonymesh.node.ledger.commands import (
    AddChild,
    AddLog,
    Admit,
    Cancel,
    Claim,
    Close,
    ExecutorLost,
    Fail,
    RegisterExecutor,
    RegisterFunction,
    Revoke,
    SetAttribute,
    SubmitFunction,
    SubmitWorkflow,
    Tick,
    UnregisterExecutor,
)
from colonymesh.node.ledger.events import CommandRefused, LedgerEvent
from colonymesh.node.ledger.ledger import Ledger, LedgerConfig
from colonymesh.node.ledger.model import ProcessState
from support.colony import NOW, Member, make_colony
from support.ledger import GENESIS_MS, LedgerHarness, spec

CONFIG = LedgerConfig(logs_per_process_max=2, replay_window=16, attributes_per_process_max=2)
TWINS_MAX = 3

SPECS = st.builds(
    lambda funcname, etype, priority, waittime, exectime, retries, cpu, gpus: spec(
        funcname,
        etype,
        priority=priority,
        maxwaittime=waittime,
        maxexectime=exectime,
        maxretries=retries,
        args=[funcname, priority],
        kwargs={"z": 1, "a": [etype]},
        conditions={k: v for k, v in (("cpu", cpu), ("gpu", {"count": gpus})) if v},
    ),
    st.sampled_from(["a", "b"]),
    st.sampled_from(["python", "process"]),
    st.integers(-2, 2),
    st.sampled_from([-1, 0, 4, 9]),
    st.sampled_from([-1, 2, 5]),
    st.sampled_from([0, 1, -1]),
    st.sampled_from(["", "500m", "3"]),
    st.sampled_from([0, 0, 1]),
)


class SnapshotMachine(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        lab = make_colony()
        certificates = [m.certificate for m in lab.members]
        ledger = Ledger(lab.colony, genesis_ms=GENESIS_MS, certificates=certificates, config=CONFIG)
        self.h = LedgerHarness(lab, ledger)
        self.executors: list[Member] = [
            self.h.executor("py-small", "python", cpu=1000),
            self.h.executor("py-gpu", "python", cpu=4000, gpus=1),
            self.h.executor("proc", "process", cpu=8000),
        ]
        self.twins: list[Ledger] = []
        self.nonces = 0
        self.forks = 0

    # --- entries go to the ledger and every twin ----------------------------------------

    def _entry(self, frame: bytes) -> list[LedgerEvent]:
        events = self.h.apply_entry(frame)
        index = len(self.h.entries)
        for twin in self.twins:
            assert twin.apply(index, frame) == events, f"a restored twin differs at entry {index}"
        return events

    def _apply(self, member: Member, body: object) -> list[LedgerEvent]:
        return self._entry(self.h.seal(member, body))

    def _nonce(self) -> bytes:
        self.nonces += 1
        return self.nonces.to_bytes(16, "big")

    def _pid(self, data: st.DataObject) -> str:
        ids = list(self.h.ledger.processes)
        return data.draw(st.sampled_from(ids)) if ids else "missing"

    def _running(self) -> list[str]:
        return [
            pid for pid, p in self.h.ledger.processes.items() if p.state is ProcessState.RUNNING
        ]

    def _assignee(self, pid: str) -> Member:
        key = self.h.ledger.processes[pid].executor
        return next(m for m in self.executors if m.keys.public_key == key)

    # --- the snapshot rules --------------------------------------------------------------

    @rule()
    def fork(self) -> None:
        data = self.h.ledger.snapshot()
        twin = Ledger.from_snapshot(self.h.lab.colony, data, CONFIG)
        assert twin.snapshot() == data
        self.twins = [*self.twins[-(TWINS_MAX - 1) :], twin]
        self.forks += 1

    @precondition(lambda self: bool(self.h.entries))
    @rule(data=st.data())
    def replay_an_old_entry(self, data: st.DataObject) -> None:
        frame = data.draw(st.sampled_from(self.h.entries))
        events = self._entry(frame)
        assert isinstance(events[0], CommandRefused)

    # --- commands --------------------------------------------------------------------------

    @rule(body=SPECS)
    def submit(self, body: dict[str, object]) -> None:
        self._apply(self.h.submitter, SubmitFunction(json.dumps(body), self._nonce()))

    @rule(n=st.integers(1, 3), fan_in=st.booleans(), waittime=st.sampled_from([0, 5]))
    def submit_workflow(self, n: int, fan_in: bool, waittime: int) -> None:
        nodes = [spec("a", "python", nodename=f"n{i}", maxwaittime=waittime) for i in range(n)]
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
        self._apply(self.h.submitter, SubmitWorkflow(text, self._nonce()))

    @rule(data=st.data())
    def claim_any(self, data: st.DataObject) -> None:
        self._apply(data.draw(st.sampled_from(self.executors)), Claim())

    @rule(data=st.data())
    def claim_specific(self, data: st.DataObject) -> None:
        self._apply(data.draw(st.sampled_from(self.executors)), Claim(self._pid(data)))

    @precondition(lambda self: bool(self._running()))
    @rule(data=st.data(), ok=st.booleans())
    def close_or_fail(self, data: st.DataObject, ok: bool) -> None:
        pid = data.draw(st.sampled_from(self._running()))
        output = json.dumps([{"y": pid[:3], "x": 1.5}, 2**70])
        self._apply(self._assignee(pid), Close(pid, output) if ok else Fail(pid, ("x",)))

    @precondition(lambda self: bool(self._running()))
    @rule(data=st.data(), key=st.sampled_from(["k", "j", "i"]))
    def log_attribute_extend(self, data: st.DataObject, key: str) -> None:
        pid = data.draw(st.sampled_from(self._running()))
        member = self._assignee(pid)
        self._apply(member, AddLog(pid, f"line {len(self.h.entries)}"))
        self._apply(member, SetAttribute(pid, key, str(len(self.h.entries))))
        child = json.dumps(spec("a", "python", args=[len(self.h.entries)]))
        self._apply(member, AddChild(pid, child, self._nonce(), data.draw(st.booleans())))

    @rule(data=st.data(), funcname=st.sampled_from(["a", "b", "c"]))
    def register_function(self, data: st.DataObject, funcname: str) -> None:
        executor = data.draw(st.sampled_from(self.executors))
        self._apply(executor, RegisterFunction(funcname, f"does {funcname}"))

    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        ledger = self.h.ledger
        targets = [i for i, p in ledger.processes.items() if not p.state.is_final]
        targets += [i for i, w in ledger.workflows.items() if not w.state.is_final]
        if targets:
            self._apply(self.h.submitter, Cancel(data.draw(st.sampled_from(targets))))

    @rule(seconds=st.sampled_from([0.5, 3, 7]))
    def tick(self, seconds: float) -> None:
        self._apply(self.h.server, Tick(self.h.ledger.now_ms + int(seconds * 1000)))

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

    @precondition(lambda self: len(self.h.lab.members) < 12)
    @rule(data=st.data())
    def revoke_and_replace_an_executor(self, data: st.DataObject) -> None:
        i = data.draw(st.integers(0, len(self.executors) - 1))
        old = self.executors[i]
        revocation = revoke(self.h.lab.owner, old.certificate, now=NOW)
        self._apply(self.h.server, Revoke(encode_record(revocation)))
        self._apply(old, RegisterExecutor(old.certificate.name))  # refused: revoked
        # A newcomer takes its place, admitted and registered through the log.
        keys = KeyPair.generate()
        certificate = issue_certificate(
            self.h.lab.owner,
            self.h.lab.colony,
            keys.public_key,
            name=f"{old.certificate.name}-{len(self.h.lab.members)}",
            roles=old.certificate.roles,
            not_before=old.certificate.not_before,
            not_after=old.certificate.not_after,
            serial=len(self.h.lab.members) + 500,
            executor_type=old.certificate.executor_type,
            capabilities=old.certificate.capabilities,
        )
        new = Member(keys, Signer(keys), certificate)
        self.h.lab.members.append(new)
        self._apply(new, Admit(encode_record(certificate)))
        self._apply(new, RegisterExecutor(certificate.name))
        self.executors[i] = new

    # --- the property ------------------------------------------------------------------------

    @invariant()
    def twins_equal_the_ledger(self) -> None:
        data = self.h.ledger.snapshot()
        for twin in self.twins:
            assert twin.snapshot() == data
            assert list(twin.ready_processes("python")) == list(
                self.h.ledger.ready_processes("python")
            )

    @invariant()
    def snapshot_restore_snapshot_is_identity(self) -> None:
        data = self.h.ledger.snapshot()
        assert Ledger.from_snapshot(self.h.lab.colony, data, CONFIG).snapshot() == data


SnapshotMachine.TestCase.settings = settings(
    max_examples=30,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestSnapshotMachine = SnapshotMachine.TestCase
