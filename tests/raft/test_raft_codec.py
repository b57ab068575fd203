"""Every Raft message round-trips; random and mutated frames yield only MalformedFrame."""

from __future__ import annotations

import contextlib
import dataclasses
import typing

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from colonymesh.consensus.messages import MESSAGE_TYPES
from colonymesh.consensus.types import ConfState, Entry, EntryKind, SnapshotMeta
from colonymesh.node.errors import MalformedFrame
from colonymesh.node.raft import codec

IDS = st.text(max_size=12)
NUMBERS = st.integers(0, 2**63 - 1)
ENTRY = st.builds(Entry, NUMBERS, NUMBERS, st.sampled_from(list(EntryKind)), st.binary(max_size=64))
META = st.builds(
    SnapshotMeta,
    NUMBERS,
    NUMBERS,
    st.builds(
        ConfState, st.lists(IDS, max_size=3).map(tuple), st.lists(IDS, max_size=2).map(tuple)
    ),
)


def _field(annotation: object) -> st.SearchStrategy[object]:
    name = getattr(annotation, "__name__", "")
    if typing.get_origin(annotation) is tuple:
        return st.lists(ENTRY, max_size=4).map(tuple)
    return {
        "NodeId": IDS,
        "Term": NUMBERS,
        "LogIndex": NUMBERS,
        "int": NUMBERS,
        "bool": st.booleans(),
        "bytes": st.binary(max_size=64),
        "SnapshotMeta": META,
    }[name]


def _message(cls: type) -> st.SearchStrategy[object]:
    hints = typing.get_type_hints(cls)
    return st.builds(cls, *(_field(hints[f.name]) for f in dataclasses.fields(cls)))


@pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda c: c.__name__)
@settings(max_examples=40)
@given(data=st.data())
def test_every_message_round_trips(cls: type, data: st.DataObject) -> None:
    message = data.draw(_message(cls))
    assert codec.decode(codec.encode(message)) == message  # type: ignore[arg-type]


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_random_bytes_are_malformed_frames(frame: bytes) -> None:
    with contextlib.suppress(MalformedFrame):
        codec.decode(frame)


@settings(max_examples=300)
@given(
    st.sampled_from(MESSAGE_TYPES).flatmap(_message), st.integers(0, 10_000), st.integers(1, 255)
)
def test_mutated_frames_decode_or_fail_cleanly(message: object, position: int, flip: int) -> None:
    frame = bytearray(codec.encode(message))  # type: ignore[arg-type]
    frame[position % len(frame)] ^= flip
    with contextlib.suppress(MalformedFrame):
        codec.decode(bytes(frame))
