"""The batch of work a Raft core hands its driver: :class:`Ready`.

See the contract in :mod:`colonymesh.consensus.raft`: persist
(``snapshot``, then ``entries``, then ``hard_state``), then send
``messages``, then apply (restore ``snapshot`` if ``restore_snapshot``, then
``committed_entries``, then serve ``read_states``), then ``advance(ready)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from colonymesh.consensus.messages import Message
from colonymesh.consensus.types import Entry, HardState, LogIndex, Snapshot


@dataclass(frozen=True, slots=True)
class ReadState:
    """A linearizable read may be served once the applied index reaches ``index``."""

    index: LogIndex
    context: bytes


@dataclass(frozen=True, slots=True)
class Ready:
    """One batch of effects; the driver honours it in order, then calls ``advance``.

    * ``snapshot``: persist atomically and drop every stored entry with an
      index at or below ``snapshot.meta.index``. If ``restore_snapshot`` it
      came from the leader and the state machine must be reset from its data;
      otherwise it is the application's own compaction (``compact``).
    * ``entries``: delete every stored entry with index ``>= entries[0].index``
      (a conflicting suffix), then append these.
    * ``hard_state``: persist if not None (it changed).
    * ``messages``: send only after the above are durable.
    * ``committed_entries``: apply in order (after persisting).
    * ``read_states``: serve each once the applied index reaches its index.
    """

    hard_state: HardState | None = None
    snapshot: Snapshot | None = None
    restore_snapshot: bool = False
    entries: tuple[Entry, ...] = ()
    messages: tuple[Message, ...] = ()
    committed_entries: tuple[Entry, ...] = ()
    read_states: tuple[ReadState, ...] = ()

    @property
    def must_sync(self) -> bool:
        """True if something must be made durable (fsync) before sending."""
        return self.hard_state is not None or self.snapshot is not None or bool(self.entries)
