"""Byte formats of the log store: round trips, and strict decoders fuzzed with hypothesis
(junk gets RecordError, never another exception)."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from colonymesh.consensus.storage.hardstate import decode_slot, encode_slot
from colonymesh.consensus.storage.records import (
    RECORD_HEADER_BYTES,
    RECORD_MAGIC,
    SEGMENT_HEADER_BYTES,
    RecordError,
    check_record,
    decode_record,
    decode_segment_header,
    encode_record,
    encode_records,
    encode_segment_header,
    find_intact_record,
    scan_records,
)
from colonymesh.consensus.storage.snapshots import decode_snapshot, encode_snapshot
from colonymesh.consensus.types import (
    ConfState,
    Entry,
    EntryKind,
    HardState,
    LogIndex,
    NodeId,
    Snapshot,
    SnapshotMeta,
    Term,
)

U63 = st.integers(0, 2**63 - 1)
node_ids = st.text(max_size=40).map(NodeId)
entries = st.builds(
    Entry,
    term=U63.map(Term),
    index=st.integers(1, 2**63 - 1).map(LogIndex),
    kind=st.sampled_from(list(EntryKind)),
    data=st.binary(max_size=300),
)


@given(entries)
def test_record_round_trip(e: Entry) -> None:
    buf = encode_record(e)
    assert len(buf) == RECORD_HEADER_BYTES + len(e.data)
    assert decode_record(buf, 0) == (e, len(buf))


@given(st.binary(max_size=200), st.integers(0, 50))
def test_record_decoder_rejects_junk_cleanly(junk: bytes, offset: int) -> None:
    try:
        end, index, _term, kind = check_record(junk, offset)
    except RecordError:
        return
    assert end <= len(junk) and index >= 1 and kind in {k.value for k in EntryKind}


@given(entries, st.data())
def test_any_single_byte_change_is_detected(e: Entry, data: st.DataObject) -> None:
    buf = bytearray(encode_record(e))
    pos = data.draw(st.integers(0, len(buf) - 1))
    buf[pos] ^= data.draw(st.integers(1, 255))
    with pytest.raises(RecordError):
        check_record(bytes(buf), 0)


def test_checksummed_but_invalid_fields_are_rejected() -> None:
    tail = struct.pack("<IQQI", 0, 1, 1, 7)  # kind 7 does not exist
    buf = RECORD_MAGIC + zlib.crc32(tail).to_bytes(4, "little") + tail
    with pytest.raises(RecordError, match="kind"):
        check_record(buf, 0)
    tail = struct.pack("<IQQI", 0, 0, 1, 0)  # index 0 is not a log index
    buf = RECORD_MAGIC + zlib.crc32(tail).to_bytes(4, "little") + tail
    with pytest.raises(RecordError, match="range"):
        check_record(buf, 0)


@given(st.integers(1, 2**63 - 1))
def test_segment_header_round_trip(first: int) -> None:
    buf = encode_segment_header(first)
    assert len(buf) == SEGMENT_HEADER_BYTES
    assert decode_segment_header(buf) == first


@given(st.binary(max_size=64))
def test_segment_header_rejects_junk(junk: bytes) -> None:
    with pytest.raises(RecordError):
        decode_segment_header(junk)


def test_scan_stops_at_gap_and_falling_term() -> None:
    e = [Entry(Term(2), LogIndex(i), EntryKind.NORMAL, b"x") for i in range(1, 4)]
    ok = scan_records(encode_records(e), 0, 1)
    assert (len(ok.offsets), ok.error, list(ok.terms)) == (3, None, [2, 2, 2])
    gap = scan_records(encode_records([e[0], e[2]]), 0, 1)
    assert gap.fatal and gap.error is not None and "was due" in gap.error[1]
    falling = scan_records(encode_records(e), 0, 1, prev_term=3)
    assert falling.fatal and falling.error == (0, "term 2 after term 3")


def test_find_intact_record_needs_a_later_index() -> None:
    e = [Entry(Term(1), LogIndex(i), EntryKind.NORMAL, b"abc") for i in range(1, 4)]
    buf = b"\0junk" + encode_records(e)
    assert find_intact_record(buf, 0, 1) == 5
    assert find_intact_record(buf, 0, 3) == 5 + 2 * (RECORD_HEADER_BYTES + 3)
    assert find_intact_record(buf, 0, 4) is None


hard_states = st.builds(
    HardState, term=U63.map(Term), voted_for=st.none() | node_ids, commit=U63.map(LogIndex)
)


@given(hard_states, st.integers(1, 2**64 - 1))
def test_hard_state_slot_round_trip(hs: HardState, seq: int) -> None:
    assert decode_slot(encode_slot(hs, seq).ljust(4096, b"\0")) == (hs, seq)


@given(st.binary(max_size=120))
def test_hard_state_slot_rejects_junk(junk: bytes) -> None:
    with pytest.raises(RecordError):
        decode_slot(junk)


snapshots = st.builds(
    Snapshot,
    meta=st.builds(
        SnapshotMeta,
        index=U63.map(LogIndex),
        term=U63.map(Term),
        conf=st.builds(
            ConfState,
            voters=st.lists(node_ids, max_size=5).map(tuple),
            learners=st.lists(node_ids, max_size=3).map(tuple),
        ),
    ),
    data=st.binary(max_size=500),
)


@given(snapshots)
def test_snapshot_round_trip(snap: Snapshot) -> None:
    assert decode_snapshot(b"".join(encode_snapshot(snap))) == snap


@given(snapshots, st.data())
def test_snapshot_damage_is_detected(snap: Snapshot, data: st.DataObject) -> None:
    buf = bytearray(b"".join(encode_snapshot(snap)))
    if data.draw(st.booleans()):
        pos = data.draw(st.integers(0, len(buf) - 1))
        buf[pos] ^= data.draw(st.integers(1, 255))
    else:
        del buf[data.draw(st.integers(0, len(buf) - 1)) :]
    with pytest.raises(RecordError):
        decode_snapshot(bytes(buf))


@given(st.binary(max_size=200))
def test_snapshot_decoder_rejects_junk(junk: bytes) -> None:
    with pytest.raises(RecordError):
        decode_snapshot(junk)
