"""Hypothesis state machine over 3-5 Raft cores on a hostile fake network.

Rules deliver, drop, duplicate and reorder messages, let time pass, crash and
restart nodes (restart from exactly what the Ready contract made durable),
propose commands, compact logs, change membership, transfer leadership and
read. After every step the cluster checks Raft's safety properties (Raft
§5.2 election safety, §5.3 log matching, §5.4 leader completeness, §5.4.3
state-machine safety, applied entries never change) plus ReadIndex
linearizability; at the end the network heals and the group must converge
and commit again (liveness).
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from colonymesh.consensus import (
    ConfChange,
    ConfChangeOp,
    NotLeader,
    ProposalDropped,
    RaftConfig,
    RaftUsageError,
    Role,
)
from colonymesh.consensus.confchange import ConfChangeError
from colonymesh.consensus.testing import Cluster, SafetyViolation
from colonymesh.consensus.types import LogIndex, NodeId

CONFIG = RaftConfig(
    election_timeout_s=1.0,
    heartbeat_interval_s=0.1,
    max_inflight_msgs=2,
    max_append_entries=3,
    snapshot_chunk_bytes=16,
)
NAMES = ["1", "2", "3", "4", "5"]


class RaftMachine(RuleBasedStateMachine):
    cluster: Cluster

    @initialize(
        voters=st.integers(3, 5),
        pre_vote=st.booleans(),
        check_quorum=st.booleans(),
        seed=st.integers(0, 2**32),
        elect=st.booleans(),
    )
    def setup(
        self, voters: int, pre_vote: bool, check_quorum: bool, seed: int, elect: bool
    ) -> None:
        config = RaftConfig(
            election_timeout_s=CONFIG.election_timeout_s,
            heartbeat_interval_s=CONFIG.heartbeat_interval_s,
            max_inflight_msgs=CONFIG.max_inflight_msgs,
            max_append_entries=CONFIG.max_append_entries,
            snapshot_chunk_bytes=CONFIG.snapshot_chunk_bytes,
            pre_vote=pre_vote,
            check_quorum=check_quorum,
        )
        self.cluster = Cluster(
            NAMES[:voters],
            lambda i: random.Random(f"{seed}-{i}"),
            config=config,
            extra=NAMES[voters:] or ["6"],
        )
        self.counter = 0
        self.reads: dict[bytes, int] = {}  # context -> commit index known when asked
        if elect:
            self.cluster.node("1").campaign(0.0)
            self.cluster.stabilize()

    # -- helpers -----------------------------------------------------------------

    def _leader(self) -> NodeId | None:
        return self.cluster.leader()

    def _known_commit(self) -> int:
        return max(self.cluster.committed, default=0)

    # -- rules -------------------------------------------------------------------

    @rule()
    def process(self) -> None:
        self.cluster.process_all()

    @precondition(lambda self: bool(self.cluster.network))
    @rule(pos=st.integers(0, 1000))
    def deliver(self, pos: int) -> None:
        self.cluster.deliver_one(pos % len(self.cluster.network))

    @precondition(lambda self: bool(self.cluster.network))
    @rule()
    def deliver_all(self) -> None:
        self.cluster.process_all()
        self.cluster.deliver_all()

    @precondition(lambda self: bool(self.cluster.network))
    @rule(pos=st.integers(0, 1000))
    def drop(self, pos: int) -> None:
        self.cluster.network.pop(pos % len(self.cluster.network))

    @precondition(lambda self: bool(self.cluster.network))
    @rule(pos=st.integers(0, 1000))
    def duplicate(self, pos: int) -> None:
        net = self.cluster.network
        net.append(net[pos % len(net)])

    @rule(rounds=st.integers(1, 8))
    def settle(self, rounds: int) -> None:
        """A few rounds of a perfect network (makes elections and commits likely)."""
        for _ in range(rounds):
            self.cluster.process_all()
            self.cluster.deliver_all()

    @rule(dt=st.sampled_from([0.05, 0.1, 0.3, 1.0, 2.0]))
    def elapse(self, dt: float) -> None:
        self.cluster.elapse(dt)

    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        live = [i for i, _ in self.cluster.live()]
        if live:
            self.cluster.crash(data.draw(st.sampled_from(live)))

    @rule(data=st.data())
    def restart(self, data: st.DataObject) -> None:
        down = [i for i, n in self.cluster.nodes.items() if n is None]
        if down:
            self.cluster.restart(data.draw(st.sampled_from(down)))

    @rule(data=st.data())
    def campaign(self, data: st.DataObject) -> None:
        live = self.cluster.live()
        if live:
            _, node = data.draw(st.sampled_from(live))
            node.campaign(self.cluster.now)

    @rule(count=st.integers(1, 4))
    def propose(self, count: int) -> None:
        leader = self._leader()
        if leader is None:
            return
        node = self.cluster.node(leader)
        for _ in range(count):
            self.counter += 1
            try:
                node.propose(f"c{self.counter}".encode())
            except (NotLeader, ProposalDropped):
                return

    @rule(data=st.data())
    def compact(self, data: st.DataObject) -> None:
        live = self.cluster.live()
        if not live:
            return
        i, node = data.draw(st.sampled_from(live))
        machine = self.cluster.machines[i]
        if machine.index > node.log.snapshot_index and machine.index <= node.applied:
            node.compact(LogIndex(machine.index), machine.snapshot())

    @rule(data=st.data(), op=st.sampled_from(list(ConfChangeOp)))
    def change_membership(self, data: st.DataObject, op: ConfChangeOp) -> None:
        leader = self._leader()
        if leader is None:
            return
        target = NodeId(data.draw(st.sampled_from(self.cluster.ids)))
        node = self.cluster.node(leader)
        try:
            node.propose_conf_change(ConfChange(op, target))
        except (ProposalDropped, ConfChangeError, NotLeader):
            return
        if self.cluster.nodes[target] is None and target not in self.cluster.stores:
            return

    @rule(data=st.data())
    def transfer(self, data: st.DataObject) -> None:
        leader = self._leader()
        if leader is None:
            return
        node = self.cluster.node(leader)
        target = NodeId(data.draw(st.sampled_from(self.cluster.ids)))
        try:
            node.transfer_leadership(target, self.cluster.now)
        except (RaftUsageError, NotLeader):
            return

    @rule(data=st.data())
    def read(self, data: st.DataObject) -> None:
        live = self.cluster.live()
        if not live:
            return
        _, node = data.draw(st.sampled_from(live))
        self.counter += 1
        ctx = f"r{self.counter}".encode()
        try:
            node.read_index(ctx)
        except (NotLeader, ProposalDropped):
            return
        self.reads[ctx] = self._known_commit()

    # -- invariants --------------------------------------------------------------

    @invariant()
    def safety(self) -> None:
        self.cluster.check_safety()

    @invariant()
    def has_ready_is_truthful(self) -> None:
        """A driver may sleep when has_ready() is False: then ready() has nothing."""
        for _, node in self.cluster.live():
            if not node.has_ready():
                assert node.ready() is None

    @invariant()
    def reads_are_linearizable(self) -> None:
        """A ReadIndex answer covers every entry known committed when it was asked."""
        for i, states in self.cluster.read_states.items():
            for rs in states:
                asked = self.reads.get(rs.context)
                if asked is None or rs.index < asked:
                    raise SafetyViolation(f"{i}: stale read {rs} (committed {asked})")

    def teardown(self) -> None:
        """Heal phase: everything restarts, the network heals, the group must
        elect a leader and commit a new command on every live voter."""
        c = getattr(self, "cluster", None)
        if c is None:
            return
        event(f"committed before heal: {_bucket(len(c.committed))}")
        event(f"leaders before heal: {_bucket(len(c.leaders))}")
        c.heal()
        for i in c.ids:
            c.restart(i)
        c.network.clear()
        for _ in range(60):
            c.run_for(0.5)
            leader = c.leader()
            if leader is not None and c.node(leader).status().role is Role.LEADER:
                try:
                    res = c.node(leader).propose(b"final")
                except (ProposalDropped, NotLeader):
                    continue
                c.run_for(0.5)
                voters = c.node(leader).conf.voters
                if all(c.node(v).commit >= res.index for v in voters):
                    return
        raise SafetyViolation("the healed cluster did not converge")


def _bucket(n: int) -> str:
    return "0" if n == 0 else "1-5" if n <= 5 else "6-20" if n <= 20 else ">20"


RaftMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestRaftStateMachine = RaftMachine.TestCase


@pytest.mark.slow
def test_raft_state_machine_long() -> None:
    run_state_machine_as_test(
        RaftMachine,
        settings=settings(
            max_examples=1500,
            stateful_step_count=120,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
