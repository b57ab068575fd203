"""Leader-parallel persist (Raft dissertation §10.2.1) and the commit-only Ready.

The leader sends its appends while it persists them (``send_while_persisting``)
and counts its own copy in a quorum only once ``advance`` reports it durable;
a Ready whose only change is the commit index needs no fsync (``must_sync``).
"""

from __future__ import annotations

import contextlib
import random

import pytest

from colonymesh.consensus import (
    AppendEntries,
    AppendResponse,
    NotLeader,
    ProposalDropped,
    RaftConfig,
    Role,
)
from colonymesh.consensus.testing import Cluster, SafetyViolation
from colonymesh.consensus.types import LogIndex, NodeId

CFG = RaftConfig(election_timeout_s=1.0, heartbeat_interval_s=0.1)


def rng(i: NodeId) -> random.Random:
    return random.Random(f"parallel-{i}")


def elected(n: int = 3, who: str = "1") -> Cluster:
    c = Cluster([str(k) for k in range(1, n + 1)], rng, config=CFG)
    c.stabilize()
    c.node(who).campaign(c.now)
    c.stabilize()
    assert c.node(who).role is Role.LEADER
    return c


def step_follower(c: Cluster, follower: str, msg: AppendEntries) -> AppendResponse:
    """Deliver ``msg`` to ``follower``, let it persist and answer; return the answer."""
    c.node(follower).step(msg, c.now)
    c.process(NodeId(follower))
    (resp,) = [m for m in c.network if isinstance(m, AppendResponse) and m.src == follower]
    c.network.remove(resp)
    return resp


def test_10_2_1_leader_sends_before_persisting_and_counts_itself_only_after() -> None:
    c = elected()
    leader = c.node("1")
    res = leader.propose(b"x")
    rd = leader.ready()
    assert rd is not None and rd.send_while_persisting and rd.must_sync
    assert [e.index for e in rd.entries] == [res.index]
    appends = {m.dst: m for m in rd.messages if isinstance(m, AppendEntries)}
    assert sorted(appends) == ["2", "3"]
    # One follower stored it; the leader's own copy is not durable yet: 1 of 3.
    leader.step(step_follower(c, "2", appends[NodeId("2")]), c.now)
    assert leader.commit < res.index
    c.stores[NodeId("1")].save(rd)
    leader.advance(rd)  # the leader's persist is acknowledged: 2 of 3
    assert leader.commit == res.index


def test_10_2_1_two_followers_commit_before_the_leaders_own_fsync() -> None:
    c = elected()
    leader = c.node("1")
    res = leader.propose(b"x")
    rd = leader.ready()
    assert rd is not None and rd.send_while_persisting
    for m in rd.messages:
        if isinstance(m, AppendEntries):
            leader.step(step_follower(c, m.dst, m), c.now)
    assert leader.commit == res.index  # a quorum of durable copies, none of them ours
    # The leader crashes before its own fsync: the entry is still committed.
    c.crash("1")
    c.run_for(3.0)
    new = c.leader()
    assert new in ("2", "3")
    assert c.node(new).log.term(res.index) == res.term
    c.restart("1")
    c.run_for(1.0)
    for i in ("1", "2", "3"):
        assert c.machines[NodeId(i)].index >= res.index


def test_10_2_1_a_leader_that_crashes_before_its_fsync_committed_nothing_it_loses() -> None:
    """Had the leader counted its unpersisted copy, entry k would be committed with
    one durable copy (on 2); the leader crashes, 3 wins with the restarted 1's
    vote, and the cluster checker reports a leader lacking a committed entry."""
    c = elected()
    res = c.node("1").propose(b"k")
    assert c.begin(NodeId("1"))  # appends sent, the leader's persist in flight
    (ae,) = [m for m in c.network if isinstance(m, AppendEntries) and m.dst == "2"]
    c.network.remove(ae)
    c.node("1").step(step_follower(c, "2", ae), c.now)
    c.check_safety()
    assert c.node("1").commit < res.index
    c.crash("1")
    c.network.clear()
    c.restart("1")
    c.partition(["1", "3"], ["2"])
    c.run_for(5.0)  # the checkers run after every step
    assert c.leader() in ("1", "3")
    assert res.index not in c.committed or c.node(c.leader() or "1").log.term(res.index)


