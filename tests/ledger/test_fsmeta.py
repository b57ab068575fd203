"""Labels, revisions and snapshots in the ledger: the rules, the commands, ledger snapshots."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from colonymesh.fs.importer import import_bytes
from colonymesh.node.ledger.commands import (
    AddFile,
    CreateSnapshot,
    RemoveFile,
    RemoveLabel,
    RemoveSnapshot,
)
from colonymesh.node.ledger.fsmeta import (
    FsMeta,
    FsMetaConfig,
    FsMetaRefused,
    Revision,
    check_label,
    check_name,
    is_under,
)
from colonymesh.node.ledger.ledger import Ledger
from support.ledger import make_harness


def cid_of(data: bytes) -> str:
    return import_bytes(data)[0].cid.encode()


A, B, C = cid_of(b"a"), cid_of(b"b"), cid_of(b"c")
KEY = b"k" * 32


def rev(name: str, cid: str, ms: int = 0, size: int = 1) -> Revision:
    return Revision(name, size, cid, ms, KEY, ("/ip4/127.0.0.1/tcp/1",))


@pytest.mark.parametrize("label", ["/", "/a", "/a/b", "/in/{x}", "/ü/é d"])
def test_valid_labels(label: str) -> None:
    assert check_label(label) == label


@pytest.mark.parametrize("label", ["", "a", "/a/", "//", "/a//b", "/a/./b", "/..", "/a\nb", 7])
def test_invalid_labels_are_refused(label: object) -> None:
    with pytest.raises(FsMetaRefused):
        check_label(label)


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "x\x00", "é" * 200])
def test_invalid_names_are_refused(name: str) -> None:
    with pytest.raises(FsMetaRefused):
        check_name(name)


def test_nesting() -> None:
    assert is_under("/a/b", "/a") and is_under("/a", "/a") and is_under("/x", "/")
    assert not is_under("/ab", "/a") and not is_under("/a", "/a/b")


def test_the_latest_revision_wins_and_re_adding_it_changes_nothing() -> None:
    meta = FsMeta()
    assert meta.add_file("/a", rev("f", A, 1))
    assert meta.add_file("/a", rev("f", B, 2))
    assert not meta.add_file("/a", rev("f", B, 3))  # idempotent
    assert meta.add_file("/a", rev("f", A, 4))  # going back is a new revision
    assert [r.cid for r in meta.revisions("/a", "f")] == [A, B, A]
    latest = meta.latest("/a", "f")
    assert latest is not None and latest.added_ms == 4


def test_revisions_are_capped_oldest_dropped() -> None:
    meta = FsMeta(FsMetaConfig(revisions_per_file_max=2))
    for i, cid in enumerate((A, B, C)):
        meta.add_file("/a", rev("f", cid, i))
    assert [r.cid for r in meta.revisions("/a", "f")] == [B, C]


def test_snapshot_pins_latest_under_label_and_survives_removals() -> None:
    meta = FsMeta()
    meta.add_file("/p", rev("top", A))
    meta.add_file("/p/q", rev("deep", B))
    meta.add_file("/p/q", rev("deep", C))
    meta.add_file("/pq", rev("other", A))  # not under /p
    snap = meta.create_snapshot("id1", "s1", "/p", 10, KEY)
    assert [(f.label, f.revision.name, f.revision.cid) for f in snap.files] == [
        ("/p", "top", A),
        ("/p/q", "deep", C),
    ]
    meta.remove_label("/p")
    meta.add_file("/p", rev("top", B))
    assert meta.snapshot("s1") is snap and meta.snapshot("id1") is snap
    assert set(meta.referenced_cids()) == {A, B, C}
    with pytest.raises(FsMetaRefused, match="exists"):
        meta.create_snapshot("id2", "s1", "/p", 11, KEY)
    assert meta.remove_snapshot("s1") is snap
    assert meta.snapshot("id1") is None
    with pytest.raises(FsMetaRefused, match="no snapshot"):
        meta.remove_snapshot("s1")


def test_remove_file_and_label() -> None:
    meta = FsMeta()
    meta.add_file("/a", rev("f", A))
    meta.add_file("/a/b", rev("g", B))
    meta.add_file("/c", rev("h", C))
    meta.remove_file("/a", "f")
    assert "/a" not in meta.labels and meta.file_count == 2
    with pytest.raises(FsMetaRefused):
        meta.remove_file("/a", "f")
    assert meta.remove_label("/a") == 1
    assert meta.label_counts() == [("/c", 1)]
    with pytest.raises(FsMetaRefused, match="no label"):
        meta.remove_label("/a")


def test_caps_are_enforced() -> None:
    meta = FsMeta(FsMetaConfig(labels_max=1, files_max=2, snapshots_max=1))
    meta.add_file("/a", rev("f", A))
    with pytest.raises(FsMetaRefused, match="labels"):
        meta.add_file("/b", rev("f", A))
    meta.add_file("/a", rev("g", A))
    with pytest.raises(FsMetaRefused, match="files"):
        meta.add_file("/a", rev("h", A))
    meta.create_snapshot("i", "n", "/a", 0, KEY)
    with pytest.raises(FsMetaRefused, match="snapshots"):
        meta.create_snapshot("j", "m", "/a", 0, KEY)


def test_bad_revisions_are_refused_and_change_nothing() -> None:
    meta = FsMeta()
    for bad in (
        ("/a", Revision("f", 1, "not-a-cid", 0, KEY)),
        ("/a", Revision("f", -1, A, 0, KEY)),
        ("/a", Revision("f", 1, A, 0, KEY, tuple("x" * 9))),
        ("a", Revision("f", 1, A, 0, KEY)),
        ("/a", Revision("a/b", 1, A, 0, KEY)),
    ):
        with pytest.raises(FsMetaRefused):
            meta.add_file(*bad)
    assert not meta and meta.file_count == 0


# --- through the ledger ------------------------------------------------------------


def test_commands_apply_through_the_ledger_and_survive_a_ledger_snapshot() -> None:
    h = make_harness()
    member = h.submitter
    assert h.ok(member, AddFile("/in", "x.txt", 1, A, ("/ip4/127.0.0.1/tcp/9",)))[0] == A
    h.ok(member, AddFile("/in", "x.txt", 1, B))
    h.ok(h.server, AddFile("/in/sub", "y", 1, C))  # any member
    sid, _ = h.ok(member, CreateSnapshot("/in", "snap"))
    assert len(sid) == 32
    assert "exists" in h.refused(member, CreateSnapshot("/in", "snap"))
    assert "label" in h.refused(member, AddFile("in", "x", 1, A))
    assert "not a CID" in h.refused(member, AddFile("/in", "x", 1, "bafy-nope"))
    meta = h.ledger.fsmeta
    latest = meta.latest("/in", "x.txt")
    assert latest is not None and latest.cid == B and latest.adder == member.keys.public_key
    assert latest.added_ms == h.ledger.now_ms

    data = h.ledger.snapshot()
    restored = Ledger.from_snapshot(h.ledger.colony, data)
    assert restored.snapshot() == data
    assert restored.fsmeta.to_plain() == meta.to_plain()
    snap = restored.fsmeta.snapshot("snap")
    assert snap is not None and snap.id == sid
    assert [f.revision.cid for f in snap.files] == [B, C]

    h.ok(member, RemoveFile("/in", "x.txt"))
    h.ok(member, RemoveLabel("/in"))
    assert "no file" in h.refused(member, RemoveFile("/in", "x.txt"))
    h.ok(member, RemoveSnapshot(sid))
    assert not h.ledger.fsmeta
    # An empty meta-filesystem leaves no trace in the snapshot bytes.
    assert b"fsmeta" not in h.ledger.snapshot()


def test_a_snapshot_with_a_broken_fsmeta_is_refused() -> None:
    from colonymesh.node import wire
    from colonymesh.node.ledger.snapshot import SnapshotError

    h = make_harness()
    h.ok(h.submitter, AddFile("/in", "x", 1, A))
    document = wire.decode(h.ledger.snapshot(), frame_bytes_max=1 << 20)
    document["fsmeta"][0][0][0] = "no-slash"
    with pytest.raises(SnapshotError, match="fsmeta"):
        Ledger.from_snapshot(h.ledger.colony, wire.encode(document))


# --- property: any sequence of adds, removes and snapshots -----------------------------

LABELS = st.sampled_from(["/a", "/a/b", "/b", "/a/b/c"])
NAMES = st.sampled_from(["f", "g", "h"])
CIDS = st.sampled_from([A, B, C])


class FsMetaMachine(RuleBasedStateMachine):
    """FsMeta against a naive model; its to_plain/from_plain round trip after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.meta = FsMeta(FsMetaConfig(revisions_per_file_max=3))
        self.model: dict[tuple[str, str], list[str]] = {}
        self.snaps: dict[str, list[tuple[str, str, str]]] = {}
        self.clock = 0

    @rule(label=LABELS, name=NAMES, cid=CIDS)
    def add(self, label: str, name: str, cid: str) -> None:
        self.clock += 1
        changed = self.meta.add_file(label, rev(name, cid, self.clock))
        history = self.model.setdefault((label, name), [])
        assert changed == (not history or history[-1] != cid)
        if changed:
            history.append(cid)
            del history[:-3]

    @rule(label=LABELS, name=NAMES)
    def remove(self, label: str, name: str) -> None:
        if (label, name) in self.model:
            self.meta.remove_file(label, name)
            del self.model[(label, name)]
        else:
            with pytest.raises(FsMetaRefused):
                self.meta.remove_file(label, name)

    @rule(label=LABELS)
    def remove_label(self, label: str) -> None:
        doomed = [key for key in self.model if is_under(key[0], label)]
        if doomed:
            assert self.meta.remove_label(label) == len(doomed)
            for key in doomed:
                del self.model[key]
        else:
            with pytest.raises(FsMetaRefused):
                self.meta.remove_label(label)

    @rule(label=LABELS, name=st.sampled_from(["s1", "s2", "s3"]))
    def snapshot(self, label: str, name: str) -> None:
        if name in self.snaps:
            with pytest.raises(FsMetaRefused):
                self.meta.create_snapshot(f"id-{name}", name, label, self.clock, KEY)
            return
        snap = self.meta.create_snapshot(f"id-{name}", name, label, self.clock, KEY)
        expected = sorted(
            (k[0], k[1], v[-1]) for k, v in self.model.items() if is_under(k[0], label)
        )
        got = [(f.label, f.revision.name, f.revision.cid) for f in snap.files]
        assert got == expected
        self.snaps[name] = expected

    @precondition(lambda self: bool(self.snaps))
    @rule(data=st.data())
    def remove_snapshot(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.snaps)))
        self.meta.remove_snapshot(name)
        del self.snaps[name]

    @invariant()
    def agrees_with_the_model(self) -> None:
        files = {
            (label, name): [r.cid for r in revisions]
            for label, name, revisions in self.meta.files_under("/")
        }
        assert files == self.model
        assert self.meta.file_count == len(self.model)
        assert all(files for files in self.meta.labels.values())
        for name, expected in self.snaps.items():
            snap = self.meta.snapshot(name)
            assert snap is not None
            assert [(f.label, f.revision.name, f.revision.cid) for f in snap.files] == expected
        referenced = {cid for history in self.model.values() for cid in history} | {
            cid for files in self.snaps.values() for _, _, cid in files
        }
        assert set(self.meta.referenced_cids()) == referenced
        again = FsMeta.from_plain(self.meta.to_plain())
        assert again.to_plain() == self.meta.to_plain()
        assert again.file_count == self.meta.file_count


