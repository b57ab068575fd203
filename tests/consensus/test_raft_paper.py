"""Unit tests of the Raft core, each citing the section of the Raft paper (or of
Ongaro's dissertation) whose rule it checks. Several cores are pushed through
the fake network of :mod:`colonymesh.consensus.testing`."""

from __future__ import annotations

import random

import pytest

from colonymesh.consensus import (
    AppendEntries,
    AppendResponse,
    ConfChange,
    ConfChangeOp,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    NotLeader,
    ProposalDropped,
    RaftConfig,
    RaftNode,
    RaftUsageError,
    Role,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
)
from colonymesh.consensus.confchange import bootstrap_entries
from colonymesh.consensus.testing import Cluster
from colonymesh.consensus.types import (
    ConfState,
    Entry,
    EntryKind,
    HardState,
    LogIndex,
    NodeId,
    Term,
)

NO = (LogIndex(0), Term(0))
CFG = RaftConfig(election_timeout_s=1.0, heartbeat_interval_s=0.1)


def rng(i: NodeId) -> random.Random:
    return random.Random(f"paper-{i}")


def cluster(n: int = 3, **kw: object) -> Cluster:
    config = kw.pop("config", CFG)
    c = Cluster([str(k) for k in range(1, n + 1)], rng, config=config, **kw)  # type: ignore[arg-type]
    c.stabilize()  # persist and apply the bootstrap entries
    return c


def elect(c: Cluster, who: str = "1") -> None:
    c.node(who).campaign(c.now)
    c.stabilize()
    assert c.node(who).role is Role.LEADER


def sent(c: Cluster, kind: type, src: str | None = None) -> list:  # type: ignore[type-arg]
    c.process_all()
    return [m for m in c.network if isinstance(m, kind) and (src is None or m.src == src)]


def mk_node(i: str = "1", voters: tuple[str, ...] = ("1", "2", "3"), **kw: object) -> RaftNode:
    conf = ConfState(voters=tuple(NodeId(v) for v in voters))
    return RaftNode(NodeId(i), conf, CFG, rng(NodeId(i)), 0.0, **kw)  # type: ignore[arg-type]


def drain(node: RaftNode) -> None:
    while (rd := node.ready()) is not None:
        node.advance(rd)


# ---------------------------------------------------------------- §5.2 election


def test_5_2_follower_campaigns_after_randomized_election_timeout() -> None:
    c = cluster()
    deadlines = [c.node(i).next_deadline() for i in "123"]
    for d in deadlines:
        assert CFG.election_timeout_s <= d < 2 * CFG.election_timeout_s
    assert len(set(deadlines)) == 3, "timeouts are randomised per node"
    first = min(range(3), key=lambda k: deadlines[k])
    c.elapse(deadlines[first] + 1e-6)
    roles = [c.node(i).role for i in "123"]
    assert roles[first] is Role.PRE_CANDIDATE
    assert roles.count(Role.FOLLOWER) == 2


def test_5_2_candidate_votes_for_itself_and_wins_with_majority() -> None:
    c = cluster(5)
    node = c.node("1")
    node.campaign(c.now)
    c.stabilize()
    assert node.role is Role.LEADER
    assert node.voted_for == "1"
    assert all(c.node(i).leader == "1" for i in "12345")


def test_5_2_each_server_votes_for_at_most_one_candidate_per_term() -> None:
    node = mk_node("3")
    drain(node)
    for cand in ("1", "2"):
        node.step(VoteRequest(NodeId(cand), NodeId("3"), Term(2), LogIndex(3), Term(1)), 0.0)
    rd = node.ready()
    assert rd is not None
    votes = [m for m in rd.messages if isinstance(m, VoteResponse)]
    assert [(m.dst, m.granted) for m in votes] == [("1", True), ("2", False)]
    assert rd.hard_state is not None and rd.hard_state.voted_for == "1"


