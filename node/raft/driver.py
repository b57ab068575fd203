"""The trio driver of a Raft core: real time, a real disk, a network of peers.

Owns one :class:`~colonymesh.consensus.RaftNode`, its
:class:`~colonymesh.consensus.storage.LogStore` and the state machine it
replicates, in one task. The loop is the aioquic/etcd pattern: sleep until
the core's ``next_deadline()`` or until something arrives; step every queued
message; fire the timer when due; then drain ``ready()`` honouring the
contract in :mod:`colonymesh.consensus.raft`:

1. persist (snapshot, entries, hard state) and ``sync()`` — in a worker thread,
   so the event loop keeps accepting messages and proposals meanwhile; what
   arrives during one fsync is persisted by the next, which is group commit
   with no timer;
2. send the messages (the network queues them and may drop them: Raft
   retransmits);
3. apply committed entries and answer the proposals waiting on them;
4. ``advance``.

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
    RaftConfig,
    RaftNode,
    RaftProtocolError,
    Ready,
    Status,
)
from colonymesh.consensus.storage import LogStore
from colonymesh.consensus.types import ConfState, Entry, EntryKind, LogIndex, NodeId, Term

log = logging.getLogger("colonymesh.node.raft")


class StateMachine(Protocol):
    def apply(self, entry: Entry) -> Any:
        """Apply one committed NORMAL entry; the result goes to its proposer."""

    def snapshot(self) -> bytes: ...

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


@dataclass(slots=True)
class DriverStatistics:
    steps: int = 0
    dropped_inbound: int = 0
    refused_messages: int = 0
    readies: int = 0
    syncs: int = 0
    entries_persisted: int = 0
    entries_applied: int = 0


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

    def status(self) -> Status:
        return self.node.status()

    # --- the loop --------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
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
        finally:
            self._stopped = True
            for waiter in self._waiters.values():
                waiter.error = ProposalLost("the Raft driver stopped")
                waiter.done.set()

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
        if ready.must_sync:
            await trio.to_thread.run_sync(self._persist, ready)
            self.stats.syncs += 1
            self.stats.entries_persisted += len(ready.entries)
        for message in ready.messages:
            self.network.send(message)
        if ready.snapshot is not None and ready.restore_snapshot:
            self.machine.restore(ready.snapshot.data)
            self._snapshot_index = ready.snapshot.meta.index
        for entry in ready.committed_entries:
            self._apply(entry)
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

    def _apply(self, entry: Entry) -> None:
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
        every = self.config.snapshot_every_entries
        applied = self.node.status().applied
        if every and applied - self._snapshot_index >= every:
            self.node.compact(applied, self.machine.snapshot())
            self._snapshot_index = applied
            self._wakeup.set()
