"""An in-memory harness that runs several Raft cores over a fake network.

Not a protocol core and not used in production: tests (unit, scenario and
hypothesis state-machine tests) drive a :class:`Cluster`, which plays the
driver for every node exactly as the contract in :mod:`.raft` says (persist
to a :class:`MemoryStore`, then queue messages, then apply to a
:class:`HashMachine`, then ``advance``), and checks Raft's safety properties
after every step with :meth:`Cluster.check_safety`.

The network is an ordered list of messages in flight; tests deliver, drop,
duplicate or reorder them explicitly, and partitions drop messages at send
time. Time is one virtual clock, advanced explicitly. Crashed nodes lose
everything but their :class:`MemoryStore`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from colonymesh.consensus.config import RaftConfig
from colonymesh.consensus.messages import (
    AppendEntries,
    AppendResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    ReadIndexRequest,
    ReadIndexResponse,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
)
from colonymesh.consensus.raft import RaftNode
from colonymesh.consensus.ready import ReadState, Ready
from colonymesh.consensus.status import Role
from colonymesh.consensus.types import (
    ConfState,
    Entry,
    EntryKind,
    HardState,
    LogIndex,
    NodeId,
    Snapshot,
    Term,
)

if TYPE_CHECKING:
    import random


class SafetyViolation(Exception):
    """A Raft safety property failed in a test cluster."""


@dataclass
class MemoryStore:
    """What a driver made durable for one node, following the Ready contract."""

    hard_state: HardState = field(default_factory=HardState)
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)

    def last_index(self) -> int:
        if self.entries:
            return self.entries[-1].index
        return self.snapshot.meta.index if self.snapshot is not None else 0

    def save(self, rd: Ready) -> None:
        if rd.snapshot is not None:
            meta = rd.snapshot.meta
            held = [e for e in self.entries if e.index == meta.index and e.term == meta.term]
            old = self.snapshot.meta if self.snapshot is not None else None
            if held or (old is not None and (old.index, old.term) == (meta.index, meta.term)):
                self.entries = [e for e in self.entries if e.index > meta.index]
            else:
                self.entries = []  # the log lacks the snapshot's last entry: all of it goes
            self.snapshot = rd.snapshot
        if rd.entries:
            first = rd.entries[0].index
            self.entries = [e for e in self.entries if e.index < first]
            if self.entries and self.entries[-1].index + 1 != first:
                raise SafetyViolation(f"gap in stored log before {first}")
            self.entries.extend(rd.entries)
        if rd.hard_state is not None:
            self.hard_state = rd.hard_state


class HashMachine:
    """A state machine whose state is a hash chain over every applied entry, so
    two replicas agree on a state iff they applied the same entries."""

    def __init__(self) -> None:
        self.index = 0
        self.digest = b""
        self.commands: list[bytes] = []  # NORMAL payloads applied since start or restore

    def apply(self, entry: Entry) -> None:
        if entry.index != self.index + 1:
            raise SafetyViolation(f"applied {entry.index} after {self.index}")
        head = f"{entry.index}:{entry.term}:{int(entry.kind)}:".encode()
        self.digest = hashlib.sha256(self.digest + head + entry.data).digest()
        self.index = entry.index
        if entry.kind is EntryKind.NORMAL:
            self.commands.append(entry.data)

    def snapshot(self) -> bytes:
        return f"{self.index}:{self.digest.hex()}".encode()

    def restore(self, data: bytes) -> None:
        index, digest = data.decode().split(":")
        if int(index) < self.index:
            raise SafetyViolation(f"snapshot {index} would move applied back from {self.index}")
        self.index = int(index)
        self.digest = bytes.fromhex(digest)
        self.commands = []


def describe(msg: Message) -> str:
    """A one-line, stable rendering of a message for scenario traces."""
    head = f"{msg.src}->{msg.dst} {type(msg).__name__} term={msg.term}"
    match msg:
        case VoteRequest():
            kind = " pre" if msg.pre_vote else ""
            kind += " transfer" if msg.transfer else ""
            return f"{head} last={msg.last_log_term}/{msg.last_log_index}{kind}"
        case VoteResponse():
            return f"{head} granted={msg.granted}{' pre' if msg.pre_vote else ''}"
        case AppendEntries():
            ents = " ".join(f"{e.term}/{e.index}:{_show(e)}" for e in msg.entries)
            return (
                f"{head} prev={msg.prev_log_term}/{msg.prev_log_index} "
                f"commit={msg.leader_commit} [{ents}]"
            )
        case AppendResponse():
            if msg.success:
                return f"{head} ok index={msg.index}"
            return f"{head} reject index={msg.index} hint={msg.hint_term}/{msg.hint_index}"
        case Heartbeat():
            return f"{head} commit={msg.commit} seq={msg.read_seq}"
        case HeartbeatResponse():
            return f"{head} seq={msg.read_seq}"
        case InstallSnapshot():
            return (
                f"{head} snap={msg.meta.term}/{msg.meta.index} off={msg.offset} "
                f"len={len(msg.data)} done={msg.done}"
            )
        case InstallSnapshotResponse():
            return f"{head} snap={msg.snapshot_index} next={msg.next_offset} done={msg.done}"
        case TimeoutNow():
            return head
        case ReadIndexRequest():
            return f"{head} ctx={msg.context!r}"
        case ReadIndexResponse():
            return f"{head} ctx={msg.context!r} index={msg.index} ok={msg.ok}"


def _show(entry: Entry) -> str:
    if entry.kind is EntryKind.EMPTY:
        return "EMPTY"
    if entry.kind is EntryKind.CONF_CHANGE:
        return (
            "CONF("
            + entry.data[1:].decode()
            + ("+v" if entry.data[0] == 0 else "")
            + ("+l" if entry.data[0] == 1 else "")
            + ("-" if entry.data[0] == 2 else "")
            + ")"
        )
    return entry.data.decode("utf-8", "replace")


class Cluster:
    """Several RaftNodes, their disks and state machines, and a fake network."""

    def __init__(
        self,
        voters: Sequence[str],
        rng_factory: Callable[[NodeId], random.Random],
        *,
        learners: Sequence[str] = (),
        config: RaftConfig | None = None,
        extra: Sequence[str] = (),
    ) -> None:
        """``extra`` names nodes that exist (can be started) but are in no
        configuration yet, for membership tests."""
        self.config = config or RaftConfig()
        self.rng_factory = rng_factory
        self.now = 0.0
        self.bootstrap = ConfState(
            voters=tuple(NodeId(v) for v in voters), learners=tuple(NodeId(n) for n in learners)
        )
        self.ids: list[NodeId] = [NodeId(i) for i in [*voters, *learners, *extra]]
        self.joiners = {NodeId(i) for i in extra}
        self.stores: dict[NodeId, MemoryStore] = {i: MemoryStore() for i in self.ids}
        self.machines: dict[NodeId, HashMachine] = {i: HashMachine() for i in self.ids}
        self.nodes: dict[NodeId, RaftNode | None] = {}
        self.network: list[Message] = []
        self.cuts: set[tuple[NodeId, NodeId]] = set()
        self.read_states: dict[NodeId, list[ReadState]] = {i: [] for i in self.ids}
        self.in_flight: dict[NodeId, Ready] = {}  # begun, not yet persisted
        self.trace: list[str] | None = None
        # Safety bookkeeping.
        self.leaders: dict[Term, NodeId] = {}
        self.committed: dict[LogIndex, tuple[Term, Term]] = {}
        self.digests: dict[int, bytes] = {}
        self._recorded: dict[NodeId, int] = {}
        for i in self.ids:
            self.nodes[i] = self._make(i) if i not in extra else None

    # -- node lifecycle ---------------------------------------------------------

    def _make(self, i: NodeId) -> RaftNode:
        store = self.stores[i]
        machine = self.machines[i]
        if store.snapshot is not None:
            machine.restore(store.snapshot.data)
        return RaftNode(
            i,
            ConfState() if i in self.joiners else self.bootstrap,
            self.config,
            self.rng_factory(i),
            self.now,
            hard_state=store.hard_state,
            entries=list(store.entries),
            snapshot=store.snapshot,
            applied=LogIndex(machine.index),
        )

    def node(self, i: str) -> RaftNode:
        node = self.nodes[NodeId(i)]
        if node is None:
            raise KeyError(f"{i} is down")
        return node

    def live(self) -> list[tuple[NodeId, RaftNode]]:
        return [(i, n) for i, n in self.nodes.items() if n is not None]

    def crash(self, i: str) -> None:
        """Lose everything but the disk: the node and its in-memory state machine."""
        self.nodes[NodeId(i)] = None
        self.in_flight.pop(NodeId(i), None)  # a persist in flight is lost
        self.machines[NodeId(i)] = HashMachine()
        self.read_states[NodeId(i)] = []

    def restart(self, i: str) -> None:
        if self.nodes[NodeId(i)] is None:
            self.machines[NodeId(i)] = HashMachine()
            self.nodes[NodeId(i)] = self._make(NodeId(i))

    # -- driving ----------------------------------------------------------------

    def process(self, i: NodeId) -> bool:
        """Handle one Ready of node ``i`` exactly as a driver must. True if there was one.

        A Ready begun with :meth:`begin` (sent, persist still in flight) is
        finished first."""
        node = self.nodes[i]
        if node is None:
            return False
        rd = self.in_flight.pop(i, None)
        if rd is None:
            rd = node.ready()
            if rd is None:
                return False
            if rd.send_while_persisting:
                self._send(rd)
        self.stores[i].save(rd)
        if not rd.send_while_persisting:
            self._send(rd)
        machine = self.machines[i]
        if rd.restore_snapshot and rd.snapshot is not None:
            machine.restore(rd.snapshot.data)
            self._check_digest(i, machine)
            if self.trace is not None:
                self.trace.append(f"{i} restored snapshot {rd.snapshot.meta.index}")
        for entry in rd.committed_entries:
            machine.apply(entry)
            self._check_digest(i, machine)
        if rd.committed_entries and self.trace is not None:
            shown = " ".join(f"{e.term}/{e.index}:{_show(e)}" for e in rd.committed_entries)
            self.trace.append(f"{i} applied {shown}")
        self.read_states[i].extend(rd.read_states)
        for rs in rd.read_states:
            if self.trace is not None:
                self.trace.append(f"{i} read ctx={rs.context!r} index={rs.index}")
        node.advance(rd)
        self.check_safety()
        return True

    def begin(self, i: NodeId) -> bool:
        """Take node ``i``'s Ready and send what it may send before persisting; the
        persist stays in flight until :meth:`process` finishes it or :meth:`crash`
        loses it (the §10.2.1 window). True if a Ready was begun."""
        node = self.nodes[i]
        if node is None or i in self.in_flight:
            return False
        rd = node.ready()
        if rd is None:
            return False
        self.in_flight[i] = rd
        if rd.send_while_persisting:
            self._send(rd)
        return True

    def _send(self, rd: Ready) -> None:
        for msg in rd.messages:
            if (msg.src, msg.dst) not in self.cuts:
                self.network.append(msg)
            if self.trace is not None:
                self.trace.append(describe(msg))

    def process_all(self) -> bool:
        progressed = False
        for i in self.ids:
            while self.process(i):
                progressed = True
        return progressed

    def deliver_one(self, position: int = 0) -> Message | None:
        """Deliver the message at ``position`` in the network queue."""
        if not self.network:
            return None
        msg = self.network.pop(position)
        node = self.nodes.get(msg.dst)
        if node is not None:
            node.step(msg, self.now)
            self.check_safety()
        return msg

    def deliver_all(self, keep: Callable[[Message], bool] | None = None) -> int:
        """Deliver every message in flight (dropping those ``keep`` rejects)."""
        msgs, self.network = self.network, []
        count = 0
        for msg in msgs:
            if keep is not None and not keep(msg):
                continue
            node = self.nodes.get(msg.dst)
            if node is not None:
                node.step(msg, self.now)
                count += 1
        self.check_safety()
        return count

    def stabilize(self, max_rounds: int = 10_000) -> None:
        """Process and deliver until nothing moves (no time passes)."""
        for _ in range(max_rounds):
            progressed = self.process_all()
            if self.network:
                self.deliver_all()
                progressed = True
            if not progressed:
                return
        raise SafetyViolation("cluster did not stabilize")

    def elapse(self, seconds: float) -> None:
        """Advance the clock and fire every due timer, in node order."""
        self.now += seconds
        for _, node in self.live():
            if node.next_deadline() <= self.now:
                node.handle_timer(self.now)
        self.check_safety()

    def run_for(self, seconds: float, step_s: float | None = None) -> None:
        """Let time pass in heartbeat-sized steps with a perfect network in between."""
        step = step_s or self.config.heartbeat_interval_s
        end = self.now + seconds
        while self.now + step <= end + 1e-9:
            self.elapse(step)
            self.stabilize()

    def partition(self, *groups: Iterable[str]) -> None:
        """Cut every link between different groups (both directions)."""
        sets = [[NodeId(i) for i in g] for g in groups]
        self.cuts = set()
        for a_group in sets:
            for b_group in sets:
                if a_group is b_group:
                    continue
                for a in a_group:
                    for b in b_group:
                        self.cuts.add((a, b))

    def heal(self) -> None:
        self.cuts = set()

    def leader(self) -> NodeId | None:
        leaders = [(n.term, i) for i, n in self.live() if n.role is Role.LEADER]
        return max(leaders)[1] if leaders else None

    # -- safety -----------------------------------------------------------------

    def _check_digest(self, i: NodeId, machine: HashMachine) -> None:
        """State-machine safety (§5.4.3): every replica's state after applying index
        k is the same."""
        seen = self.digests.setdefault(machine.index, machine.digest)
        if seen != machine.digest:
            raise SafetyViolation(f"{i} applied a different entry history at {machine.index}")

    def check_safety(self) -> None:
        live = self.live()
        for i, node in live:
            # Election safety (§5.2): at most one leader per term.
            if node.role is Role.LEADER:
                other = self.leaders.setdefault(node.term, i)
                if other != i:
                    raise SafetyViolation(f"two leaders in term {node.term}: {other} and {i}")
            # Record what is committed, to check leader completeness. Every node's
            # commit index counts, also ahead of its own disk: a leader counts only
            # durable copies (its own once the driver acknowledged it), so whatever
            # any node believes committed must survive every crash.
            log = node.log
            top = log.committed
            lo = max(log.first_index(), self._recorded.get(i, 0) + 1)
            for entry in log.slice(lo, top + 1) if top >= lo else []:
                # The entry was committed in some term <= the observer's current term.
                seen = self.committed.setdefault(entry.index, (entry.term, node.term))
                if seen[0] != entry.term:
                    raise SafetyViolation(f"{i} committed a different entry at {entry.index}")
            self._recorded[i] = max(self._recorded.get(i, 0), top)
        for i, node in live:
            # Leader completeness (§5.4): a leader holds every entry committed in an
            # earlier term (a stale leader of an older term need not).
            if node.role is Role.LEADER:
                log = node.log
                for index, (term, observed_in) in self.committed.items():
                    if (
                        node.term > observed_in
                        and index > log.snapshot_index
                        and log.term(index) != term
                    ):
                        raise SafetyViolation(f"leader {i} lacks committed entry {index}")
        # Log matching (§5.3): same index and term => identical prefixes.
        for a in range(len(live)):
            for b in range(a + 1, len(live)):
                _check_log_matching(live[a], live[b])


def _check_log_matching(a: tuple[NodeId, RaftNode], b: tuple[NodeId, RaftNode]) -> None:
    """Log matching (§5.3): if two logs hold an entry with the same index and term,
    they are identical up to it. Finds the highest such index, then compares the
    overlapping prefixes (a C-speed list comparison: replicas share Entry objects)."""
    la, lb = a[1].log, b[1].log
    lo = max(la.first_index(), lb.first_index())
    hi = min(la.last_index(), lb.last_index())
    index: int = hi
    while index >= lo and la.term(index) != lb.term(index):
        index -= 1
    if index >= lo and la.slice(lo, index + 1) != lb.slice(lo, index + 1):
        raise SafetyViolation(f"logs of {a[0]} and {b[0]} differ below their match at {index}")
