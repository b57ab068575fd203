"""The serving side of chunk exchange: answer peers' want-lists from the local store.

Owns, per requester, the queue of blocks it wants from us, and the rules for
answering. Sans-I/O: the driver hands in decoded messages and pulls answers.

How it works. `on_message(requester, msg)` records WANT_BLOCKS in a per-requester
FIFO (deduplicated; past `wants_per_peer_max` the excess is answered DONT_HAVE
at once, so a greedy peer costs a bounded amount of memory), drops CANCELled
CIDs from it, and answers WANT_HAVES immediately through the injected `has`.
The driver's sender loop then calls `next_want(requester)`, reads that block
from the store itself (disk I/O stays in the driver) and turns the result into
a message with `answer(requester, cid, data | None)`: a BLOCK, or a DONT_HAVE
for a block we lack, found corrupt, or that is over `BLOCK_DATA_BYTES_MAX`.

Invariants: memory per requester is bounded by `wants_per_peer_max` CIDs;
every want is answered exactly once (BLOCK or DONT_HAVE) unless cancelled;
messages a server never receives (BLOCK, HAVES, DONT_HAVE) are reported as
`ExchangeProtocolError`, never acted on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from colonymesh.fs.cid import Cid
from colonymesh.fs.errors import FsDecodeError
from colonymesh.fs.exchange.messages import (
    BLOCK_DATA_BYTES_MAX,
    BlockMessage,
    Cancel,
    DontHave,
    Haves,
    Message,
    WantBlocks,
    WantHaves,
)

WANTS_PER_PEER_MAX_DEFAULT: Final = 4096


class ExchangeProtocolError(FsDecodeError):
    """A well-formed message that the receiving side must never get (blame: the peer)."""


@dataclass(slots=True)
class ServerStatistics:
    blocks_sent: int = 0
    bytes_sent: int = 0
    dont_haves_sent: int = 0
    wants_refused: int = 0
    cancelled: int = 0


class ExchangeServer:
    """Serves blocks to requesters (any hashable key: a peer id, a stream)."""

    def __init__(
        self, has: Callable[[Cid], bool], wants_per_peer_max: int = WANTS_PER_PEER_MAX_DEFAULT
    ) -> None:
        self._has = has
        self._wants_max = wants_per_peer_max
        self._queues: dict[str, dict[Cid, None]] = {}  # requester -> ordered wants
        self.stats = ServerStatistics()

    def on_message(self, requester: str, message: Message) -> list[Message]:
        """Take one request; return the messages to send back now."""
        match message:
            case WantBlocks(cids):
                queue = self._queues.setdefault(requester, {})
                refused: list[Cid] = []
                for cid in cids:
                    if cid in queue:
                        continue
                    if len(queue) >= self._wants_max:
                        refused.append(cid)
                    else:
                        queue[cid] = None
                self.stats.wants_refused += len(refused)
                self.stats.dont_haves_sent += len(refused)
                return [DontHave(tuple(refused))] if refused else []
            case Cancel(cids):
                queue = self._queues.get(requester, {})
                for cid in cids:
                    if queue.pop(cid, 0) is None:
                        self.stats.cancelled += 1
                return []
            case WantHaves(cids):
                have = tuple(c for c in cids if self._has(c))
                lack = tuple(c for c in cids if c not in have)
                return [m for m in (Haves(have), DontHave(lack)) if m.cids]
            case BlockMessage() | Haves() | DontHave():
                raise ExchangeProtocolError(f"a server does not accept {type(message).__name__}")

    def next_want(self, requester: str) -> Cid | None:
        """The oldest block `requester` still wants (removed from its queue), or None."""
        queue = self._queues.get(requester)
        if not queue:
            return None
        cid = next(iter(queue))
        del queue[cid]
        return cid

    def pending(self, requester: str) -> int:
        return len(self._queues.get(requester, ()))

    def answer(self, requester: str, cid: Cid, data: bytes | None) -> Message:
        """The message answering `requester`'s want for `cid`, given what the store gave."""
        if data is None or len(data) > BLOCK_DATA_BYTES_MAX:
            self.stats.dont_haves_sent += 1
            return DontHave((cid,))
        self.stats.blocks_sent += 1
        self.stats.bytes_sent += len(data)
        return BlockMessage(cid, data)

    def forget(self, requester: str) -> None:
        """The requester went away: drop its queue."""
        self._queues.pop(requester, None)
