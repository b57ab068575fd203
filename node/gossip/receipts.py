"""Delivery accounting for the gossip router: cumulative receipts up the delivery tree.

What it owns: the ids whose subtree count must still be reported to their parent,
and when to flush them. The counts themselves live in the seen-cache entries
(`SeenEntry.children`, `.reported`, `.repeats`), so they expire with them.

How it works: the peer that first sent a node a message is its parent; these
edges form a tree rooted at the publisher. A node reports its subtree count (its
own delivery plus its children's latest reports) to its parent, batched per
parent every `flush_s` while anything changed; an unchanged count is repeated
`repeats` more times so that one lost report does not lose a subtree. A parent
keeps the largest count each child reported (reports are cumulative, so a
reordered older one changes nothing). At the publisher (parent None) a change
yields `DeliveryCounted`. See router.py for the accuracy argument.
"""

from __future__ import annotations

import math
from collections.abc import Container

from colonymesh.node.gossip.caches import SeenCache, SeenEntry
from colonymesh.node.gossip.effects import DeliveryCounted, SendMessage
from colonymesh.node.gossip.messages import Receipt, Receipts


class ReceiptBook:
    __slots__ = ("_due", "flush_at", "flush_s", "per_message_max", "repeats")

    def __init__(self, flush_s: float, repeats: int, per_message_max: int) -> None:
        self.flush_s = flush_s
        self.repeats = repeats
        self.per_message_max = per_message_max
        self._due: dict[bytes, None] = {}
        self.flush_at = math.inf

    def __len__(self) -> int:
        return len(self._due)

    def changed(self, msg_id: bytes, entry: SeenEntry, now: float) -> None:
        """The subtree count of `msg_id` changed: report it (unless we published it)."""
        if entry.parent is None:
            return
        entry.repeats = self.repeats
        self._due[msg_id] = None
        if self.flush_at == math.inf:
            self.flush_at = now + self.flush_s

    def received(
        self,
        child: bytes,
        entries: tuple[Receipt, ...],
        seen: SeenCache,
        peers_count: int,
        now: float,
    ) -> list[DeliveryCounted]:
        counted: dict[bytes, int] = {}
        for receipt in entries:
            entry = seen.get(receipt.msg_id, now)
            if entry is None:
                continue
            children = entry.children
            if children is None:
                children = entry.children = {}
            elif child not in children and len(children) >= peers_count + 1:
                continue  # more children than peers: nonsense, keep it bounded
            if children.get(child, -1) >= receipt.delivered:
                continue  # stale or repeated report
            children[child] = receipt.delivered
            if entry.parent is None:
                counted[receipt.msg_id] = entry.subtree()
            else:
                self.changed(receipt.msg_id, entry, now)
        return [DeliveryCounted(msg_id, n) for msg_id, n in counted.items()]

    def flush(self, seen: SeenCache, peers: Container[bytes], now: float) -> list[SendMessage]:
        by_parent: dict[bytes, list[Receipt]] = {}
        for msg_id in list(self._due):
            entry = seen.get(msg_id, now)
            parent = entry.parent if entry is not None else None
            if entry is None or parent is None or parent not in peers:
                del self._due[msg_id]
                continue
            count = entry.subtree()
            if count != entry.reported:
                entry.reported = count
            elif entry.repeats > 0:
                entry.repeats -= 1
            else:
                del self._due[msg_id]
                continue
            by_parent.setdefault(parent, []).append(Receipt(msg_id, count))
        out: list[SendMessage] = []
        step = self.per_message_max
        for parent, receipts in by_parent.items():
            for i in range(0, len(receipts), step):
                out.append(SendMessage(parent, Receipts(tuple(receipts[i : i + step]))))
        self.flush_at = now + self.flush_s if self._due else math.inf
        return out