def test_5_2_candidate_steps_down_on_append_from_leader_of_same_term() -> None:
    node = mk_node("1")
    drain(node)
    node.campaign(0.0)
    node.step(VoteResponse(NodeId("2"), NodeId("1"), Term(2), True, pre_vote=True), 0.0)
    assert node.role is Role.CANDIDATE and node.term == 2
    node.step(
        AppendEntries(NodeId("3"), NodeId("1"), Term(2), LogIndex(3), Term(1), (), LogIndex(3)),
        0.1,
    )
    assert node.role is Role.FOLLOWER and node.leader == "3"


def test_5_2_split_vote_leads_to_a_new_election_in_a_later_term() -> None:
    cfg = RaftConfig(pre_vote=False, check_quorum=False)
    c = cluster(4, config=cfg)
    c.node("1").campaign(c.now)
    c.node("2").campaign(c.now)
    # 1 and 2 each get one other vote: nobody reaches 3 of 4.
    c.process_all()
    c.deliver_all(lambda m: (m.src, m.dst) in (("1", "3"), ("2", "4")))
    c.stabilize()
    assert c.leader() is None
    c.run_for(5)
    leader = c.leader()
    assert leader is not None and c.node(leader).term >= 3


def test_5_4_1_vote_denied_to_candidate_with_less_up_to_date_log() -> None:
    c = cluster()
    elect(c)
    c.node("1").propose(b"x")
    c.stabilize()
    voter = c.node("2")
    stale = VoteRequest(NodeId("3"), NodeId("2"), Term(voter.term + 1), LogIndex(3), Term(1))
    c.now += 5  # outside the leader lease
    voter.step(stale, c.now)
    replies = [m for m in sent(c, VoteResponse) if m.dst == "3"]
    assert replies and not replies[0].granted


# ------------------------------------------------------------- §5.3 replication


def test_5_3_leader_commits_once_a_majority_stores_the_entry() -> None:
    c = cluster(5)
    elect(c)
    c.crash("4")
    c.crash("5")
    res = c.node("1").propose(b"x")
    c.stabilize()
    assert c.node("1").commit >= res.index
    assert c.machines[NodeId("2")].commands[-1] == b"x"
    c.crash("3")
    res2 = c.node("1").propose(b"y")
    c.stabilize()
    assert c.node("1").commit < res2.index, "2 of 5 is not a majority"


def test_5_3_proposals_are_batched_into_one_append_per_follower() -> None:
    c = cluster()
    elect(c)
    for k in range(50):
        c.node("1").propose(b"%d" % k)
    appends = sent(c, AppendEntries, "1")
    assert len(appends) == 2
    assert all(len(m.entries) == 50 for m in appends)


def test_5_3_pipelining_is_bounded_by_inflight_messages_and_bytes() -> None:
    cfg = RaftConfig(max_inflight_msgs=3, max_append_entries=2)
    c = cluster(config=cfg)
    elect(c)
    for k in range(20):
        c.node("1").propose(b"%d" % k)
    to_2 = [m for m in sent(c, AppendEntries, "1") if m.dst == "2"]
    assert [len(m.entries) for m in to_2] == [2, 2, 2]  # three in flight, then paused
    # Acknowledging the first frees one slot: exactly one more append goes out.
    c.network = [m for m in c.network if m.dst == "2"][:1]
    c.deliver_all()
    c.process("2")
    c.deliver_all()
    more = [m for m in sent(c, AppendEntries, "1") if m.dst == "2"]
    assert len(more) == 1 and more[0].prev_log_index == to_2[-1].entries[-1].index

    byte_cfg = RaftConfig(max_inflight_bytes=300, max_append_entries=1)
    c2 = cluster(config=byte_cfg)
    elect(c2)
    for _ in range(10):
        c2.node("1").propose(b"x" * 100)
    to_2b = [m for m in sent(c2, AppendEntries, "1") if m.dst == "2"]
    assert len(to_2b) == 3  # 3 * (100 + overhead) reaches 300 bytes


