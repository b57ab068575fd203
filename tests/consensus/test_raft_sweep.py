"""Seeded fault sweeps over the in-memory cluster (a FoundationDB-style mini
simulation of the core alone). One seed draws the group size, the Raft
options and a fault profile (loss, duplication, reordering, crashes with
restarts from the persisted state, partitions, compactions); Raft's safety
properties are checked after every step (§5.2 election safety, §5.3 log
matching, §5.4 leader completeness, §5.4.3 state-machine safety). Then the
faults stop and the group must elect a leader and commit again.

A failure names its seed; replay it with ``pytest -k 'sweep and SEED'``.
The default run covers a fixed set of seeds; ``-m slow`` runs many more.
"""

from __future__ import annotations

import random

import pytest

from colonymesh.consensus import NotLeader, ProposalDropped, RaftConfig, Role
from colonymesh.consensus.testing import Cluster, SafetyViolation
from colonymesh.consensus.types import LogIndex, NodeId

NAMES = ["1", "2", "3", "4", "5"]


def run_seed(seed: int, steps: int = 250) -> dict[str, int]:
    r = random.Random(seed)
    n = r.choice([3, 3, 4, 5])
    cfg = RaftConfig(
        pre_vote=r.random() < 0.8,
        check_quorum=r.random() < 0.8,
        max_inflight_msgs=r.choice([1, 2, 8, 256]),
        max_append_entries=r.choice([1, 3, 64]),
        snapshot_chunk_bytes=r.choice([8, 64, 4096]),
    )
    c = Cluster(NAMES[:n], lambda i: random.Random(f"{seed}-{i}"), config=cfg)
    loss = r.choice([0.0, 0.05, 0.2])
    dup = r.choice([0.0, 0.05])
    reorder = r.random() < 0.5
    crash_p = r.choice([0.0, 0.01, 0.03])
    part_p = r.choice([0.0, 0.01, 0.02])
    stats = {"proposed": 0, "crashes": 0, "partitions": 0, "compactions": 0}
    for _ in range(steps):
        c.process_all()
        msgs, c.network = c.network, []
        if reorder:
            r.shuffle(msgs)
        for msg in msgs:
            if r.random() < loss:
                continue
            for _copy in range(2 if r.random() < dup else 1):
                node = c.nodes.get(msg.dst)
                if node is not None:
                    node.step(msg, c.now)
        c.check_safety()
        c.elapse(r.choice([0.01, 0.05, 0.1, 0.3]))
        leader = c.leader()
        if leader is not None and r.random() < 0.5:
            for _k in range(r.randint(1, 5)):
                stats["proposed"] += 1
                try:
                    c.node(leader).propose(b"s%d-%d" % (seed, stats["proposed"]))
                except (NotLeader, ProposalDropped):
                    break
        if r.random() < crash_p:
            live = [i for i, _ in c.live()]
            if len(live) > 1:
                c.crash(r.choice(live))
                stats["crashes"] += 1
        if r.random() < 0.05:
            for i in c.ids:
                if c.nodes[i] is None:
                    c.restart(i)
        if r.random() < part_p:
            ids = list(c.ids)
            r.shuffle(ids)
            cut = r.randint(1, len(ids) - 1)
            c.partition(ids[:cut], ids[cut:])
            stats["partitions"] += 1
        elif r.random() < 0.05:
            c.heal()
        if r.random() < 0.02:
            live = c.live()
            if live:
                i, node = r.choice(live)
                m = c.machines[i]
                if node.log.snapshot_index < m.index <= node.applied:
                    node.compact(LogIndex(m.index), m.snapshot())
                    stats["compactions"] += 1
    _heal_and_converge(c, seed)
    stats["committed"] = len(c.committed)
    return stats


def _heal_and_converge(c: Cluster, seed: int) -> None:
    c.heal()
    for i in c.ids:
        c.restart(i)
    for _ in range(40):
        c.run_for(0.5)
        leader = c.leader()
        if leader is None or c.node(leader).role is not Role.LEADER:
            continue
        try:
            res = c.node(leader).propose(b"final")
        except (NotLeader, ProposalDropped):
            continue
        c.run_for(0.5)
        if all(c.node(v).commit >= res.index for v in c.node(leader).conf.voters):
            digests = {c.machines[NodeId(v)].digest for v in c.node(leader).conf.voters}
            if len(digests) == 1:
                return
    raise SafetyViolation(f"seed {seed}: the healed cluster did not converge")


@pytest.mark.parametrize("seed", range(40))
def test_sweep(seed: int) -> None:
    stats = run_seed(seed)
    assert stats["committed"] > len(NAMES[:3]), stats  # more than the bootstrap entries


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1000, 3000))
def test_sweep_slow(seed: int) -> None:
    run_seed(seed, steps=600)