TestFsMetaMachine = FsMetaMachine.TestCase
TestFsMetaMachine.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)


PLAIN = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.binary(max_size=8),
    lambda children: st.lists(children, max_size=6),
    max_leaves=40,
)


@given(PLAIN)
def test_from_plain_refuses_garbage_with_a_typed_error(value: object) -> None:
    with contextlib.suppress(FsMetaRefused):  # anything else fails the test
        FsMeta.from_plain(value)


@given(st.lists(st.tuples(LABELS, NAMES, CIDS), max_size=8), st.data())
def test_from_plain_refuses_every_mutation_of_a_real_document_or_keeps_it_valid(
    adds: list[tuple[str, str, str]], data: st.DataObject
) -> None:
    meta = FsMeta()
    for label, name, cid in adds:
        meta.add_file(label, rev(name, cid))
    meta.create_snapshot("id", "s", "/", 0, KEY)
    plain = meta.to_plain()
    assert FsMeta.from_plain(plain).to_plain() == plain
    mutated = _mutate(plain, data)
    try:
        again = FsMeta.from_plain(mutated)
    except FsMetaRefused:
        return
    assert FsMeta.from_plain(again.to_plain()).to_plain() == again.to_plain()


def _mutate(value: object, data: st.DataObject) -> object:
    if isinstance(value, list) and value and data.draw(st.booleans()):
        index = data.draw(st.integers(0, len(value) - 1))
        return [*value[:index], _mutate(value[index], data), *value[index + 1 :]]
    return data.draw(PLAIN)


@given(st.text(max_size=12), st.text(max_size=12), st.text(max_size=12))
def test_any_query_gets_a_document_or_none(op: str, label: str, name: str) -> None:
    from colonymesh.node.colony.fsviews import OPS, answer

    meta = FsMeta()
    meta.add_file("/a", rev("f", A))
    meta.create_snapshot("id", "s", "/", 0, KEY)
    for query in (op, *OPS):
        document = answer(meta, query, label, name)
        assert document is None or isinstance(document, dict)
    assert answer(meta, "ls", "", "") == {
        "label": "/",
        "files": [
            {
                "label": "/a",
                "name": "f",
                "size": 1,
                "cid": A,
                "added_ms": 0,
                "adder": answer(meta, "revisions", "/a", "f")["revisions"][0]["adder"],  # type: ignore[index]
                "addrs": ["/ip4/127.0.0.1/tcp/1"],
                "revisions": 1,
            }
        ],
        "truncated": False,
    }
