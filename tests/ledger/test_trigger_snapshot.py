"""Crons and generators survive a ledger snapshot: same bytes, same answers to later entries."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from colonymesh.node import wire
from colonymesh.node.ledger.commands import (
    AddCron,
    AddGenerator,
    FireCron,
    FireGenerator,
    PackGenerator,
    Tick,
)
from colonymesh.node.ledger.crons import decode_crons, encode_crons
from colonymesh.node.ledger.generators import decode_generators, encode_generators
from colonymesh.node.ledger.ledger import Ledger
from colonymesh.node.ledger.snapshot import SnapshotError
from colonymesh.node.ledger.triggers import RecordError
from support.colony import Member
from support.ledger import LedgerHarness, make_harness, spec

WORKFLOW = json.dumps({"colonyname": "", "functionspecs": [{**spec("f"), "nodename": "f"}]})


def scheduled() -> LedgerHarness:
    h = make_harness()
    h.ok(h.submitter, AddCron("every5", WORKFLOW, b"a" * 16, "", 5, True))
    h.ok(h.submitter, AddCron("seconds", WORKFLOW, b"b" * 16, "*/7 * * * * MON-FRI,SUN"))
    h.ok(h.submitter, AddGenerator("batch", WORKFLOW, b"c" * 16, 2, 60))
    h.tick(5)
    for cron in list(h.ledger.crons.crons.values()):
        if cron.next_due_ms <= h.ledger.now_ms:
            h.ok(h.server, FireCron(cron.id, cron.next_due_ms))
    for arg in ("x", "y", "z"):
        h.ok(h.submitter, PackGenerator("batch", arg))
    generator = next(iter(h.ledger.generators.generators.values()))
    h.ok(h.server, FireGenerator(generator.id, 0))
    return h


def test_a_snapshot_round_trips_byte_for_byte() -> None:
    h = scheduled()
    data = h.ledger.snapshot()
    restored = Ledger.from_snapshot(h.lab.colony, data)
    assert restored.snapshot() == data
    mine, theirs = h.ledger.crons.crons, restored.crons.crons
    assert list(theirs) == list(mine)
    for cron_id, cron in mine.items():
        other = theirs[cron_id]
        assert (other.next_due_ms, other.runs, other.last_workflow_id, other.schedule) == (
            cron.next_due_ms,
            cron.runs,
            cron.last_workflow_id,
            cron.schedule,
        )
    (generator,) = restored.generators.generators.values()
    assert [arg for _, arg in generator.pending] == ["z"] and generator.runs == 1


def test_a_restored_ledger_answers_later_entries_as_the_original() -> None:
    h = scheduled()
    restored = Ledger.from_snapshot(h.lab.colony, h.ledger.snapshot())

    def both(member: Member, body: object) -> None:
        entry = h.seal(member, body)
        index = h.ledger.applied_index + 1
        assert restored.apply(index, entry) == h.ledger.apply(index, entry)

    for seconds in (3, 4, 30, 61):
        both(h.server, Tick(h.ledger.now_ms + seconds * 1000))
        for cron in list(h.ledger.crons.crons.values()):
            both(h.server, FireCron(cron.id, cron.next_due_ms))
            both(h.server, FireCron(cron.id, cron.next_due_ms))  # a second leader's duplicate
        for generator in list(h.ledger.generators.generators.values()):
            both(h.server, FireGenerator(generator.id, generator.runs))
        both(h.submitter, PackGenerator("batch", f"arg{seconds}"))
    assert h.ledger.snapshot() == restored.snapshot()
    assert any(c.runs > 1 for c in restored.crons.crons.values())
    assert next(iter(restored.generators.generators.values())).runs > 1


def _document(h: LedgerHarness) -> dict[str, object]:
    document = wire.decode(h.ledger.snapshot(), frame_bytes_max=1 << 30)
    assert isinstance(document, dict)
    return document


@pytest.mark.parametrize(
    ("key", "mangle", "message"),
    [
        ("crons", lambda crons: [crons[0][:-1]], "crons[0]: expected a record of 13 fields"),
        ("crons", lambda crons: [[*crons[0][:4], "61 * * * * *", *crons[0][5:]]], "crons[0]"),
        ("crons", lambda crons: [crons[0], crons[0]], "duplicate id"),
        ("crons", lambda crons: [[*crons[0][:3], "{", *crons[0][4:]]], "not JSON"),
        ("crons", lambda crons: "nope", "crons: expected a list"),
        ("generators", lambda gens: [[*gens[0][:4], 0, *gens[0][5:]]], "trigger"),
        ("generators", lambda gens: [[*gens[0][:7], [["x", 1]], *gens[0][8:]]], "pending[0]"),
    ],
)
def test_bad_records_are_a_snapshot_error(key: str, mangle: object, message: str) -> None:
    h = scheduled()
    document = _document(h)
    document[key] = mangle(document[key])  # type: ignore[operator]
    with pytest.raises(SnapshotError) as raised:
        Ledger.from_snapshot(h.lab.colony, wire.encode(document))
    assert message in str(raised.value)


def test_a_ledger_without_triggers_writes_no_trigger_keys() -> None:
    h = make_harness()
    h.tick(1)
    document = _document(h)
    assert "crons" not in document and "generators" not in document


PLAIN = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.text(max_size=20)
    | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=14),
    max_leaves=40,
)
SAMPLE = scheduled()
CRON_RECORDS = encode_crons(SAMPLE.ledger.crons)
GENERATOR_RECORDS = encode_generators(SAMPLE.ledger.generators)


@settings(max_examples=200, deadline=None)
@given(PLAIN)
def test_decoding_any_plain_data_is_a_book_or_a_record_error(value: object) -> None:
    for decode in (decode_crons, decode_generators):
        with contextlib.suppress(RecordError):
            decode(value, "lab")


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_record_with_any_field_replaced_decodes_or_is_a_record_error(data: st.DataObject) -> None:
    record = list(data.draw(st.sampled_from(CRON_RECORDS)))
    record[data.draw(st.integers(0, len(record) - 1))] = data.draw(PLAIN)
    try:
        crons = decode_crons([record], "lab")
    except RecordError:
        crons = None
    if crons is not None:  # what decodes encodes back to the same record
        assert encode_crons(crons) == [record]
    record = list(data.draw(st.sampled_from(GENERATOR_RECORDS)))
    record[data.draw(st.integers(0, len(record) - 1))] = data.draw(PLAIN)
    try:
        generators = decode_generators([record], "lab")
    except RecordError:
        generators = None
    if generators is not None:
        assert encode_generators(generators) == [record]
