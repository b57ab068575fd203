"""The trio driver of a Raft core: real time, a real disk, a network of peers.

Owns one :class:`~colonymesh.consensus.RaftNode`, its
:class:`~colonymesh.consensus.storage.LogStore` and the state machine it
replicates, in one task. The loop is the aioquic/etcd pattern: sleep until
the core's ``next_deadline()`` or until something arrives; step every queued
message; fire the timer when due; then drain ``ready()`` honouring the
contract in :mod:`colonymesh.consensus.raft`:

1. if the Ready says ``send_while_persisting`` (a leader whose term and vote
   are durable), send its messages first, so followers fsync while the leader
   does (Raft dissertation §10.2.1; the core counts the leader's own copy only
   after ``advance``);
2. persist (snapshot, entries, hard state) and ``sync()`` — in a worker thread,
   so the event loop keeps accepting messages and proposals meanwhile; what
   arrives during one fsync is persisted by the next, which is group commit
   with no timer (proposals enter the core at once, so the next Ready carries
   all of them, in one AppendEntries per follower). A Ready that only moves
   the commit index (``must_sync`` False) writes the hard state without an
   fsync, in the loop;
3. otherwise send the messages now (the network queues them and may drop
   them: Raft retransmits);
4. apply committed entries and answer the proposals waiting on them;
5. ``advance``.

Snapshots (``snapshot_every_entries``) are serialised in a worker thread, so
a large state machine (the ledger at 100k processes takes ~0.7 s) does not
stop the loop from stepping messages, heart-beating and persisting. The
state stays exactly that of the snapshot's index because nothing else
mutates it: committed entries and restores queue in order meanwhile and are
applied as soon as the snapshot is taken. The state machine's ``snapshot``
must therefore only read, and the application must not mutate the state
machine outside ``apply``/``restore``.

A proposal resolves with what the state machine returned for its entry, or
fails with :class:`ProposalLost` if a new leader overwrote that index, or
:class:`~colonymesh.consensus.NotLeader` (with the leader hint) straight away.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from colonymesh.consensus import (
    Message,
    NotLeader,
    ProposalResult,
    RaftConfig,
    RaftNode,
    RaftProtocolError,
    Ready,
    Status,
)
from colonymesh.consensus.confchange import ConfChange
from colonymesh.consensus.storage import LogStore
from colonymesh.consensus.types import (
    ConfState,
    Entry,
    EntryKind,
    LogIndex,
    NodeId,
    Snapshot,
    Term,
)

log = logging.getLogger("colonymesh.node.raft")


class StateMachine(Protocol):
    def apply(self, entry: Entry) -> Any:
        """Apply one committed NORMAL entry; the result goes to its proposer."""

    def snapshot(self) -> bytes:
        """The whole state as bytes. Runs in a worker thread: it must only read
        (the driver applies nothing meanwhile)."""

    def restore(self, data: bytes) -> None: ...


class RaftNetwork(Protocol):
    def send(self, message: Message) -> None:
        """Queue ``message`` for ``message.dst``; never block, may drop."""


class ProposalLost(Exception):
    """The proposed entry was overwritten by a new leader; propose again."""


@dataclass(frozen=True, slots=True)
class DriverConfig:
    inbox_max: int = 8192
    # Compact the log once this many entries were applied since the last
    # snapshot; 0 keeps the whole log (for state machines without snapshots).
    snapshot_every_entries: int = 0
    # Measurement switches (bench/raft.py compares them); the defaults are the fast,
    # safe choice. False: a leader persists before it sends, as followers do.
    send_while_persisting: bool = True
    # True: fsync even a Ready whose only change is the commit index.
    sync_commit_only: bool = False


@dataclass(slots=True)
class DriverStatistics:
    steps: int = 0
    dropped_inbound: int = 0
    refused_messages: int = 0
    readies: int = 0
    syncs: int = 0
    persist_seconds: float = 0.0  # wall time of the synced persists (thread hop included)
    entries_persisted: int = 0
    entries_applied: int = 0
    snapshots: int = 0
    snapshot_seconds: float = 0.0


class _Waiter:
    __slots__ = ("done", "error", "result", "term")

    def __init__(self, term: Term) -> None:
        self.term = term
        self.done = trio.Event()
        self.result: Any = None
        self.error: Exception | None = None


class RaftDriver:
    """Runs one Raft node; see the module docs."""

    def __init__(
        self,
        node_id: NodeId,
        store: LogStore,
        machine: StateMachine,
        network: RaftNetwork,
        *,
        founding_voters: Sequence[NodeId] = (),
        raft_config: RaftConfig | None = None,
        config: DriverConfig | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.node_id = node_id
        self.store = store
        self.machine = machine
        self.network = network
        self.config = config or DriverConfig()
        self.stats = DriverStatistics()
        recovered = store.initial_state()
        if recovered.snapshot is not None:
            machine.restore(recovered.snapshot.data)
        self.node = RaftNode(
            node_id,
            ConfState(voters=tuple(sorted(founding_voters))),
            raft_config or RaftConfig(),
            rng or random.Random(),
            trio.current_time(),
            hard_state=recovered.hard_state,
            entries=recovered.entries,
            snapshot=recovered.snapshot,
        )
        self._snapshot_index = recovered.snapshot.meta.index if recovered.snapshot else LogIndex(0)
        self._applied = self._snapshot_index
        # Restores and committed entries waiting while a snapshot is serialised.
        self._applies: deque[Snapshot | tuple[Entry, ...]] = deque()
        self._snapshot_task: LogIndex | None = None  # the index being snapshotted
        self._nursery: trio.Nursery | None = None
        self._inbox: deque[Message] = deque()
        self._wakeup = trio.Event()
        self._waiters: dict[int, _Waiter] = {}
        self._stopped = False

    # --- inputs ------------------------------------------------------------

    def deliver(self, message: Message) -> None:
        """Hand a message from the network to the core (never blocks)."""
        if len(self._inbox) >= self.config.inbox_max:
            self.stats.dropped_inbound += 1  # Raft retransmits; a full inbox sheds load
            return
        self._inbox.append(message)
        self._wakeup.set()

    async def propose(self, data: bytes) -> Any:
        """Replicate ``data``; return the state machine's result for it once applied."""
        if self._stopped:
            raise NotLeader(self.node.leader)
        result = self.node.propose(data)
        waiter = _Waiter(result.term)
        self._waiters[result.index] = waiter
        self._wakeup.set()
        try:
            await waiter.done.wait()
        finally:
            self._waiters.pop(result.index, None)
        if waiter.error is not None:
            raise waiter.error
        return waiter.result

    def propose_conf_change(self, change: ConfChange) -> ProposalResult:
        """Propose one membership change (Raft §6, one server at a time); returns at once
        with where it sits in the log. Raises the core's error if refused (not leader,
        a change already pending)."""
        result = self.node.propose_conf_change(change)
        self._wakeup.set()
        return result

    def status(self) -> Status:
        return self.node.status()

    # --- the loop --------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await self._loop()
        finally:
            self._nursery = None
            self._stopped = True
            for waiter in self._waiters.values():
                waiter.error = ProposalLost("the Raft driver stopped")
                waiter.done.set()

    async def _loop(self) -> None:
        while True:
            with trio.move_on_at(self.node.next_deadline()):
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            now = trio.current_time()
            self._step_inbox(now)
            if now >= self.node.next_deadline():
                self.node.handle_timer(now)
            while True:
                ready = self.node.ready()
                if ready is None:
                    break
                await self._handle(ready)
                self._step_inbox(trio.current_time())

    def _step_inbox(self, now: float) -> None:
        while self._inbox:
            message = self._inbox.popleft()
            try:
                self.node.step(message, now)
                self.stats.steps += 1
            except RaftProtocolError as error:
                self.stats.refused_messages += 1
                log.warning(
                    "raft %s: refused a message from %s: %s", self.node_id, message.src, error
                )

    async def _handle(self, ready: Ready) -> None:
        self.stats.readies += 1
        send = self.network.send
        early = ready.send_while_persisting and self.config.send_while_persisting
        if early:
            for message in ready.messages:  # a leader: followers fsync while we do (§10.2.1)
                send(message)
        if ready.must_sync or (self.config.sync_commit_only and ready.hard_state is not None):
            started = trio.current_time()
            await trio.to_thread.run_sync(self._persist, ready)
            self.stats.persist_seconds += trio.current_time() - started
            self.stats.syncs += 1
            self.stats.entries_persisted += len(ready.entries)
        elif ready.hard_state is not None:
            self.store.save_hard_state(ready.hard_state)  # only the commit index: no fsync
        if not early:
            for message in ready.messages:
                send(message)
        if ready.snapshot is not None and ready.restore_snapshot:
            self._applies.append(ready.snapshot)
        if ready.committed_entries:
            self._applies.append(ready.committed_entries)
        if self._snapshot_task is None:
            self._apply_pending()
        self.node.advance(ready)
        self._maybe_compact()

    def _persist(self, ready: Ready) -> None:
        store = self.store
        if ready.snapshot is not None:
            store.save_snapshot(ready.snapshot)
            store.compact(ready.snapshot.meta.index)
        if ready.entries:
            store.append(ready.entries)
        if ready.hard_state is not None:
            store.save_hard_state(ready.hard_state)
        store.sync()

    def _apply_pending(self) -> None:
        """Apply what is queued, in log order (restores and committed entries)."""
        applies = self._applies
        while applies:
            item = applies.popleft()
            if isinstance(item, Snapshot):
                self.machine.restore(item.data)
                self._snapshot_index = item.meta.index
                self._applied = item.meta.index
            else:
                for entry in item:
                    self._apply(entry)

    def _apply(self, entry: Entry) -> None:
        self._applied = entry.index
        result: Any = None
        if entry.kind is EntryKind.NORMAL:
            result = self.machine.apply(entry)
        self.stats.entries_applied += 1
        waiter = self._waiters.get(entry.index)
        if waiter is None:
            return
        if entry.term == waiter.term:
            waiter.result = result
        else:
            waiter.error = ProposalLost(f"index {entry.index} was taken by term {entry.term}")
        waiter.done.set()

    def _maybe_compact(self) -> None:
        """Start a snapshot once enough entries were applied since the last one.

        The state machine serialises in a worker thread, so the loop keeps
        stepping messages, heart-beating and persisting meanwhile (a large
        ledger takes most of a second). Its state stays exactly that of index
        ``applied`` because nothing else mutates it: committed entries (and
        restores) queue up in ``_applies`` until the snapshot is taken, and
        are applied in order right after.
        """
        every = self.config.snapshot_every_entries
        if not every or self._snapshot_task is not None or self._nursery is None:
            return
        applied = self._applied
        if applied - self._snapshot_index < every:
            return
        self._snapshot_task = applied
        self._nursery.start_soon(self._take_snapshot, applied)

    async def _take_snapshot(self, index: LogIndex) -> None:
        try:
            started = trio.current_time()
            data = await trio.to_thread.run_sync(self.machine.snapshot)
            self.stats.snapshots += 1
            self.stats.snapshot_seconds += trio.current_time() - started
            if index > self.node.log.snapshot_index:  # a leader's snapshot may have overtaken it
                self.node.compact(index, data)
            self._snapshot_index = max(self._snapshot_index, index)
        finally:
            self._snapshot_task = None
            self._apply_pending()
            self._wakeup.set()
