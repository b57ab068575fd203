"""The batch of work a Raft core hands its driver: :class:`Ready`.

See the contract in :mod:`colonymesh.consensus.raft`: persist
(``snapshot``, then ``entries``, then ``hard_state``; fsync if ``must_sync``)
and send ``messages`` — after the persist, or alongside it when
``send_while_persisting`` — then apply (restore ``snapshot`` if
``restore_snapshot``, then ``committed_entries``, then serve
``read_states``), then ``advance(ready)``, which also tells the core that
the persist is durable.
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

    * ``snapshot``: persist it atomically. If the stored log holds the
      snapshot's last entry (same index *and* term), drop the stored entries at
      or below ``snapshot.meta.index`` and keep those after it; otherwise (the
      log is shorter, or differs at that index) discard the *whole* stored log:
      none of it can be trusted to follow the snapshot. If
      ``restore_snapshot`` it came from the leader and the state machine must
      be reset from its data; otherwise it is the application's own
      compaction (``compact``).
    * ``entries``: delete every stored entry with index ``>= entries[0].index``
      (a conflicting suffix), then append these.
    * ``hard_state``: persist if not None (it changed).
    * ``must_sync``: fsync all of the above before ``advance`` and before any
      message is sent (unless ``send_while_persisting``). False when nothing
      but the commit index changed: a lost commit index is recomputed, so that
      write need not be synced (etcd's ``MustSync``).
    * ``messages``: send only after the above are durable — or, if
      ``send_while_persisting`` (a leader whose term and vote are already
      durable), before or while persisting: the core counts its own copy of
      ``entries`` in a quorum only after ``advance`` (dissertation §10.2.1).
    * ``committed_entries``: apply in order, after persisting.
    * ``read_states``: serve each once the applied index reaches its index.
    """

    hard_state: HardState | None = None
    snapshot: Snapshot | None = None
    restore_snapshot: bool = False
    entries: tuple[Entry, ...] = ()
    messages: tuple[Message, ...] = ()
    committed_entries: tuple[Entry, ...] = ()
    read_states: tuple[ReadState, ...] = ()
    send_while_persisting: bool = False
    must_sync: bool = False