def test_a_candidate_and_a_follower_never_send_before_persisting() -> None:
    no_pre_vote = RaftConfig(election_timeout_s=1.0, heartbeat_interval_s=0.1, pre_vote=False)
    c = Cluster(["1", "2", "3"], rng, config=no_pre_vote)
    c.stabilize()
    c.node("1").campaign(c.now)
    rd = c.node("1").ready()
    assert rd is not None and rd.hard_state is not None
    assert not rd.send_while_persisting and rd.must_sync  # votes vouch for term and vote
    c.stores[NodeId("1")].save(rd)
    c.network.extend(rd.messages)
    c.node("1").advance(rd)
    c.stabilize()
    assert c.node("1").role is Role.LEADER
    c.node("1").propose(b"y")
    c.process(NodeId("1"))
    c.deliver_all()
    rd = c.node("2").ready()
    assert rd is not None and rd.entries and not rd.send_while_persisting and rd.must_sync


def test_a_lone_voter_leader_with_a_learner_waits_for_its_term_to_be_durable() -> None:
    c = Cluster(["1"], rng, config=CFG, learners=["2"])
    c.stabilize()
    c.node("1").campaign(c.now)  # wins at once: its new term is not durable yet
    rd = c.node("1").ready()
    assert rd is not None and c.node("1").role is Role.LEADER
    assert not rd.send_while_persisting and rd.must_sync
    c.node("1").advance(rd)
    res = c.node("1").propose(b"z")
    rd = c.node("1").ready()
    assert rd is not None and rd.send_while_persisting
    assert c.node("1").commit < res.index  # even alone it waits for its own persist
    c.node("1").advance(rd)
    assert c.node("1").commit == res.index


def test_a_commit_only_ready_needs_no_fsync() -> None:
    c = elected()
    res = c.node("1").propose(b"x")
    c.process(NodeId("1"))
    c.deliver_all()  # appends reach the followers
    c.process_all()
    c.deliver_all()  # their answers reach the leader: committed
    assert c.node("1").commit == res.index
    rd = c.node("1").ready()
    assert rd is not None and rd.hard_state is not None
    assert rd.hard_state.commit == res.index and not rd.entries
    assert not rd.must_sync
    c.node("1").advance(rd)
    c.stabilize()
    c.elapse(CFG.heartbeat_interval_s)
    c.process(NodeId("1"))
    c.deliver_all()
    rd = c.node("2").ready()  # the heartbeat told it the commit index
    if rd is not None and rd.hard_state is not None:
        assert not rd.entries and not rd.must_sync


def run_seed(seed: int) -> int:
    """A random run where leaders crash after sending and before persisting; the
    cluster's safety checkers (election safety, log matching, leader completeness
    over every node's commit index, state-machine safety) run after every step,
    then everything committed must reach every node. Returns the crashes made."""
    r = random.Random(seed)
    n = r.choice((3, 3, 5))
    ids = [str(k) for k in range(1, n + 1)]
    c = Cluster(ids, lambda i: random.Random(f"{seed}-{i}"), config=CFG)
    c.stabilize()
    crashes = 0
    for _ in range(400):
        op = r.random()
        leader = c.leader()
        if op < 0.25 and leader is not None:
            with contextlib.suppress(NotLeader, ProposalDropped):
                c.node(leader).propose(b"v%d" % r.randrange(1 << 30))
        elif op < 0.4 and leader is not None:
            c.begin(NodeId(leader))  # sends now, persists later (or never)
        elif op < 0.7 and c.network:
            c.deliver_one(r.randrange(len(c.network)))
        elif op < 0.85:
            live = [i for i, _ in c.live()]
            c.process(r.choice(live))
        elif op < 0.9 and leader is not None and NodeId(leader) in c.in_flight:
            crashes += 1
            c.crash(leader)
        elif op < 0.95:
            down = [i for i in c.ids if c.nodes[i] is None]
            if down:
                c.restart(r.choice(down))
        else:
            c.elapse(r.uniform(0.05, 0.6))
    for i in c.ids:
        c.restart(i)
    c.run_for(6.0)
    c.stabilize()
    committed = max(c.committed) if c.committed else 0
    for i in c.ids:
        if c.machines[i].index < committed:
            raise SafetyViolation(f"{i} applied {c.machines[i].index} < committed {committed}")
    return crashes


@pytest.mark.parametrize("seed", range(30))
def test_crashes_between_send_and_persist_lose_nothing_committed(seed: int) -> None:
    run_seed(seed)


def test_the_sweep_reaches_the_send_before_persist_window() -> None:
    assert sum(run_seed(seed) for seed in range(5)) >= 3


def test_stable_index_follows_what_was_persisted() -> None:
    c = elected()
    leader = c.node("1")
    before = leader.log.stable_index
    leader.propose(b"a")
    rd = leader.ready()
    assert rd is not None
    leader.propose(b"b")  # appended after the Ready was taken: not in its persist
    assert leader.log.stable_index == before
    c.stores[NodeId("1")].save(rd)
    leader.advance(rd)
    assert leader.log.stable_index == rd.entries[-1].index == LogIndex(before + 1)
    assert leader.log.last_index() == before + 2