def test_5_3_follower_rejects_mismatch_and_truncates_conflicting_suffix() -> None:
    ent = [Entry(Term(1), LogIndex(k), EntryKind.NORMAL, b"a") for k in (1, 2, 3)]
    node = mk_node("2", hard_state=HardState(Term(1), None, LogIndex(1)), entries=ent)
    # prev 3 has term 1, leader says term 2: rejected with a hint.
    node.step(
        AppendEntries(NodeId("1"), NodeId("2"), Term(3), LogIndex(3), Term(2), (), LogIndex(1)),
        0.0,
    )
    rd = node.ready()
    assert rd is not None
    (resp,) = [m for m in rd.messages if isinstance(m, AppendResponse)]
    assert not resp.success and resp.index == 3 and (resp.hint_index, resp.hint_term) == (3, 1)
    node.advance(rd)
    new = (Entry(Term(3), LogIndex(3), EntryKind.NORMAL, b"b"),)
    node.step(
        AppendEntries(NodeId("1"), NodeId("2"), Term(3), LogIndex(2), Term(1), new, LogIndex(3)),
        0.0,
    )
    rd = node.ready()
    assert rd is not None
    assert rd.entries == new, "storage is told to overwrite from index 3"
    assert node.log.entry(3).data == b"b" and node.commit == 3


def test_5_3_fast_backoff_skips_a_whole_term_per_round_trip() -> None:
    # Follower: 1 entry of term 1, then 50 of term 2. Leader (term 4): 1 of term 1, 60 of term 3.
    f_ents = [Entry(Term(1), LogIndex(1), EntryKind.NORMAL, b"")]
    f_ents += [Entry(Term(2), LogIndex(k), EntryKind.NORMAL, b"") for k in range(2, 52)]
    follower = mk_node("2", hard_state=HardState(Term(2), None, LogIndex(1)), entries=f_ents)
    follower.step(
        AppendEntries(NodeId("1"), NodeId("2"), Term(4), LogIndex(61), Term(3), (), LogIndex(1)),
        0.0,
    )
    rd = follower.ready()
    assert rd is not None
    (resp,) = [m for m in rd.messages if isinstance(m, AppendResponse)]
    assert (resp.hint_index, resp.hint_term) == (51, 2)
    l_ents = [Entry(Term(1), LogIndex(1), EntryKind.NORMAL, b"")]
    l_ents += [Entry(Term(3), LogIndex(k), EntryKind.NORMAL, b"") for k in range(2, 62)]
    leader = mk_node("1", hard_state=HardState(Term(3), None, LogIndex(1)), entries=l_ents)
    # The leader's own search: largest index <= 51 with term <= 2 is index 1.
    assert leader.log.find_conflict_by_term(51, 2) == (1, 1)


def test_5_4_2_new_leader_appends_an_empty_entry_of_its_term() -> None:
    c = cluster()
    elect(c)
    last = c.node("1").log.entry(c.node("1").log.last_index())
    assert last.kind is EntryKind.EMPTY and last.term == c.node("1").term
    assert c.node("1").commit == last.index


def test_5_4_2_figure_8_entry_from_older_term_not_committed_by_counting() -> None:
    """Raft Figure 8: a leader must not commit an entry of an earlier term just
    because a majority stores it; only an entry of its own term commits it."""
    ents = [*bootstrap_entries(ConfState(voters=(NodeId("1"), NodeId("2"), NodeId("3"))))]
    ents.append(Entry(Term(2), LogIndex(4), EntryKind.NORMAL, b"t2"))
    node = mk_node("1", hard_state=HardState(Term(3), None, LogIndex(3)), entries=ents)
    node.campaign(0.0)
    node.step(VoteResponse(NodeId("2"), NodeId("1"), Term(4), True, pre_vote=True), 0.0)
    node.step(VoteResponse(NodeId("2"), NodeId("1"), Term(4), True), 0.0)
    assert node.role is Role.LEADER and node.term == 4
    assert node.log.entry(5).kind is EntryKind.EMPTY
    drain(node)
    # Follower 2 now stores index 4 (term 2): a majority holds it, yet no commit.
    node.step(AppendResponse(NodeId("2"), NodeId("1"), Term(4), True, LogIndex(4), *NO), 0.0)
    assert node.commit == 3
    # Once the term-4 entry is on a majority, both commit.
    node.step(AppendResponse(NodeId("2"), NodeId("1"), Term(4), True, LogIndex(5), *NO), 0.0)
    assert node.commit == 5


