"""A hypothesis state machine drives a LogStore against a plain-list model, with
power-loss crashes: the newest segment is torn anywhere past its durable point (or
vanishes, if its directory entry was not yet durable) and an unsynced hard-state slot
is garbled. After every restart the log must be a prefix of the model's log that keeps
everything synced, and the hard state the synced or the latest one."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from colonymesh.consensus.storage import LogStore
from colonymesh.consensus.storage.hardstate import SLOT_BYTES
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

SEG_MAX = 4096
HEADER = 32


def mk(index: int, term: int, size: int) -> Entry:
    return Entry(
        Term(term), LogIndex(index), EntryKind.NORMAL, bytes([(index * 31 + term) % 256]) * size
    )


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="logstore-model-"))
        self.store = LogStore.open(self.dir, segment_bytes_max=SEG_MAX)
        self.log: list[Entry] = []  # the entries base+1 .. last
        self.base, self.base_term = 0, 0
        self.term = 1
        self.durable = 0  # what the store must report: synced, or covered by the snapshot
        self.synced = 0  # the last index really fsynced in the segment files
        self.hs_synced = self.hs_latest = HardState()

    @property
    def last(self) -> int:
        return self.base + len(self.log)

    # ------------------------------------------------------------ operations

    @rule(n=st.integers(1, 20), size=st.integers(0, 600), bump=st.booleans())
    def append(self, n: int, size: int, bump: bool) -> None:
        self.term += bump
        ents = [mk(self.last + 1 + k, self.term, size) for k in range(n)]
        self.store.append(ents)
        self.log += ents

    @precondition(lambda self: self.log)
    @rule(data=st.data(), n=st.integers(1, 10), size=st.integers(0, 300))
    def append_conflicting(self, data: st.DataObject, n: int, size: int) -> None:
        at = data.draw(st.integers(self.base + 1, self.last), label="at")
        self.term += 1
        ents = [mk(at + k, self.term, size) for k in range(n)]
        self.store.append(ents)
        self.log = self.log[: at - self.base - 1] + ents
        self.durable = min(self.durable, at - 1)
        self.synced = min(self.synced, at - 1)

    @rule()
    def sync(self) -> None:
        assert self.store.sync() == self.last
        self.durable = self.synced = self.last
        self.hs_synced = self.hs_latest

    @rule(vote=st.sampled_from([None, "a", "b"]), commit=st.integers(0, 10**6))
    def save_hard_state(self, vote: str | None, commit: int) -> None:
        hs = HardState(Term(self.term), None if vote is None else NodeId(vote), LogIndex(commit))
        self.store.save_hard_state(hs)
        self.hs_latest = hs

    @precondition(lambda self: self.log)
    @rule(data=st.data())
    def snapshot_own(self, data: st.DataObject) -> None:
        at = data.draw(st.integers(self.base + 1, self.last), label="snapshot at")
        term = self.log[at - self.base - 1].term
        self.store.save_snapshot(Snapshot(SnapshotMeta(LogIndex(at), term, ConfState()), b"own"))
        self.log = self.log[at - self.base :]
        self.base, self.base_term = at, term
        self.durable = max(self.durable, at)

    @rule(ahead=st.integers(0, 30))
    def snapshot_from_leader(self, ahead: int) -> None:
        self.term += 1  # a term no stored entry has: the log cannot match
        at = max(self.base + 1, self.last - 5 + ahead)
        meta = SnapshotMeta(LogIndex(at), Term(self.term), ConfState(voters=(NodeId("a"),)))
        self.store.save_snapshot(Snapshot(meta, b"leader"))
        self.log = []
        self.base, self.base_term = at, self.term
        self.durable = self.synced = at  # the fresh segment is empty and durable

    @rule()
    def compact(self) -> None:
        self.store.compact(self.base)

    @rule()
    def clean_restart(self) -> None:
        self.store.close()
        self.store = LogStore.open(self.dir, segment_bytes_max=SEG_MAX)
        assert self.store.entries(self.base + 1, self.last + 1) == self.log
        assert self.store.hard_state() == self.hs_latest
        # A process restart loses nothing written, and open() makes it durable.
        self.durable = self.synced = self.last
        self.hs_synced = self.hs_latest

    @rule(data=st.data(), tear_hs=st.booleans())
    def power_loss(self, data: st.DataObject, tear_hs: bool) -> None:
        s = self.store
        newest = s._segments[-1]
        name, size, first = newest.path, newest.size, newest.first_index
        ends = [*newest.offsets[1:], size] if len(newest.offsets) else []
        hs_dirty, pending = s._hs.dirty, s._hs._pending_slot
        if s._dir_dirty:  # the file's directory entry may not have reached the disk
            assert self.synced < first
            floor = -1 if data.draw(st.booleans(), label="vanish") else 0
        elif self.synced >= first:
            floor = ends[self.synced - first]
        else:
            floor = HEADER
        s.close()
        cut = data.draw(st.integers(floor, size), label="cut")
        if cut < 0:
            os.unlink(name)
            keep = first - 1
        else:
            os.truncate(name, cut)
            keep = first - 1 + sum(1 for e in ends if e <= cut) if cut >= HEADER else first - 1
        if hs_dirty and tear_hs and pending is not None:
            with open(self.dir / "hardstate", "r+b") as f:
                f.seek(pending * SLOT_BYTES + 9)
                f.write(b"\xff\x00torn")
        self.store = LogStore.open(self.dir, segment_bytes_max=SEG_MAX)
        assert keep >= self.synced, "the tear went below the synced point"
        expect = self.log[: max(0, keep - self.base)]
        assert self.store.last_index() == max(keep, self.base)
        assert self.store.entries(self.base + 1, self.store.last_index() + 1) == expect
        hs = self.store.hard_state()
        assert hs == (self.hs_synced if hs_dirty and tear_hs else self.hs_latest)
        self.log = expect
        self.durable = self.synced = self.last
        self.hs_synced = self.hs_latest = hs

    # ------------------------------------------------------------ invariants

    @invariant()
    def agrees_with_model(self) -> None:
        s = self.store
        assert (s.first_index(), s.last_index()) == (self.base + 1, self.last)
        assert s.durable_index() == self.durable
        assert s.term(self.base) == self.base_term
        lo = max(self.base + 1, self.last - 3)
        assert s.entries(lo, self.last + 1) == self.log[lo - self.base - 1 :]
        if self.log:
            assert s.term(self.last) == self.log[-1].term

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)


StoreMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
test_store_against_model = StoreMachine.TestCase


class LongStoreMachine(StoreMachine):
    pass


LongStoreMachine.TestCase.settings = settings(
    max_examples=300, stateful_step_count=50, deadline=None
)
test_store_against_model_long = pytest.mark.slow(LongStoreMachine.TestCase)
