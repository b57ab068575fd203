"""Raft safety checkers for the simulator, fed from what each server persisted and applied.

What it owns: a mirror of every server's *durable* log (rebuilt from its
simulated disk after a crash), and the safety properties of the Raft paper
(Figure 3), checked incrementally after every step:

* **Election safety** (§5.2): at most one leader per term.
* **Log matching** (§5.3): if two logs hold an entry with the same index and
  term, the logs are identical up to it. Each persisted entry gets a *chain
  id*: an interned ``(previous chain id, term, kind, data)``, so equal chain
  ids mean equal prefixes, exactly (no hashing, no collisions), and the
  check is one dictionary lookup per persisted entry.
* **Leader completeness** (§5.4): a leader of term T holds every entry
  committed in a term below T. The commit term of an index is taken as the
  current term of the first server that applies it, which is never below
  the true commit term, so the check is sound (it cannot fail a correct
  run).
* **State machine safety** (§5.4.3): every server applies the same entry at
  each index, in order, and only entries it holds in its durable log.
* **Commit needs a durable quorum** (§5.3, dissertation §10.2.1): when a
  leader's commit index moves, every newly committed entry is durable on a
  majority of its voters (:meth:`RaftChecker.durable_copies`, called by the
  server adapter right after the step that moved it). A leader that sends
  while persisting must not count its own copy before it is durable.
* Durable hard state never goes back: the term never decreases and a vote,
  once durable in a term, never changes (no double vote after a restart).

A violation raises :class:`~colonymesh.simulations.engine.InvariantViolation`,
which stops the run with the seed's virtual time and event count.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from colonymesh.consensus.types import Entry, EntryKind, HardState, NodeId, Snapshot
from colonymesh.simulations.engine import InvariantViolation

_ChainKey = tuple[int, int, int, bytes]


class DurableLog:
    """One server's durable Raft state, as replayed from the records its driver persisted."""

    __slots__ = ("chains", "entries", "hard_state", "snapshot")

    def __init__(self) -> None:
        self.hard_state = HardState()
        self.snapshot: Snapshot | None = None
        self.entries: list[Entry] = []  # entries[k].index == first_index + k
        self.chains: list[int] = []  # chain id of entries[k]

    @property
    def snap_index(self) -> int:
        return 0 if self.snapshot is None else int(self.snapshot.meta.index)

    @property
    def last_index(self) -> int:
        return self.snap_index + len(self.entries)

    def entry(self, index: int) -> Entry | None:
        k = index - self.snap_index - 1
        return self.entries[k] if 0 <= k < len(self.entries) else None

    def chain(self, index: int) -> int | None:
        k = index - self.snap_index - 1
        return self.chains[k] if 0 <= k < len(self.chains) else None


