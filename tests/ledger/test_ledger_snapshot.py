"""Ledger snapshots (Raft compaction, §7): restore gives a ledger that answers every later
entry exactly as the original, snapshots are byte-identical across replicas, and a bad
snapshot is a SnapshotError and nothing else."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from colonymesh.node import wire
from colonymesh.node.certs import Role, encode_record, issue_certificate, revoke
from colonymesh.node.identity import KeyPair, Signer
from colonymesh.node.ledger.commands import (
    AddChild,
    AddLog,
    Admit,
    Cancel,
    Claim,
    Close,
    Fail,
    RegisterFunction,
    Revoke,
    SetAttribute,
    SubmitFunction,
    SubmitWorkflow,
    Tick,
)
from colonymesh.node.ledger.events import CommandRefused
from colonymesh.node.ledger.ledger import Ledger, LedgerConfig
from colonymesh.node.ledger.model import ProcessState
from colonymesh.node.ledger.snapshot import SnapshotError
from support.colony import NOW, Member, make_colony
from support.ledger import GENESIS_MS, LedgerHarness, spec

CONFIG = LedgerConfig(logs_per_process_max=3, replay_window=64)


def new_harness() -> LedgerHarness:
    lab = make_colony()
    certificates = [m.certificate for m in lab.members]
    return LedgerHarness(
        lab, Ledger(lab.colony, genesis_ms=GENESIS_MS, certificates=certificates, config=CONFIG)
    )


def genesis_of(h: LedgerHarness) -> Ledger:
    return Ledger(
        h.lab.colony,
        genesis_ms=GENESIS_MS,
        certificates=[m.certificate for m in h.lab.members[:3]],
        config=CONFIG,
    )


def nonce(i: int) -> bytes:
    return i.to_bytes(16, "big")


def short_lived_member(h: LedgerHarness, name: str, lifetime_s: int) -> Member:
    keys = KeyPair.generate()
    certificate = issue_certificate(
        h.lab.owner,
        h.lab.colony,
        keys.public_key,
        name=name,
        roles=[Role.SUBMITTER],
        not_before=NOW - 10,
        not_after=NOW + lifetime_s,
        serial=900 + len(h.lab.members),
    )
    member = Member(keys, Signer(keys), certificate)
    h.lab.members.append(member)
    h.ok(member, Admit(encode_record(certificate)))
    return member


def rich_history() -> tuple[LedgerHarness, list[int]]:
    """A history touching every part of the state; returns it and the indexes of replays."""
    h = new_harness()
    py = h.executor("py-1", "python", cpu=4000)
    proc = h.executor("proc-1", "process")
    gpu = h.executor("gpu-1", "python", gpus=1)
    h.ok(py, RegisterFunction("echo", "says it back"))
    h.ok(py, RegisterFunction("sleep", "waits"))
    brief = short_lived_member(h, "brief", 20)
    h.ok(brief, SubmitFunction(json.dumps(spec("echo", args=[1])), nonce(1)))
    waits = h.submit(spec("echo", maxwaittime=5))
    urgent = h.submit(spec("echo", priority=2, maxexectime=3, maxretries=1))
    h.submit(spec("sleep", "process", kwargs={"z": 1, "a": 2}))
    h.submit(spec("train", "python", conditions={"gpu": {"count": 1}}))
    nodes = [spec("a", "python", nodename=f"n{i}") for i in range(3)]
    nodes.append(
        spec("b", "process", nodename="join", conditions={"dependencies": ["n0", "n1", "n2"]})
    )
    wid, _ = h.ok(
        h.submitter,
        SubmitWorkflow(json.dumps({"colonyname": "", "functionspecs": nodes}), nonce(2)),
    )
    claimed, _ = h.ok(py, Claim())
    assert claimed == urgent
    h.ok(py, SetAttribute(urgent, "zeta", "1"))
    h.ok(py, SetAttribute(urgent, "alpha", "2"))
    for i in range(5):
        h.ok(py, AddLog(urgent, f"line {i}"))
    h.tick(1)
    sleeper, _ = h.ok(proc, Claim())
    h.ok(proc, Close(sleeper, '[{"b": 1, "a": [2, 3.5]}, 12345678901234567890123]'))
    h.ok(gpu, Claim())
    h.tick(3)  # urgent exceeds maxexectime: requeued with retries 1
    node, _ = h.ok(py, Claim(h.ledger.workflows[wid].process_ids[0]))
    h.ok(py, AddChild(node, json.dumps(spec("a", "python", args=["child"])), nonce(3)))
    h.ok(py, Close(node, '["n-out"]'))
    replays = [len(h.entries) + 1]
    h.apply_entry(h.entries[10])  # a replayed command: refused by the replay window
    h.tick(2)  # waits exceeds maxwaittime
    assert h.ledger.processes[waits].state is ProcessState.FAILED
    other, _ = h.ok(py, Claim())
    h.ok(py, Fail(other, ("boom",)))
    h.ok(h.server, Revoke(encode_record(revoke(h.lab.owner, gpu.certificate, now=NOW))))
    h.tick(20)  # brief's certificate expires; it stays known
    h.run(brief, SubmitFunction(json.dumps(spec("echo")), nonce(4)))
    pending = h.submit(spec("echo", maxwaittime=100))
    h.ok(py, Claim())
    h.ok(h.submitter, Cancel(pending))
    replays.append(len(h.entries) + 1)
    h.apply_entry(h.entries[-3])
    late = h.submit(spec("late", "process", maxwaittime=30, maxexectime=30))
    h.ok(proc, Claim(late))
    h.submit(spec("later", "process", maxwaittime=40))
    return h, replays


def live_deadlines(ledger: Ledger) -> list[tuple[int, int, str, int]]:
    """The deadline entries that can still fire (the heap may carry stale ones)."""
    live = set()
    for deadline, kind, pid, stamp in ledger._deadlines:
        process = ledger.processes[pid]
        if (kind == 0 and process.is_ready and process.ready_ms == stamp) or (
            kind == 1 and process.state is ProcessState.RUNNING and process.assigned_ms == stamp
        ):
            live.add((deadline, kind, pid, stamp))
    return sorted(live)


def assert_same_ledger(original: Ledger, restored: Ledger) -> None:
    assert restored.snapshot() == original.snapshot()
    assert list(restored.processes) == list(original.processes)
    for pid, process in original.processes.items():
        assert restored.processes[pid] == process
    assert restored.executors == original.executors
    assert list(restored.executors) == list(original.executors)
    assert restored.workflows == original.workflows
    assert restored.functions == original.functions
    assert {t: q for t, q in restored._queues.items() if q} == {
        t: q for t, q in original._queues.items() if q
    }
    assert live_deadlines(restored) == live_deadlines(original)
    assert {a: (w.highest, w.bitmap) for a, w in restored._replay.items()} == {
        a: (w.highest, w.bitmap) for a, w in original._replay.items()
    }
    assert restored.membership.members() == original.membership.members()
    assert restored.now_ms == original.now_ms
    assert restored.applied_index == original.applied_index


@pytest.fixture(scope="module")
def history() -> tuple[LedgerHarness, list[int]]:
    return rich_history()


def test_the_history_reaches_every_part_of_the_state(
    history: tuple[LedgerHarness, list[int]],
) -> None:
    h, replays = history
    ledger = h.ledger
    states = {p.state for p in ledger.processes.values()}
    assert states == set(ProcessState)
    assert any(p.attributes for p in ledger.processes.values())
    assert any(p.logs_dropped for p in ledger.processes.values())
    assert any(p.retries for p in ledger.processes.values())
    assert any(p.input for p in ledger.processes.values())
    assert ledger._revocations and ledger._deadlines
    assert any(e.functions for e in ledger.executors.values())
    assert len(live_deadlines(ledger)) >= 2
    for index in replays:  # the replayed entries were refused, by the replay window
        ledger_again = genesis_of(h)
        for i, entry in enumerate(h.entries[:index], 1):
            events = ledger_again.apply(i, entry)
        assert isinstance(events[0], CommandRefused) and "already accepted" in events[0].reason


def test_restore_gives_the_same_state_and_the_same_bytes(
    history: tuple[LedgerHarness, list[int]],
) -> None:
    h, _ = history
    data = h.ledger.snapshot()
    restored = Ledger.from_snapshot(h.lab.colony, data, CONFIG)
    assert_same_ledger(h.ledger, restored)
    assert restored.snapshot() == data
    assert sorted(restored._deadlines) == live_deadlines(h.ledger)  # stale entries dropped
    output = next(
        p.output for p in restored.processes.values() if p.output and isinstance(p.output[0], dict)
    )
    assert list(output[0]) == ["b", "a"] and output[1] == 12345678901234567890123


def test_replicas_applying_the_same_log_snapshot_the_same_bytes(
    history: tuple[LedgerHarness, list[int]],
) -> None:
    h, _ = history
    replica = genesis_of(h)
    for i, entry in enumerate(h.entries, 1):
        replica.apply(i, entry)
    assert replica.snapshot() == h.ledger.snapshot()


def test_snapshot_after_any_entry_then_the_rest_gives_the_same_events(
    history: tuple[LedgerHarness, list[int]],
) -> None:
    """Raft §7: a follower restored from a snapshot at k, then fed k+1.., equals the leader."""
    h, _ = history
    original = genesis_of(h)
    twins: list[Ledger] = []
    for i, entry in enumerate(h.entries, 1):
        data = original.snapshot()
        twin = Ledger.from_snapshot(h.lab.colony, data, CONFIG)
        assert twin.snapshot() == data
        twins.append(twin)
        events = original.apply(i, entry)
        for twin in twins:
            assert twin.apply(i, entry) == events, f"entry {i} after a restore"
    for twin in twins:
        assert_same_ledger(original, twin)


def test_a_restored_ledger_still_refuses_replays() -> None:
    h = new_harness()
    pid = h.submit(spec("echo"))
    first = h.entries[-1]
    restored = Ledger.from_snapshot(h.lab.colony, h.ledger.snapshot(), CONFIG)
    events = restored.apply(len(h.entries) + 1, first)
    assert isinstance(events[0], CommandRefused) and "already accepted" in events[0].reason
    assert list(restored.processes) == [pid]


def test_deadlines_fire_after_a_restore() -> None:
    h = new_harness()
    waits = h.submit(spec("echo", maxwaittime=5))
    executor = h.executor("py-1")
    runs = h.submit(spec("run", maxexectime=2, maxretries=0))
    h.ok(executor, Claim(runs))
    restored = Ledger.from_snapshot(h.lab.colony, h.ledger.snapshot(), CONFIG)
    frame = h.seal(h.server, Tick(h.ledger.now_ms + 6000))
    index = len(h.entries) + 1
    assert restored.apply(index, frame) == h.ledger.apply(index, frame)
    assert restored.processes[waits].state is ProcessState.FAILED
    assert restored.processes[runs].state is ProcessState.FAILED


def test_another_colonys_snapshot_is_refused() -> None:
    h = new_harness()
    h.submit(spec("echo"))
    other = make_colony("elsewhere")
    with pytest.raises(SnapshotError, match="another colony"):
        Ledger.from_snapshot(other.colony, h.ledger.snapshot(), CONFIG)


def test_a_refused_restore_changes_nothing() -> None:
    h = new_harness()
    h.submit(spec("echo"))
    before = h.ledger.snapshot()
    document = wire.decode(before)
    document["version"] = 99
    with pytest.raises(SnapshotError, match="version"):
        h.ledger.restore(wire.encode(document))
    document["version"] = 1
    document["processes"][0][7] = ["no-such-parent"]
    with pytest.raises(SnapshotError, match="missing process"):
        h.ledger.restore(wire.encode(document))
    assert h.ledger.snapshot() == before


def test_restore_refills_the_containers_in_place() -> None:
    h = new_harness()
    data = h.ledger.snapshot()
    processes = h.ledger.processes
    pid = h.submit(spec("echo"))
    later = h.ledger.snapshot()
    h.ledger.restore(data)
    assert processes is h.ledger.processes and not processes
    h.ledger.restore(later)
    assert list(processes) == [pid]


# --- fuzzing: a bad snapshot is a SnapshotError, never another exception ---------------


@pytest.fixture(scope="module")
def small_snapshot() -> tuple[Any, bytes]:
    h = new_harness()
    executor = h.executor("py-1")
    pid = h.submit(spec("echo", maxwaittime=9))
    h.submit(spec("echo", args=[1]))
    h.ok(executor, Claim(pid))
    h.ok(executor, AddLog(pid, "x"))
    h.ok(executor, SetAttribute(pid, "k", "v"))
    return h.lab.colony, h.ledger.snapshot()


def restore_or_refuse(colony: Any, data: bytes) -> None:
    try:
        restored = Ledger.from_snapshot(colony, data, CONFIG)
    except SnapshotError:
        return
    assert (
        Ledger.from_snapshot(colony, restored.snapshot(), CONFIG).snapshot() == restored.snapshot()
    )


FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FUZZ
@given(data=st.binary(max_size=512))
def test_random_bytes_are_refused(small_snapshot: tuple[Any, bytes], data: bytes) -> None:
    colony, _ = small_snapshot
    with pytest.raises(SnapshotError):
        Ledger.from_snapshot(colony, data, CONFIG)


@FUZZ
@given(
    cuts=st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 255)), min_size=1, max_size=4),
    truncate=st.booleans(),
)
def test_damaged_snapshots_are_refused_or_restored(
    small_snapshot: tuple[Any, bytes], cuts: list[tuple[int, int]], truncate: bool
) -> None:
    colony, data = small_snapshot
    damaged = bytearray(data)
    for position, value in cuts:
        damaged[position % len(damaged)] = value
    if truncate:
        damaged = damaged[: cuts[0][0] % len(damaged)]
    restore_or_refuse(colony, bytes(damaged))


PLAIN = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.text(max_size=8)
    | st.binary(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, list):
        for i, item in enumerate(value):
            found += paths(item, (*prefix, i))
    elif isinstance(value, dict):
        for key, item in value.items():
            found += paths(item, (*prefix, key))
    return found


@FUZZ
@given(choice=st.integers(0, 10**9), replacement=PLAIN)
def test_well_formed_but_wrong_snapshots_are_refused_or_restored(
    small_snapshot: tuple[Any, bytes], choice: int, replacement: Any
) -> None:
    """Replace any one value of a real snapshot by arbitrary plain data."""
    colony, data = small_snapshot
    document = wire.decode(data)
    where = paths(document)[1:]
    path = where[choice % len(where)]
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = replacement
    restore_or_refuse(colony, wire.encode(document))