# ---------------------------------------------------------------- pre-vote, lease


def test_9_6_prevote_partitioned_node_does_not_raise_its_term() -> None:
    c = cluster()
    elect(c)
    term = c.node("1").term
    c.partition(["1", "2"], ["3"])
    c.run_for(10)
    assert c.node("3").term == term
    c.heal()
    c.run_for(2)
    assert c.node("1").role is Role.LEADER and c.node("1").term == term


def test_9_6_without_prevote_a_rejoining_node_disrupts_the_leader() -> None:
    """The contrast case: pre-vote is what keeps the term stable above."""
    cfg = RaftConfig(pre_vote=False, check_quorum=False)
    c = cluster(config=cfg)
    elect(c)
    term = c.node("1").term
    c.partition(["1", "2"], ["3"])
    c.run_for(10)
    assert c.node("3").term > term + 2
    c.heal()
    c.run_for(3)
    assert all(c.node(i).term > term + 2 for i in "123")


def test_6_2_check_quorum_partitioned_leader_steps_down() -> None:
    c = cluster()
    elect(c)
    c.partition(["1"], ["2", "3"])
    c.run_for(2.1)
    assert c.node("1").role is Role.FOLLOWER
    c.run_for(3)
    new = c.leader()
    assert new in ("2", "3")


def test_4_2_3_lease_ignores_vote_requests_while_leader_is_live() -> None:
    c = cluster()
    elect(c)
    term = c.node("2").term
    c.node("2").step(
        VoteRequest(NodeId("3"), NodeId("2"), Term(term + 1), LogIndex(99), Term(term)), c.now
    )
    assert c.node("2").term == term and not sent(c, VoteResponse)


def test_stale_leader_gets_told_the_new_term() -> None:
    c = cluster()
    elect(c)
    c.node("2").step(
        AppendEntries(NodeId("3"), NodeId("2"), Term(1), LogIndex(0), Term(0), (), LogIndex(0)),
        c.now,
    )
    (resp,) = [m for m in sent(c, HeartbeatResponse) if m.dst == "3"]
    assert resp.term == c.node("2").term


# ------------------------------------------------------------------- §7 snapshots


def test_7_compaction_and_snapshot_transfer_in_chunks() -> None:
    cfg = RaftConfig(snapshot_chunk_bytes=10)
    c = cluster(config=cfg)
    elect(c)
    c.crash("3")
    for k in range(10):
        c.node("1").propose(b"v%d" % k)
    c.stabilize()
    m1 = c.machines[NodeId("1")]
    c.node("1").compact(LogIndex(m1.index), m1.snapshot())
    rd = c.node("1").ready()
    assert rd is not None and rd.snapshot is not None and not rd.restore_snapshot
    c.stores[NodeId("1")].save(rd)
    c.node("1").advance(rd)
    assert c.node("1").log.first_index() == m1.index + 1
    c.restart("3")
    c.run_for(0.5)
    chunks = []
    c.trace = []
    c.elapse(0.1)
    for _ in range(20):
        c.process_all()
        chunks += [m for m in c.network if isinstance(m, InstallSnapshot)]
        c.deliver_all()
    assert c.machines[NodeId("3")].digest == m1.digest or c.node("3").commit >= m1.index
    assert c.node("3").log.snapshot_index == m1.index
    assert c.machines[NodeId("3")].index == c.machines[NodeId("1")].index


def test_7_snapshot_chunks_reassemble_in_order_only() -> None:
    cfg = RaftConfig(snapshot_chunk_bytes=4)
    c = cluster(config=cfg)
    elect(c)
    c.crash("3")
    for k in range(5):
        c.node("1").propose(b"v%d" % k)
    c.stabilize()
    m1 = c.machines[NodeId("1")]
    c.node("1").compact(LogIndex(m1.index), m1.snapshot())
    c.stabilize()
    c.restart("3")
    # Let the leader start the snapshot; drop every other chunk: retransmission fills gaps.
    dropped = 0
    for _ in range(200):
        c.elapse(0.1)
        c.process_all()
        keep = []
        for m in c.network:
            if isinstance(m, InstallSnapshot) and m.offset % 8 == 4 and dropped < 5:
                dropped += 1
                continue
            keep.append(m)
        c.network = keep
        c.deliver_all()
        c.process_all()
        if c.node("3").log.snapshot_index == m1.index:
            break
    assert dropped == 5
    assert c.node("3").log.snapshot_index == m1.index
    c.stabilize()
    assert c.machines[NodeId("3")].index == m1.index


