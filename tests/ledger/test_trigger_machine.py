"""Crons and generators under competing, stale leaders: every tick fires once (hypothesis).

Three servers each keep a *view* of what is due, taken whenever they look; a
server proposes the firings of its view, however stale, as a deposed leader
that has not yet heard of its successor would. Ticks, packs and finished
processes interleave freely. After every step: no cron tick started twice,
runs started in tick order, wait-for-previous never overlaps runs, and every
packed generator argument is in exactly one run or still waiting, in order.
"""

from __future__ import annotations

import json

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from colonymesh.node.certs import Role, encode_record
from colonymesh.node.ledger.commands import (
    AddCron,
    AddGenerator,
    Admit,
    Claim,
    Close,
    FireCron,
    FireGenerator,
    PackGenerator,
)
from colonymesh.node.ledger.events import CommandApplied
from colonymesh.node.ledger.model import ProcessState
from support.colony import Member
from support.ledger import make_harness, spec

WORKFLOW = json.dumps({"colonyname": "", "functionspecs": [{**spec("f"), "nodename": "f"}]})


class Triggers(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.h = make_harness()
        self.servers: list[Member] = [self.h.server]
        for name in ("server-2", "server-3"):
            member = self.h.lab.admit(name, (Role.SERVER,))
            self.h.ok(member, Admit(encode_record(member.certificate)))
            self.servers.append(member)
        self.executor = self.h.executor("worker")
        self.waiting_cron, _ = self.h.ok(
            self.h.submitter, AddCron("wait", WORKFLOW, b"w" * 16, "", 3, True)
        )
        self.eager_cron, _ = self.h.ok(
            self.h.submitter, AddCron("eager", WORKFLOW, b"e" * 16, "*/2 * * * * *")
        )
        self.generator, _ = self.h.ok(
            self.h.submitter, AddGenerator("gen", WORKFLOW, b"g" * 16, 2, 5)
        )
        self.views: list[list[FireCron | FireGenerator]] = [[], [], []]
        self.fired: dict[str, list[int]] = {self.waiting_cron: [], self.eager_cron: []}
        self.cron_workflows: dict[str, list[str]] = {self.waiting_cron: [], self.eager_cron: []}
        self.packed: list[str] = []
        self.batches: list[list[str]] = []
        self.generator_runs: list[int] = []

    @rule(seconds=st.integers(0, 7))
    def tick(self, seconds: int) -> None:
        self.h.tick(seconds)

    @rule(server=st.integers(0, 2))
    def look(self, server: int) -> None:
        ledger = self.h.ledger
        view: list[FireCron | FireGenerator] = [FireCron(c, d) for c, d in ledger.crons.due(ledger)]
        view += [FireGenerator(g, r) for g, r in ledger.generators.due(ledger.now_ms)]
        self.views[server] = view

    @rule(server=st.integers(0, 2))
    def propose(self, server: int) -> None:
        for body in self.views[server]:
            events = self.h.run(self.servers[server], body)
            if not isinstance(events[0], CommandApplied):
                continue
            subject = events[0].subject
            if isinstance(body, FireCron):
                if body.due_ms > self.h.ledger.now_ms:
                    raise AssertionError(f"a tick fired before it was due: {body}")
                self.fired[body.cron_id].append(body.due_ms)
                self.cron_workflows[body.cron_id].append(subject)
            else:
                self.generator_runs.append(body.run)
                process_id = self.h.ledger.workflows[subject].process_ids[0]
                args = self.h.ledger.processes[process_id].spec.args
                self.batches.append([str(a) for a in args])

    @rule()
    def pack(self) -> None:
        arg = f"arg-{len(self.packed)}"
        self.h.ok(self.h.submitter, PackGenerator("gen", arg))
        self.packed.append(arg)

    @rule()
    def finish_one(self) -> None:
        events = self.h.run(self.executor, Claim())
        if isinstance(events[0], CommandApplied):
            self.h.ok(self.executor, Close(events[0].subject, "[1]"))

    @invariant()
    def every_cron_tick_fired_at_most_once_in_order(self) -> None:
        for cron_id, dues in self.fired.items():
            assert dues == sorted(set(dues)), f"cron {cron_id[:8]} ticks {dues}"
            cron = self.h.ledger.crons.crons[cron_id]
            assert cron.runs == len(dues) == len(set(self.cron_workflows[cron_id]))
            if dues:
                assert cron.next_due_ms > dues[-1]

    @invariant()
    def wait_for_previous_never_overlaps_runs(self) -> None:
        workflows = self.h.ledger.workflows
        unfinished = [
            w
            for w in self.cron_workflows[self.waiting_cron]
            if workflows[w].state is not ProcessState.SUCCESS
        ]
        assert len(unfinished) <= 1

    @invariant()
    def every_packed_argument_is_in_one_run_or_waiting(self) -> None:
        generator = self.h.ledger.generators.generators[self.generator]
        waiting = [arg for _, arg in generator.pending]
        assert [a for batch in self.batches for a in batch] + waiting == self.packed
        assert all(1 <= len(batch) <= 2 for batch in self.batches)
        assert generator.runs == len(self.batches)
        assert self.generator_runs == list(range(len(self.generator_runs)))  # each run once


Triggers.TestCase.settings = settings(max_examples=40, stateful_step_count=40, deadline=None)
TestTriggers = Triggers.TestCase
