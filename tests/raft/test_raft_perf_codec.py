"""The codec's fast paths decide exactly as its strict per-field checks do.

``_entries`` checks AppendEntries entries inline (the hot path) and falls back
to ``_entry`` only to word the error; ``encode`` converts only the fields that
need it. Both must agree with the straightforward definitions on any input.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from colonymesh.consensus.messages import AppendEntries, InstallSnapshot
from colonymesh.consensus.types import (
    ConfState,
    Entry,
    EntryKind,
    LogIndex,
    NodeId,
    SnapshotMeta,
    Term,
)
from colonymesh.node.errors import MalformedFrame
from colonymesh.node.raft import codec

scalars = st.one_of(
    st.integers(min_value=-3, max_value=2**64),
    st.booleans(),
    st.binary(max_size=8),
    st.text(max_size=4),
    st.none(),
    st.floats(allow_nan=False),
)
items = st.one_of(
    st.lists(scalars, min_size=4, max_size=4),
    st.tuples(
        st.integers(min_value=0, max_value=9),
        st.integers(min_value=0, max_value=9),
        st.integers(min_value=-1, max_value=4),
        st.binary(max_size=8),
    ).map(list),
    st.lists(scalars, max_size=6),
    scalars,
)


def strict(value: Any) -> tuple[Entry, ...]:
    """The reference: every entry through the strict per-field decoder."""
    if type(value) is not list:
        raise MalformedFrame("not a list")
    return tuple(codec._entry(item, f"e[{i}]") for i, item in enumerate(value))


def outcome(fn: Any, value: Any) -> Any:
    try:
        return fn(value)
    except MalformedFrame:
        return "refused"


@given(st.lists(items, max_size=6) | scalars)
def test_the_entries_fast_path_decides_as_the_strict_decoder(value: Any) -> None:
    assert outcome(lambda v: codec._entries(v, "e"), value) == outcome(strict, value)


def test_a_refused_entry_is_named_by_its_position() -> None:
    good = [1, 2, int(EntryKind.NORMAL), b"x"]
    try:
        codec._entries([good, good, [1, 2, 99, b"x"]], "AppendEntries.entries")
    except MalformedFrame as error:
        assert "AppendEntries.entries[2].kind" in str(error)
    else:
        raise AssertionError("an unknown entry kind was accepted")


entries = st.lists(
    st.builds(
        Entry,
        st.integers(min_value=0, max_value=2**40).map(Term),
        st.integers(min_value=1, max_value=2**40).map(LogIndex),
        st.sampled_from(list(EntryKind)),
        st.binary(max_size=64),
    ),
    max_size=8,
).map(tuple)


@given(entries, st.integers(min_value=0, max_value=2**40))
def test_append_entries_round_trip(batch: tuple[Entry, ...], commit: int) -> None:
    message = AppendEntries(
        NodeId("a"), NodeId("b"), Term(3), LogIndex(7), Term(2), batch, LogIndex(commit)
    )
    assert codec.decode(codec.encode(message)) == message


def test_snapshot_metadata_round_trips() -> None:
    meta = SnapshotMeta(LogIndex(9), Term(2), ConfState((NodeId("a"), NodeId("b")), (NodeId("c"),)))
    snapshot = InstallSnapshot(NodeId("a"), NodeId("b"), Term(2), meta, 0, b"data", True)
    assert codec.decode(codec.encode(snapshot)) == snapshot