def test_7_restart_from_snapshot_and_log() -> None:
    c = cluster()
    elect(c)
    for k in range(5):
        c.node("1").propose(b"v%d" % k)
    c.stabilize()
    m = c.machines[NodeId("2")]
    with pytest.raises(RaftUsageError):
        c.node("2").compact(LogIndex(m.index + 1), m.snapshot())
    at, digest = m.index, m.digest
    c.node("2").compact(LogIndex(at), m.snapshot())
    c.node("1").propose(b"after")
    c.stabilize()
    store = c.stores[NodeId("2")]
    assert store.snapshot is not None and store.snapshot.meta.index == at
    assert [e.index for e in store.entries] == [at + 1]
    assert store.snapshot.meta.conf.voters == ("1", "2", "3")
    c.crash("2")
    c.restart("2")
    assert c.machines[NodeId("2")].index == at and c.machines[NodeId("2")].digest == digest
    c.process(NodeId("2"))
    assert c.machines[NodeId("2")].commands == [b"after"]
    assert c.node("2").conf.voters == ("1", "2", "3")


# --------------------------------------------------------------- §6 membership


def test_6_learner_catches_up_without_voting_then_is_promoted() -> None:
    c = Cluster(["1", "2", "3"], rng, config=CFG, extra=["4"])
    c.restart("4")  # a fresh node with no configuration, waiting to be added
    c.stabilize()
    elect(c)
    for k in range(5):
        c.node("1").propose(b"v%d" % k)
    c.stabilize()
    c.node("1").propose_conf_change(ConfChange(ConfChangeOp.ADD_LEARNER, NodeId("4")))
    c.stabilize()
    learner = c.node("4")
    assert learner.status().role is Role.LEARNER
    assert learner.commit == c.node("1").commit
    # A learner never campaigns.
    assert learner.next_deadline() == float("inf")
    learner.campaign(c.now)
    assert learner.role is Role.FOLLOWER
    # It does not count towards the quorum: with 2 and 3 down nothing commits.
    c.crash("2")
    c.crash("3")
    res = c.node("1").propose(b"y")
    c.stabilize()
    assert c.node("1").commit < res.index
    c.restart("2")
    c.run_for(0.5)
    c.node("1").propose_conf_change(ConfChange(ConfChangeOp.ADD_VOTER, NodeId("4")))
    c.stabilize()
    assert c.node("4").status().role is Role.FOLLOWER
    assert c.node("1").conf.voters == ("1", "2", "3", "4")


def test_6_one_change_at_a_time_and_only_after_committing_in_term() -> None:
    c = cluster()
    c.node("1").campaign(c.now)
    for _ in range(4):  # elected, but its empty entry is not committed yet
        c.process_all()
        c.deliver_all(lambda m: not isinstance(m, AppendResponse))
    leader = c.node("1")
    assert leader.role is Role.LEADER
    with pytest.raises(ProposalDropped):
        leader.propose_conf_change(ConfChange(ConfChangeOp.REMOVE_NODE, NodeId("3")))
    c.stabilize()
    c.run_for(0.3)
    leader.propose_conf_change(ConfChange(ConfChangeOp.REMOVE_NODE, NodeId("3")))
    with pytest.raises(ProposalDropped):
        leader.propose_conf_change(ConfChange(ConfChangeOp.REMOVE_NODE, NodeId("2")))
    c.stabilize()
    assert leader.conf.voters == ("1", "2")
    # Two voters: both are needed now.
    c.crash("3")
    res = leader.propose(b"x")
    c.stabilize()
    assert leader.commit >= res.index


