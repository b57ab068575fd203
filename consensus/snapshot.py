"""Follower side of chunked snapshot transfer (Raft §7): :class:`SnapshotReceiver`.

The leader sends a snapshot as ``InstallSnapshot`` chunks, one at a time; the
follower appends a chunk only if it continues exactly where the buffer ends
and otherwise answers with the offset it wants, so loss, duplication and
reordering cost a retransmission, never a corrupt snapshot. A chunk at offset
0 (re)starts the transfer; a chunk of another snapshot replaces it. The
buffer is capped at ``snapshot_bytes_max``.
"""

from __future__ import annotations

from colonymesh.consensus.errors import RaftProtocolError
from colonymesh.consensus.messages import InstallSnapshot
from colonymesh.consensus.types import Snapshot, SnapshotMeta


class SnapshotReceiver:
    __slots__ = ("_buf", "_bytes_max", "_meta")

    def __init__(self, bytes_max: int) -> None:
        self._meta: SnapshotMeta | None = None
        self._buf = bytearray()
        self._bytes_max = bytes_max

    def reset(self) -> None:
        self._meta = None
        self._buf = bytearray()

    def receive(self, msg: InstallSnapshot) -> tuple[int, Snapshot | None]:
        """Take one chunk; return (the next offset wanted, the whole snapshot if done)."""
        if msg.offset == 0:
            self._meta, self._buf = msg.meta, bytearray()
        if self._meta != msg.meta:
            return 0, None
        if msg.offset != len(self._buf):
            return len(self._buf), None
        if len(self._buf) + len(msg.data) > self._bytes_max:
            self.reset()
            raise RaftProtocolError(f"snapshot from {msg.src} exceeds snapshot_bytes_max")
        self._buf += msg.data
        if not msg.done:
            return len(self._buf), None
        snap = Snapshot(msg.meta, bytes(self._buf))
        self.reset()
        return len(snap.data), snap
