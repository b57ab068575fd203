"""What a leader knows about replicating to one follower (etcd's tracker, simplified).

A :class:`Progress` is in one of three states:

* ``PROBE``: we do not know where the follower's log matches ours. Send one
  append at ``next`` and wait for its answer (or the next heartbeat) before
  sending another; a rejection moves ``next`` back using the follower's
  conflict hint (fast back-off).
* ``REPLICATE``: the follower matched; stream appends optimistically
  (pipelining), advancing ``next`` as we send, bounded by :class:`Inflights`
  (at most ``max_inflight_msgs`` messages and ``max_inflight_bytes`` bytes
  unacknowledged).
* ``SNAPSHOT``: the entries it needs are compacted away; a snapshot is being
  sent in chunks, one at a time, and appends pause until it is installed.

Invariants: ``match < next``; in ``REPLICATE`` the inflight ranges are
increasing and above ``match``.
"""

from __future__ import annotations

import enum
from collections import deque


class ProgressState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


class Inflights:
    """Unacknowledged appends to one follower, as ``(last_index, bytes)`` in send order."""

    __slots__ = ("_bytes", "_queue", "max_bytes", "max_msgs")

    def __init__(self, max_msgs: int, max_bytes: int) -> None:
        self.max_msgs = max_msgs
        self.max_bytes = max_bytes
        self._queue: deque[tuple[int, int]] = deque()
        self._bytes = 0

    def add(self, last_index: int, size: int) -> None:
        self._queue.append((last_index, size))
        self._bytes += size

    def free_le(self, index: int) -> None:
        """Forget every append whose last entry is at or below ``index`` (acknowledged)."""
        queue = self._queue
        while queue and queue[0][0] <= index:
            self._bytes -= queue.popleft()[1]

    def free_first(self) -> None:
        if self._queue:
            self._bytes -= self._queue.popleft()[1]

    def full(self) -> bool:
        return len(self._queue) >= self.max_msgs or self._bytes >= self.max_bytes

    def reset(self) -> None:
        self._queue.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._queue)


class Progress:
    __slots__ = (
        "inflights",
        "match",
        "next",
        "probe_sent",
        "read_seq",
        "recent_active",
        "snapshot_index",
        "snapshot_offset",
        "snapshot_sent_at",
        "state",
    )

    def __init__(self, next_index: int, max_msgs: int, max_bytes: int) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.recent_active = False
        self.inflights = Inflights(max_msgs, max_bytes)
        self.snapshot_index = 0
        self.snapshot_offset = 0
        self.snapshot_sent_at = 0.0
        self.read_seq = 0  # highest ReadIndex round this follower acknowledged

    def become_probe(self) -> None:
        if self.state is ProgressState.SNAPSHOT:
            self.next = max(self.match + 1, self.snapshot_index + 1)
        else:
            self.next = self.match + 1
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.inflights.reset()
        self.snapshot_index = 0

    def become_replicate(self) -> None:
        self.state = ProgressState.REPLICATE
        self.next = self.match + 1
        self.probe_sent = False
        self.inflights.reset()

    def become_snapshot(self, snapshot_index: int, now: float) -> None:
        self.state = ProgressState.SNAPSHOT
        self.snapshot_index = snapshot_index
        self.snapshot_offset = 0
        self.snapshot_sent_at = now
        self.inflights.reset()

    def maybe_update(self, index: int) -> bool:
        """The follower acknowledged it matches up to ``index``; True if that is news."""
        updated = index > self.match
        if updated:
            self.match = index
            self.probe_sent = False
        if self.next < index + 1:
            self.next = index + 1
        return updated

    def maybe_decrease_to(self, rejected: int, match_hint: int) -> bool:
        """Handle a rejection of an append whose ``prev_log_index`` was ``rejected``.

        Returns False for a stale rejection (ignored). ``match_hint`` is the
        largest index the leader computed from the follower's conflict hint.
        """
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if rejected != self.next - 1:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.probe_sent = False
        return True

    def is_paused(self) -> bool:
        match self.state:
            case ProgressState.PROBE:
                return self.probe_sent
            case ProgressState.REPLICATE:
                return self.inflights.full()
            case ProgressState.SNAPSHOT:
                return True

    def __repr__(self) -> str:
        return (
            f"Progress(match={self.match}, next={self.next}, state={self.state.value}, "
            f"inflight={len(self.inflights)})"
        )


def quorum_index(values: list[int]) -> int:
    """The largest value that a majority of ``values`` reach (0 if empty)."""
    if not values:
        return 0
    ordered = sorted(values, reverse=True)
    return ordered[len(ordered) // 2]
