"""Hostile input to the Raft core: malformed messages get RaftProtocolError and
change nothing; arbitrary well-formed messages never crash a core with anything
but a typed error; conf-change decoding is strict; the cores import no I/O."""

from __future__ import annotations

import ast
import contextlib
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from colonymesh.consensus import (
    AppendEntries,
    AppendResponse,
    ConfChange,
    ConfChangeError,
    ConfChangeOp,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    RaftConfig,
    RaftError,
    RaftInvariantError,
    RaftNode,
    RaftProtocolError,
    ReadIndexRequest,
    ReadIndexResponse,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
    validate_message,
)
from colonymesh.consensus.testing import Cluster, SafetyViolation
from colonymesh.consensus.types import (
    ConfState,
    Entry,
    EntryKind,
    LogIndex,
    NodeId,
    SnapshotMeta,
    Term,
)

ids = st.sampled_from([NodeId("1"), NodeId("2"), NodeId("3"), NodeId("9")])
small = st.integers(-2, 12)
terms = small.map(Term)
indexes = small.map(LogIndex)
entries = st.builds(Entry, terms, indexes, st.sampled_from(list(EntryKind)), st.binary(max_size=8))
metas = st.builds(
    SnapshotMeta, indexes, terms, st.just(ConfState(voters=(NodeId("1"), NodeId("2"))))
)

messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(VoteRequest, ids, ids, terms, indexes, terms, st.booleans(), st.booleans()),
    st.builds(VoteResponse, ids, ids, terms, st.booleans(), st.booleans()),
    st.builds(
        AppendEntries,
        ids,
        ids,
        terms,
        indexes,
        terms,
        st.lists(entries, max_size=4).map(tuple),
        indexes,
    ),
    st.builds(AppendResponse, ids, ids, terms, st.booleans(), indexes, indexes, terms),
    st.builds(Heartbeat, ids, ids, terms, indexes, small),
    st.builds(HeartbeatResponse, ids, ids, terms, small),
    st.builds(InstallSnapshot, ids, ids, terms, metas, small, st.binary(max_size=8), st.booleans()),
    st.builds(InstallSnapshotResponse, ids, ids, terms, indexes, small, st.booleans()),
    st.builds(TimeoutNow, ids, ids, terms),
    st.builds(ReadIndexRequest, ids, ids, terms, st.binary(max_size=4)),
    st.builds(ReadIndexResponse, ids, ids, terms, st.binary(max_size=4), indexes, st.booleans()),
)


def _state(node: RaftNode) -> tuple[object, ...]:
    log = node.log
    return (
        node.term,
        node.voted_for,
        node.role,
        node.leader,
        log.committed,
        log.snapshot_index,
        tuple(log.slice(log.first_index(), log.last_index() + 1)),
    )


@settings(max_examples=400, deadline=None)
@given(st.lists(messages, min_size=1, max_size=20), st.integers(0, 3))
def test_arbitrary_messages_never_crash_a_core_untyped(msgs: list[Message], elect: int) -> None:
    """A node of a live cluster fed random (often malformed or nonsensical)
    messages either rejects them with RaftProtocolError leaving its state
    untouched, or handles them; nothing else escapes."""
    c = Cluster(["1", "2", "3"], lambda i: random.Random(f"fuzz-{i}"), config=RaftConfig())
    c.stabilize()
    if elect:
        c.node(str(elect)).campaign(c.now)
        c.stabilize()
    for msg in msgs:
        target = c.nodes.get(msg.dst)
        if target is None:
            continue
        before = _state(target)
        try:
            target.step(msg, c.now)
        except RaftProtocolError:
            assert _state(target) == before
        except RaftInvariantError:
            # Only a byzantine peer (contradicting committed state) may trip this,
            # and then it is typed and explicit.
            pass
        # The fake peer may hand over a bogus snapshot or contradict committed
        # entries: the test's state machine and safety checker may object; the
        # point here is that the core itself raised nothing untyped.
        with contextlib.suppress(RaftError, SafetyViolation, ValueError):
            c.process_all()
        c.network.clear()


@given(messages)
def test_validate_message_rejects_negative_and_out_of_order_fields(msg: Message) -> None:
    try:
        validate_message(msg)
    except RaftProtocolError:
        return
    assert msg.term >= 0
    if isinstance(msg, AppendEntries):
        idx = msg.prev_log_index
        for e in msg.entries:
            assert e.index == idx + 1 and 0 <= e.term <= msg.term
            idx = e.index