def test_6_conf_change_takes_effect_when_appended_and_reverts_if_truncated() -> None:
    node = mk_node("2")
    drain(node)
    cc = ConfChange(ConfChangeOp.REMOVE_NODE, NodeId("3")).encode()
    ents = (Entry(Term(2), LogIndex(4), EntryKind.CONF_CHANGE, cc),)
    node.step(
        AppendEntries(NodeId("1"), NodeId("2"), Term(2), LogIndex(3), Term(1), ents, LogIndex(3)),
        0.0,
    )
    assert node.conf.voters == ("1", "2")
    drain(node)
    other = (Entry(Term(3), LogIndex(4), EntryKind.NORMAL, b"x"),)
    node.step(
        AppendEntries(NodeId("3"), NodeId("2"), Term(3), LogIndex(3), Term(1), other, LogIndex(3)),
        0.0,
    )
    assert node.conf.voters == ("1", "2", "3")


def test_6_removed_leader_steps_down_after_the_change_commits() -> None:
    c = cluster()
    elect(c)
    c.node("1").propose_conf_change(ConfChange(ConfChangeOp.REMOVE_NODE, NodeId("1")))
    c.stabilize()
    assert c.node("1").role is Role.FOLLOWER
    assert c.leader() in ("2", "3")  # handed over with TimeoutNow
    assert c.node("1").next_deadline() == float("inf")


# -------------------------------------------------------- leadership transfer


def test_3_10_transfer_leadership_with_timeout_now() -> None:
    c = cluster()
    elect(c)
    c.node("1").transfer_leadership(NodeId("3"), c.now)
    assert sent(c, TimeoutNow, "1")
    with pytest.raises(ProposalDropped):
        c.node("1").propose(b"x")
    c.stabilize()
    assert c.leader() == "3"
    assert c.node("1").role is Role.FOLLOWER


def test_3_10_transfer_is_abandoned_after_an_election_timeout() -> None:
    c = cluster()
    elect(c)
    c.crash("3")
    c.node("1").propose(b"x")
    c.stabilize()
    c.node("1").transfer_leadership(NodeId("3"), c.now)
    c.run_for(1.2)
    assert c.node("1").role is Role.LEADER
    c.node("1").propose(b"y")  # accepted again
    with pytest.raises(RaftUsageError):
        c.node("1").transfer_leadership(NodeId("9"), c.now)


# ------------------------------------------------------------------- ReadIndex


def test_6_4_read_index_waits_for_a_heartbeat_quorum() -> None:
    c = cluster()
    elect(c)
    c.node("1").read_index(b"r")
    beats = sent(c, Heartbeat, "1")
    assert beats and all(b.read_seq == 1 for b in beats)
    assert c.read_states[NodeId("1")] == []
    c.network = [m for m in c.network if m.dst == "2"]
    c.deliver_all()
    c.process_all()
    c.deliver_all()
    c.process_all()
    (rs,) = c.read_states[NodeId("1")]
    assert rs.context == b"r" and rs.index == c.node("1").commit


def test_6_4_read_index_not_served_before_leader_commits_in_its_term() -> None:
    c = cluster()
    c.node("1").campaign(c.now)
    for _ in range(4):
        c.process_all()
        c.deliver_all(lambda m: not isinstance(m, AppendResponse))
    assert c.node("1").role is Role.LEADER
    c.node("1").read_index(b"early")
    c.process_all()
    assert not any(isinstance(m, Heartbeat) for m in c.network)
    c.stabilize()
    (rs,) = c.read_states[NodeId("1")]
    assert rs.index >= c.node("1").log.last_index()


def test_6_4_follower_forwards_reads_and_needs_a_leader() -> None:
    c = cluster()
    with pytest.raises(NotLeader):
        c.node("2").read_index(b"r")
    elect(c)
    c.node("2").read_index(b"r")
    c.stabilize()
    (rs,) = c.read_states[NodeId("2")]
    assert rs.index == c.node("1").commit


# ------------------------------------------------------- API and durability


def test_propose_on_follower_raises_not_leader_with_hint() -> None:
    c = cluster()
    elect(c)
    with pytest.raises(NotLeader) as err:
        c.node("2").propose(b"x")
    assert err.value.leader_hint == "1"


