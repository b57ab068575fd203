"""Linearizable reads without writing to the log: ReadIndex (dissertation §6.4).

The leader records its commit index when a read arrives, then proves it is
still the leader by a round of heartbeats: once a quorum of voters has echoed
a heartbeat sent *after* the read arrived, no other leader can have committed
anything newer, and the read may be served once the state machine has applied
up to the recorded index.

Reads are batched into rounds: every read that arrives before the next
broadcast shares one round number (``seq``); heartbeats carry the latest round
and followers echo it. The leader only starts serving reads once it has
committed an entry of its own term (its empty entry), otherwise its commit
index could lag the previous leader's.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from colonymesh.consensus.types import LogIndex, NodeId


@dataclass(frozen=True, slots=True)
class PendingRead:
    seq: int
    index: LogIndex
    context: bytes
    requester: NodeId | None  # None: a local read; else a follower to answer


class ReadOnly:
    __slots__ = ("_pending", "_round_needed", "last_sent_seq")

    def __init__(self) -> None:
        self._pending: deque[PendingRead] = deque()
        self.last_sent_seq = 0  # the newest round a heartbeat carried
        self._round_needed = False

    def add(self, index: LogIndex, context: bytes, requester: NodeId | None) -> None:
        """Queue a read for the next round (the one after ``last_sent_seq``)."""
        self._pending.append(PendingRead(self.last_sent_seq + 1, index, context, requester))
        self._round_needed = True

    def round_needed(self) -> bool:
        return self._round_needed

    def start_round(self) -> int:
        """A heartbeat broadcast is going out now; return the round number it carries."""
        if self._round_needed:
            self.last_sent_seq += 1
            self._round_needed = False
        return self.last_sent_seq

    def release(self, acked_seq: int) -> list[PendingRead]:
        """Reads whose round a quorum has acknowledged, oldest first."""
        out: list[PendingRead] = []
        pending = self._pending
        while pending and pending[0].seq <= acked_seq:
            out.append(pending.popleft())
        return out

    def __len__(self) -> int:
        return len(self._pending)

    def clear(self) -> None:
        self._pending.clear()
        self._round_needed = False
