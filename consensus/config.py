"""Tuning knobs of a Raft core; times in seconds, sizes in bytes (units last in names)."""

from __future__ import annotations

from dataclasses import dataclass

from colonymesh.consensus.errors import RaftUsageError


@dataclass(frozen=True, slots=True)
class RaftConfig:
    """Configuration of one :class:`~colonymesh.consensus.raft.RaftNode`.

    A follower that hears nothing from a leader for a randomised timeout in
    ``[election_timeout_s, 2 * election_timeout_s)`` campaigns. A leader sends
    heartbeats every ``heartbeat_interval_s`` and, with ``check_quorum``,
    steps down if it has not heard from a quorum within ``election_timeout_s``.
    """

    election_timeout_s: float = 1.0
    heartbeat_interval_s: float = 0.1
    pre_vote: bool = True
    check_quorum: bool = True
    max_inflight_msgs: int = 256  # unacknowledged appends per follower
    max_inflight_bytes: int = 8 * 1024 * 1024  # unacknowledged entry bytes per follower
    max_append_entries: int = 1024  # entries in one AppendEntries
    max_append_bytes: int = 1024 * 1024  # entry bytes in one AppendEntries (>= 1 entry)
    max_apply_entries: int = 4096  # committed entries in one Ready
    max_uncommitted_entries: int = 100_000  # a leader refuses proposals beyond this backlog
    snapshot_chunk_bytes: int = 1024 * 1024
    snapshot_bytes_max: int = 1 << 32  # a follower refuses larger snapshots
    snapshot_retransmit_s: float = 0.5  # resend an unacknowledged snapshot chunk
    max_pending_reads: int = 65536

    def __post_init__(self) -> None:
        if self.election_timeout_s <= 0 or self.heartbeat_interval_s <= 0:
            raise RaftUsageError("timeouts must be positive")
        if self.heartbeat_interval_s >= self.election_timeout_s:
            raise RaftUsageError("heartbeat_interval_s must be below election_timeout_s")
        for name in (
            "max_inflight_msgs",
            "max_inflight_bytes",
            "max_append_entries",
            "max_append_bytes",
            "max_apply_entries",
            "max_uncommitted_entries",
            "snapshot_chunk_bytes",
            "max_pending_reads",
        ):
            if getattr(self, name) < 1:
                raise RaftUsageError(f"{name} must be at least 1")