def test_proposals_are_bounded_in_size_and_backlog() -> None:
    cfg = RaftConfig(max_append_bytes=100, max_uncommitted_entries=5)
    c = cluster(config=cfg)
    elect(c)
    with pytest.raises(ProposalDropped):
        c.node("1").propose(b"x" * 101)
    c.crash("2")
    c.crash("3")
    for _ in range(5):
        c.node("1").propose(b"x")
    with pytest.raises(ProposalDropped):
        c.node("1").propose(b"x")


def test_ready_twice_without_advance_is_a_usage_error() -> None:
    node = mk_node()
    rd = node.ready()
    assert rd is not None
    with pytest.raises(RaftUsageError):
        node.ready()
    with pytest.raises(RaftUsageError):
        node.advance(mk_node().ready())  # type: ignore[arg-type]
    node.advance(rd)


def test_vote_is_only_sent_with_its_hard_state_and_survives_restart() -> None:
    c = cluster()
    voter = c.node("2")
    voter.step(VoteRequest(NodeId("1"), NodeId("2"), Term(2), LogIndex(3), Term(1)), c.now)
    rd = voter.ready()
    assert rd is not None and rd.hard_state is not None
    assert rd.hard_state.voted_for == "1"
    assert any(isinstance(m, VoteResponse) and m.granted for m in rd.messages)
    c.stores[NodeId("2")].save(rd)
    voter.advance(rd)
    c.crash("2")
    c.restart("2")
    again = c.node("2")
    again.step(VoteRequest(NodeId("3"), NodeId("2"), Term(2), LogIndex(3), Term(1)), c.now)
    (resp,) = sent(c, VoteResponse, "2")
    assert not resp.granted


def test_restart_reapplies_committed_entries_from_the_log() -> None:
    c = cluster()
    elect(c)
    for k in range(3):
        c.node("1").propose(b"v%d" % k)
    c.stabilize()
    before = c.machines[NodeId("2")].digest
    c.crash("2")
    c.restart("2")
    c.process(NodeId("2"))
    assert c.machines[NodeId("2")].digest == before


def test_single_voter_group_commits_and_reads_alone() -> None:
    c = Cluster(["1"], rng, config=CFG)
    c.stabilize()
    c.elapse(2.5)
    c.stabilize()
    node = c.node("1")
    assert node.role is Role.LEADER
    res = node.propose(b"x")
    c.stabilize()
    assert node.commit == res.index
    # x committed only once the leader's own persist was acknowledged (§10.2.1)
    node.read_index(b"r")
    c.stabilize()
    (rs,) = c.read_states[NodeId("1")]
    assert rs.index == res.index


def test_6_leader_that_appended_its_own_demotion_can_still_campaign() -> None:
    """Regression (found by the state machine): leader 1 of voters {1, 3} appends
    "1 becomes a learner" but loses leadership before 3 stores it. 1 alone holds
    the newest entry, so it denies 3's votes; it must still be allowed to campaign
    (it is a voter of the committed configuration), and then hands over to 3."""
    cfg = RaftConfig(pre_vote=False, check_quorum=False)
    c = cluster(config=cfg)
    elect(c)
    c.node("1").propose_conf_change(ConfChange(ConfChangeOp.REMOVE_NODE, NodeId("2")))
    c.stabilize()
    c.crash("2")
    c.node("1").propose_conf_change(ConfChange(ConfChangeOp.ADD_LEARNER, NodeId("1")))
    c.process_all()
    c.network.clear()  # 3 never receives it
    c.node("3").campaign(c.now)  # 3 (voters {1, 3} in its log) needs 1's vote...
    c.stabilize()
    assert c.node("3").role is not Role.LEADER  # ...which 1 denies: its log is newer
    assert c.node("1").status().role is Role.LEARNER
    c.run_for(6)
    assert c.leader() == "3"
    assert c.node("3").conf.voters == ("3",) and c.node("1").conf.learners == ("1",)
    res = c.node("3").propose(b"x")
    c.stabilize()
    assert c.node("1").commit >= res.index