class RaftChecker:
    """All servers' durable logs plus the cluster-wide facts the safety properties compare."""

    def __init__(self, ids: Sequence[NodeId]) -> None:
        self.ids = list(ids)
        self.logs = [DurableLog() for _ in ids]
        self.applied = [0 for _ in ids]
        self._intern: dict[_ChainKey, int] = {}
        self._chain_at: dict[tuple[int, int], int] = {}  # (index, term) -> chain id
        self.leaders: dict[int, int] = {}  # term -> server
        self.committed_chain: list[int] = []  # chain id of committed index i at [i - 1]
        self.committed_term: list[int] = []  # entry term of committed index i
        self.commit_term: list[int] = []  # upper bound of the term index i was committed in
        self.leader_changes = 0
        self.conf_entries = 0  # CONF_CHANGE entries committed (bootstrap ones included)

    # -- persisted state --------------------------------------------------

    def _chain_id(self, key: _ChainKey) -> int:
        found = self._intern.get(key)
        if found is None:
            found = len(self._intern) + 1
            self._intern[key] = found
        return found

    def persisted(self, server: int, records: Iterable[object]) -> None:
        """The driver made these records durable, in this order."""
        log = self.logs[server]
        for record in records:
            if isinstance(record, Entry):
                self._append(server, log, record)
            elif isinstance(record, HardState):
                self._hard_state(server, log, record)
            elif isinstance(record, Snapshot):
                self._snapshot(log, record)
            else:
                raise InvariantViolation(f"server {server} persisted an unknown record {record!r}")

    def rebuild(self, server: int, records: Iterable[object]) -> None:
        """After a crash: the durable log is exactly what survived on disk."""
        self.logs[server] = DurableLog()
        self.applied[server] = 0
        self.persisted(server, records)

    def _append(self, server: int, log: DurableLog, e: Entry) -> None:
        index = int(e.index)
        k = index - log.snap_index - 1
        if k < 0:
            return  # already covered by the snapshot
        if k > len(log.entries):
            raise InvariantViolation(
                f"{self.ids[server]} persisted entry {index} after a gap (last {log.last_index})"
            )
        del log.entries[k:]
        del log.chains[k:]
        prev = log.chains[-1] if log.chains else self._snapshot_chain(log)
        chain = self._chain_id((prev, int(e.term), int(e.kind), e.data))
        seen = self._chain_at.setdefault((index, int(e.term)), chain)
        if seen != chain:
            raise InvariantViolation(
                f"log matching (§5.3): {self.ids[server]} holds a different entry or prefix "
                f"at index {index} term {e.term} than another server"
            )
        log.entries.append(e)
        log.chains.append(chain)

    def _snapshot_chain(self, log: DurableLog) -> int:
        if log.snapshot is None:
            return 0
        meta = log.snapshot.meta
        known = self._chain_at.get((int(meta.index), int(meta.term)))
        if known is not None:
            return known
        return self._chain_id((-1 - int(meta.index), int(meta.term), -1, b""))

    def _snapshot(self, log: DurableLog, snap: Snapshot) -> None:
        drop = int(snap.meta.index) - log.snap_index
        if drop <= 0:
            return
        # As the durable store does (Raft §7): the entries after the snapshot are
        # kept only if the log holds the snapshot's last entry; else all go.
        keep_from = min(drop, len(log.entries))
        held = log.entry(int(snap.meta.index))
        if held is None or held.term != snap.meta.term:
            keep_from = len(log.entries)
        log.entries = log.entries[keep_from:]
        log.chains = log.chains[keep_from:]
        log.snapshot = snap

    def _hard_state(self, server: int, log: DurableLog, hs: HardState) -> None:
        old = log.hard_state
        if hs.term < old.term:
            raise InvariantViolation(
                f"{self.ids[server]} made term {hs.term} durable after term {old.term}"
            )
        if hs.term == old.term and old.voted_for is not None and hs.voted_for != old.voted_for:
            raise InvariantViolation(
                f"{self.ids[server]} voted for {old.voted_for} then {hs.voted_for} in term {hs.term}"
            )
        log.hard_state = hs

    def durable_copies(self, index: int, entry: Entry, servers: Iterable[int]) -> int:
        """How many of ``servers`` hold ``entry`` at ``index`` durably (or a snapshot past it)."""
        copies = 0
        for server in servers:
            log = self.logs[server]
            if log.snap_index >= index or log.entry(index) == entry:
                copies += 1
        return copies

    def commit_quorum(
        self, leader: int, term: int, first: int, entries: Sequence[Entry], voters: Sequence[int]
    ) -> None:
        """Leader ``leader`` of ``term`` just committed ``entries`` (indexes ``first``...)
        under a configuration with ``voters``: each must be durable on a majority."""
        need = len(voters) // 2 + 1
        for k, entry in enumerate(entries):
            have = self.durable_copies(first + k, entry, voters)
            if have < need:
                raise InvariantViolation(
                    f"commit without a durable quorum: {self.ids[leader]} (term {term}) "
                    f"committed entry {first + k} held durably by {have} of {len(voters)} voters"
                )

    # -- roles ------------------------------------------------------------

    def leader_seen(self, server: int, term: int) -> None:
        """A server reported itself leader of ``term`` (called after each of its steps)."""
        holder = self.leaders.get(term)
        if holder == server:
            return
        if holder is not None:
            raise InvariantViolation(
                f"election safety (§5.2): {self.ids[holder]} and {self.ids[server]} "
                f"are both leaders of term {term}"
            )
        self.leaders[term] = server
        self.leader_changes += 1
        self._check_completeness(server, term)

    def _check_completeness(self, server: int, term: int) -> None:
        k = len(self.commit_term)
        while k > 0 and self.commit_term[k - 1] >= term:
            k -= 1
        if k == 0:
            return
        log = self.logs[server]
        if log.snap_index >= k:
            return  # compacted into a snapshot that the checks below already vetted
        if log.chain(k) != self.committed_chain[k - 1]:
            raise InvariantViolation(
                f"leader completeness (§5.4): {self.ids[server]} leads term {term} "
                f"without committed entry {k}"
            )

    # -- applied state ----------------------------------------------------

    def applying(self, server: int, e: Entry, current_term: int) -> None:
        """A server is about to apply committed entry ``e``."""
        index = int(e.index)
        if index != self.applied[server] + 1:
            raise InvariantViolation(
                f"{self.ids[server]} applies {index} after {self.applied[server]}"
            )
        log = self.logs[server]
        held = log.entry(index)
        chain = log.chain(index)
        if held is None or chain is None or held != e:
            raise InvariantViolation(
                f"{self.ids[server]} applies entry {index} that is not in its durable log"
            )
        if index <= len(self.committed_chain):
            if self.committed_chain[index - 1] != chain:
                raise InvariantViolation(
                    f"state machine safety (§5.4.3): {self.ids[server]} applies a different "
                    f"entry at index {index} than was applied before"
                )
        else:
            self.committed_chain.append(chain)
            self.committed_term.append(int(e.term))
            self.commit_term.append(current_term)
            if e.kind is EntryKind.CONF_CHANGE:
                self.conf_entries += 1
        self.applied[server] = index

    def restored(self, server: int, snap: Snapshot) -> None:
        """A server reset its state machine from a snapshot (sent by a leader, or at boot)."""
        index = int(snap.meta.index)
        if index > len(self.committed_term):
            raise InvariantViolation(
                f"{self.ids[server]} restored a snapshot at {index}, beyond anything applied"
            )
        if index > 0 and self.committed_term[index - 1] != snap.meta.term:
            raise InvariantViolation(
                f"{self.ids[server]} restored a snapshot at {index} of term {snap.meta.term}, "
                f"but the entry committed there has term {self.committed_term[index - 1]}"
            )
        self.applied[server] = index

    @property
    def commits(self) -> int:
        return len(self.committed_chain)