def test_malformed_append_is_rejected_before_touching_state() -> None:
    node = RaftNode(
        NodeId("2"),
        ConfState(voters=(NodeId("1"), NodeId("2"))),
        RaftConfig(),
        random.Random(1),
        0.0,
    )
    gap = (Entry(Term(1), LogIndex(5), EntryKind.NORMAL, b""),)
    with pytest.raises(RaftProtocolError):
        node.step(
            AppendEntries(
                NodeId("1"), NodeId("2"), Term(3), LogIndex(2), Term(1), gap, LogIndex(0)
            ),
            0.0,
        )
    assert node.term == 1
    with pytest.raises(RaftProtocolError):
        node.step(TimeoutNow(NodeId("1"), NodeId("7"), Term(1)), 0.0)  # not for us
    with pytest.raises(RaftProtocolError):
        node.step("not a message", 0.0)  # type: ignore[arg-type]


def test_a_second_leader_for_our_term_is_the_peers_fault() -> None:
    c = Cluster(["1", "2", "3"], lambda i: random.Random(f"x-{i}"), config=RaftConfig())
    c.stabilize()
    c.node("1").campaign(c.now)
    c.stabilize()
    leader = c.node("1")
    with pytest.raises(RaftProtocolError):
        leader.step(Heartbeat(NodeId("2"), NodeId("1"), leader.term, LogIndex(0)), c.now)
    assert leader.status().role.value == "leader"


def test_oversized_snapshot_is_refused() -> None:
    cfg = RaftConfig(snapshot_bytes_max=10)
    node = RaftNode(
        NodeId("2"), ConfState(voters=(NodeId("1"), NodeId("2"))), cfg, random.Random(1), 0.0
    )
    meta = SnapshotMeta(LogIndex(50), Term(2), ConfState(voters=(NodeId("1"), NodeId("2"))))
    node.step(InstallSnapshot(NodeId("1"), NodeId("2"), Term(2), meta, 0, b"x" * 8, False), 0.0)
    with pytest.raises(RaftProtocolError):
        node.step(InstallSnapshot(NodeId("1"), NodeId("2"), Term(2), meta, 8, b"x" * 8, True), 0.0)
    assert node.log.snapshot_index == 0


@given(st.binary(max_size=300))
def test_conf_change_decode_is_strict(data: bytes) -> None:
    try:
        cc = ConfChange.decode(data)
    except ConfChangeError:
        return
    assert cc.encode() == data


@given(st.sampled_from(list(ConfChangeOp)), st.text(min_size=1, max_size=40))
def test_conf_change_round_trips(op: ConfChangeOp, node: str) -> None:
    cc = ConfChange(op, NodeId(node))
    try:
        raw = cc.encode()
    except ConfChangeError:
        assert len(node.encode()) > 256
        return
    assert ConfChange.decode(raw) == cc


CORE_MODULES = [
    "confchange.py",
    "config.py",
    "errors.py",
    "leader.py",
    "log.py",
    "messages.py",
    "progress.py",
    "raft.py",
    "readonly.py",
    "snapshot.py",
    "status.py",
    "ready.py",
]
FORBIDDEN = {"trio", "socket", "time", "random", "os", "threading", "asyncio", "select"}


@pytest.mark.parametrize("name", CORE_MODULES)
def test_core_modules_import_no_io(name: str) -> None:
    """Sans-I/O: the cores import no clock, randomness, sockets or threads (the
    injected random.Random is only named under TYPE_CHECKING)."""
    path = Path(__file__).parents[2] / "consensus" / name
    tree = ast.parse(path.read_text())
    for node in tree.body:  # module-level imports only; TYPE_CHECKING blocks are skipped
        if isinstance(node, ast.Import):
            names = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module.split(".")[0]]
        else:
            continue
        assert not set(names) & FORBIDDEN, f"{name} imports {names}"


@given(
    st.binary(min_size=0, max_size=64),
    st.integers(1, 16),
    st.lists(st.integers(0, 20), max_size=60),
)
def test_7_snapshot_chunks_reassemble_exactly_under_loss_and_reordering(
    data: bytes, chunk: int, order: list[int]
) -> None:
    """Deliver chunks in any order with repeats: the receiver yields the snapshot
    only when it saw every byte in order, and then exactly the original bytes."""
    from colonymesh.consensus.snapshot import SnapshotReceiver

    meta = SnapshotMeta(LogIndex(9), Term(2), ConfState(voters=(NodeId("1"),)))
    offsets = list(range(0, max(len(data), 1), chunk)) or [0]
    chunks = [
        InstallSnapshot(
            NodeId("1"),
            NodeId("2"),
            Term(2),
            meta,
            off,
            data[off : off + chunk],
            off + chunk >= len(data),
        )
        for off in offsets
    ]
    receiver = SnapshotReceiver(bytes_max=1 << 20)
    got = None
    for k in [*order, *range(len(chunks))]:  # finally an in-order pass completes it
        want, snap = receiver.receive(chunks[k % len(chunks)])
        assert 0 <= want <= len(data)
        if snap is not None:
            got = snap
            break
    assert got is not None and got.data == data and got.meta == meta
