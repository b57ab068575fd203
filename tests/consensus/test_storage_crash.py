"""Crash-restart tests: a log cut or damaged at arbitrary byte offsets reopens to exactly
the records wholly before the damage, or raises the defined corruption error.

Expected outcomes are computed from the documented on-disk format (32-byte
segment header, 32-byte record header + data), not from the store's code.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from colonymesh.consensus.storage import CorruptLogError, LogStore
from colonymesh.consensus.types import Entry, EntryKind, HardState, LogIndex, NodeId, Term

HEADER = 32
SEG_MAX = 4096


@dataclass(frozen=True)
class Template:
    directory: Path
    entries: list[Entry]
    last_segment: str
    last_first: int  # first index in the last segment
    ends: list[int]  # byte offset just past each record of the last segment

    def expect_cut(self, cut: int) -> list[Entry]:
        """Entries a reopened store must hold if the last segment is cut to ``cut`` bytes."""
        keep = self.last_first - 1
        if cut >= HEADER:
            keep += sum(1 for end in self.ends if end <= cut)
        return self.entries[:keep]


def make_log(
    directory: Path, sizes: list[int], batch: int, seed: int, fsync: bool = True
) -> Template:
    """Write entries of the given data sizes in batches (syncing each), term rising now and then."""
    entries = []
    term = 1
    for i, size in enumerate(sizes, start=1):
        if (seed + i) % 17 == 0:
            term += 1
        data = bytes((seed + i + k) % 256 for k in range(size))
        entries.append(Entry(Term(term), LogIndex(i), EntryKind((seed + i) % 3), data))
    with LogStore.open(directory, segment_bytes_max=SEG_MAX, fsync=fsync) as s:
        for lo in range(0, len(entries), batch):
            s.append(entries[lo : lo + batch])
            s.sync()
        s.save_hard_state(HardState(Term(term), NodeId("n1"), LogIndex(len(entries))))
        s.sync()
    segs = sorted(n for n in os.listdir(directory) if n.endswith(".seg"))
    last = segs[-1]
    first = int(last[4:24])
    ends, pos = [], HEADER
    for e in entries[first - 1 :]:
        pos += HEADER + len(e.data)
        ends.append(pos)
    assert os.path.getsize(directory / last) == pos
    return Template(directory, entries, last, first, ends)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    sizes = [(i * 37) % 300 for i in range(60)]  # several segments, a few dozen in the last
    return make_log(tmp_path_factory.mktemp("template"), sizes, batch=7, seed=3)


def reopen_copy(t: Template, into: Path, mutate: Callable[[Path], None]) -> list[Entry]:
    """Copy the template, damage its last segment with ``mutate(path)``, reopen, read all.

    The reopened stores skip fsync: recovery decides the same either way, and
    fsyncs are what makes this slow on a busy disk.
    """
    if into.exists():
        shutil.rmtree(into)
    shutil.copytree(t.directory, into)
    mutate(into / t.last_segment)
    with LogStore.open(into, segment_bytes_max=SEG_MAX, fsync=False) as s:
        got = s.entries(s.first_index(), s.last_index() + 1)
        # The repaired log must accept appends and keep them across a restart.
        nxt = Entry(Term(99), LogIndex(s.last_index() + 1), EntryKind.NORMAL, b"after")
        s.append([nxt])
        s.sync()
    with LogStore.open(into, segment_bytes_max=SEG_MAX, fsync=False) as s:
        assert s.entries(s.last_index(), s.last_index() + 1) == [nxt]
        assert s.hard_state().term >= 1
    return got


def cut_at(offset: int) -> Callable[[Path], None]:
    def mutate(path: Path) -> None:
        os.truncate(path, offset)

    return mutate


def flip_at(offset: int, mask: int) -> Callable[[Path], None]:
    def mutate(path: Path) -> None:
        with open(path, "r+b") as f:
            f.seek(offset)
            byte = f.read(1)[0]
            f.seek(offset)
            f.write(bytes([byte ^ mask]))

    return mutate


FAST = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FAST
@given(data=st.data())
def test_cut_last_segment_anywhere(template: Template, tmp_path: Path, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, template.ends[-1]), label="cut")
    assert reopen_copy(template, tmp_path / "copy", cut_at(cut)) == template.expect_cut(cut)


@FAST
@given(data=st.data())
def test_flip_a_byte_of_last_segment(
    template: Template, tmp_path: Path, data: st.DataObject
) -> None:
    size = template.ends[-1]
    offset = data.draw(st.integers(0, size - 1), label="offset")
    mask = data.draw(st.integers(1, 255), label="mask")
    starts = [HEADER, *template.ends[:-1]]
    hit = next((k for k, end in enumerate(template.ends) if offset < end), None)
    if offset < HEADER or (hit is not None and hit < len(template.ends) - 1):
        # Damage followed by intact records: corruption, reported at the damaged record.
        with pytest.raises(CorruptLogError) as err:
            reopen_copy(template, tmp_path / "copy", flip_at(offset, mask))
        assert err.value.path.name == template.last_segment
        assert err.value.offset == (0 if offset < HEADER else starts[hit])  # type: ignore[index]
    else:  # the final record: indistinguishable from a torn write, truncated away
        got = reopen_copy(template, tmp_path / "copy", flip_at(offset, mask))
        assert got == template.entries[:-1]


@FAST
@given(
    cut=st.integers(0, 10_000),
    tail=st.one_of(
        st.binary(min_size=1, max_size=600),
        st.integers(1, 8192).map(lambda n: b"\0" * n),
    ),
)
def test_garbage_after_a_cut_is_a_torn_tail(
    template: Template, tmp_path: Path, cut: int, tail: bytes
) -> None:
    """A crash can leave zeros (allocated, unwritten pages) or junk after the last good record."""
    cut = min(cut, template.ends[-1])

    def mutate(path: Path) -> None:
        os.truncate(path, cut)
        with open(path, "ab") as f:
            f.write(tail)

    got = reopen_copy(template, tmp_path / "copy", mutate)
    assert got == template.expect_cut(cut)


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 900), min_size=1, max_size=40),
    batch=st.integers(1, 12),
    seed=st.integers(0, 255),
    data=st.data(),
)
def test_cut_or_flip_any_log_shape(
    sizes: list[int], batch: int, seed: int, data: st.DataObject
) -> None:
    """Logs of any shape (one or many segments, tiny or big records), cut or flipped anywhere."""
    with tempfile.TemporaryDirectory() as tmp:
        t = make_log(Path(tmp) / "log", sizes, batch, seed, fsync=False)
        offset = data.draw(st.integers(0, t.ends[-1] if t.ends else HEADER), label="offset")
        if data.draw(st.booleans(), label="flip") and offset < (t.ends or [HEADER])[-1]:
            last_record = len(t.ends) - 1
            hit = next((k for k, end in enumerate(t.ends) if offset < end), None)
            if offset < HEADER or hit != last_record:
                with pytest.raises(CorruptLogError):
                    reopen_copy(t, Path(tmp) / "copy", flip_at(offset, 0x5A))
            else:
                assert reopen_copy(t, Path(tmp) / "copy", flip_at(offset, 0x5A)) == t.entries[:-1]
        else:
            assert reopen_copy(t, Path(tmp) / "copy", cut_at(offset)) == t.expect_cut(offset)


def test_flip_in_a_sealed_segment_is_corruption(template: Template, tmp_path: Path) -> None:
    segs = sorted(n for n in os.listdir(template.directory) if n.endswith(".seg"))
    assert len(segs) >= 3
    for name in segs[:-1]:
        for offset in (0, HEADER + 5, os.path.getsize(template.directory / name) - 1):
            copy = tmp_path / f"{name}-{offset}"
            shutil.copytree(template.directory, copy)
            flip_at(offset, 0x40)(copy / name)
            with pytest.raises(CorruptLogError) as err:
                LogStore.open(copy)
            assert err.value.path == copy / name


def test_missing_middle_segment_is_corruption(template: Template, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(template.directory, copy)
    segs = sorted(n for n in os.listdir(copy) if n.endswith(".seg"))
    os.unlink(copy / segs[1])
    with pytest.raises(CorruptLogError, match="missing"):
        LogStore.open(copy)


def test_torn_new_segment_is_discarded(tmp_path: Path) -> None:
    """A crash right after a rollover created the file but before its header was written."""
    t = make_log(tmp_path / "log", [200] * 40, batch=5, seed=1)
    nxt = f"log-{len(t.entries) + 1:020d}.seg"
    for size in (0, 7, HEADER - 1):
        with open(t.directory / nxt, "wb") as f:
            f.write(b"CMRLOG\x00\x01"[:size] + b"\0" * max(0, size - 8))
        with LogStore.open(t.directory, segment_bytes_max=SEG_MAX) as s:
            assert s.entries(1, s.last_index() + 1) == t.entries
        assert not (t.directory / nxt).exists()


@pytest.mark.slow
def test_every_cut_and_every_flip_of_last_segment(template: Template, tmp_path: Path) -> None:
    for cut in range(template.ends[-1] + 1):
        assert reopen_copy(template, tmp_path / "c", cut_at(cut)) == template.expect_cut(cut)
    for offset in range(template.ends[-2], template.ends[-1]):  # every byte of the last record
        assert reopen_copy(template, tmp_path / "f", flip_at(offset, 0xFF)) == template.entries[:-1]


def test_damage_after_open_is_caught_on_read(tmp_path: Path) -> None:
    entries = [Entry(Term(1), LogIndex(i), EntryKind.NORMAL, b"v%d" % i) for i in range(1, 11)]
    with LogStore.open(tmp_path) as s:
        s.append(entries)
        s.sync()
        seg = tmp_path / f"log-{1:020d}.seg"
        flip_at(HEADER + 3 * (HEADER + 2) + HEADER, 0x01)(seg)  # the data of entry 4
        assert s.entries(1, 4) == entries[:3]
        with pytest.raises(CorruptLogError) as err:
            s.entries(2, 6)
        assert err.value.path == seg
