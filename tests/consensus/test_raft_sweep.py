"""Seeded fault sweeps over the in-memory cluster (a FoundationDB-style mini
simulation of the core alone). One seed draws the group size, the Raft
options and a fault profile (loss, duplication, reordering, crashes with
restarts from the persisted state, partitions, compactions); Raft's safety
properties are checked after every step (§5.2 election safety, §5.3 log
matching, §5.4 leader completeness, §5.4.3 state-machine safety). Then the
faults stop and the group must elect a leader and commit again.

A failure names its seed; replay it with ``pytest -k 'sweep and SEED'``.
The default run covers a fixed set of seeds; ``-m slow`` runs many more.

The issue's 10,000-seed sweep of the full simulator (``colonymesh simulate raft
--peers 5``: servers, clients, operator, every checker, the linearizability
check) runs here too, behind ``slow``: two ``colonymesh simulate`` processes
take half the seeds each. A seed is a pure function of its number, so the
split changes nothing but the wall time (a fast test checks that a split
sweep sums to the same figures as one sweep). Each seed runs a shorter safety
phase than the CLI default (``SWEEP_SAFETY_S`` virtual seconds rather than
20; the heal phase and every checker are unchanged): on the dev box a seed
costs 0.22 CPU-s at 20 s, which would make 10,000 seeds ~18 min on two cores;
at 6 s the whole sweep measured 564 CPU-s (56 ms a seed), ~4.7 min on two free
cores, 0 violations. More seeds at a shorter horizon draw more fault
profiles; the 200-seed sweeps in tests/simulations keep the 20 s horizon.
"""

from __future__ import annotations

import json
import random
import resource
import subprocess
import time
from pathlib import Path

import pytest

from colonymesh.consensus import NotLeader, ProposalDropped, RaftConfig, Role
from colonymesh.consensus.testing import Cluster, SafetyViolation
from colonymesh.consensus.types import LogIndex, NodeId
from colonymesh.simulations.runner import WALL_CLOCK_KEYS, sweep
from support.cli import COMMAND

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


SWEEP_SEEDS = 10_000
SWEEP_WORKERS = 2
SWEEP_SAFETY_S = 6.0


def _sans_wall(summary: dict[str, object]) -> dict[str, object]:
    totals = summary["totals"]
    if not isinstance(totals, dict):
        raise TypeError(totals)
    return {k: v for k, v in totals.items() if k not in WALL_CLOCK_KEYS}


def test_a_split_sweep_sums_to_the_same_figures_as_one_sweep() -> None:
    whole = sweep("raft", 5, range(0, 4), 2.0, report_to=None)
    halves = [sweep("raft", 5, seeds, 2.0, report_to=None) for seeds in (range(2), range(2, 4))]
    assert whole["violations"] == 0
    summed: dict[str, float] = {}
    for half in halves:
        for key, value in _sans_wall(half).items():
            summed[key] = summed.get(key, 0) + value
    assert {k: round(v, 6) for k, v in summed.items()} == {
        k: round(v, 6) for k, v in _sans_wall(whole).items()
    }
    assert summed["commits"] > 0


@pytest.mark.slow
def test_simulate_raft_ten_thousand_seeds(tmp_path: Path) -> None:
    per = SWEEP_SEEDS // SWEEP_WORKERS
    started = time.perf_counter()
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)

    def argv(worker: int) -> list[str]:
        first = str(worker * per)
        duration = str(SWEEP_SAFETY_S)
        return [
            *COMMAND, "simulate", "raft", "--peers", "5", "--seed", first,
            "--seeds", str(per), "--duration", duration, "--json",
        ]  # fmt: skip

    logs = [tmp_path / f"worker{w}.stderr" for w in range(SWEEP_WORKERS)]
    workers = []
    for w, log in enumerate(logs):
        with log.open("w") as stderr:  # a file: a chatty worker never blocks on a pipe
            workers.append(
                subprocess.Popen(
                    argv(w),
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                    stdin=subprocess.DEVNULL,
                    text=True,
                )
            )
    outputs = [worker.communicate(timeout=3600)[0] for worker in workers]
    wall_s = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = cpu_after.ru_utime - cpu_before.ru_utime + cpu_after.ru_stime - cpu_before.ru_stime
    summaries = [json.loads(stdout) for stdout in outputs]
    seeds = sum(s["seeds"] for s in summaries)
    failing = [seed for s in summaries for seed in s["failing_seeds"]]
    commits = sum(s["totals"]["commits"] for s in summaries)
    print(
        f"simulate raft: {seeds} seeds on {SWEEP_WORKERS} workers in {wall_s:.0f} s wall "
        f"({wall_s / seeds * 1000:.1f} ms per seed; {cpu_s:.0f} CPU-s, "
        f"{cpu_s / seeds * 1000:.1f} CPU-ms per seed), {commits} commits, "
        f"{len(failing)} violations"
    )
    assert seeds == SWEEP_SEEDS
    assert not failing, "\n".join(log.read_text() for log in logs)[-5000:]
    assert all(s["violations"] == 0 for s in summaries)
    assert commits > SWEEP_SEEDS, "the sweep committed entries"
