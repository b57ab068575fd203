"""Bounded state for the gossip router: the seen-cache, the message cache, token buckets.

`SeenCache`: message id -> what this node knows about it (who sent it first, when it
expires, the delivery counts reported by the peers it forwarded to). Entries live
`ttl_s` and at most `max_entries` are kept: the oldest is evicted first (insertion
order equals arrival order, and every entry has the same TTL, so the front of the
dict is always the next to expire). An id evicted early may be delivered a second
time if it comes around again: the cap trades that for bounded memory.

`MessageCache`: the full messages of the last `windows` heartbeats, to answer
IWANT; the newest `gossip_windows` of them are advertised by IHAVE (gossipsub's
mcache).

`TokenBucket`: `rate` tokens a second up to `burst`, refilled lazily from `now`.
"""

from __future__ import annotations

from collections import deque

from colonymesh.node.gossip.messages import GossipMessage


class SeenEntry:
    __slots__ = ("children", "delivered", "expires", "parent", "repeats", "reported", "topic")

    def __init__(self, topic: str, parent: bytes | None, expires: float) -> None:
        self.topic = topic
        self.parent = parent  # None: we published it
        self.expires = expires
        self.delivered = False  # did this node deliver it to its application
        self.children: dict[bytes, int] | None = None  # child -> its subtree count
        self.reported = -1  # last count sent to the parent
        self.repeats = 0  # resends of an unchanged count still to do

    def subtree(self) -> int:
        own = 1 if self.delivered else 0
        return own + (sum(self.children.values()) if self.children else 0)


class SeenCache:
    __slots__ = ("_entries", "max_entries", "ttl_s")

    def __init__(self, ttl_s: float, max_entries: int) -> None:
        if max_entries < 1 or ttl_s <= 0:
            raise ValueError("seen cache needs ttl_s > 0 and max_entries >= 1")
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[bytes, SeenEntry] = {}

    def get(self, msg_id: bytes, now: float) -> SeenEntry | None:
        entry = self._entries.get(msg_id)
        if entry is None or entry.expires <= now:
            return None
        return entry

    def add(self, msg_id: bytes, topic: str, parent: bytes | None, now: float) -> SeenEntry:
        self.expire(now)
        while len(self._entries) >= self.max_entries:
            del self._entries[next(iter(self._entries))]
        entry = self._entries[msg_id] = SeenEntry(topic, parent, now + self.ttl_s)
        return entry

    def expire(self, now: float) -> None:
        entries = self._entries
        while entries:
            first = next(iter(entries))
            if entries[first].expires > now:
                break
            del entries[first]

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, msg_id: object) -> bool:
        return msg_id in self._entries


class MessageCache:
    __slots__ = ("_by_id", "_windows", "gossip_windows")

    def __init__(self, windows: int, gossip_windows: int) -> None:
        if not 1 <= gossip_windows <= windows:
            raise ValueError("need 1 <= gossip_windows <= windows")
        self.gossip_windows = gossip_windows
        self._by_id: dict[bytes, GossipMessage] = {}
        self._windows: deque[list[bytes]] = deque([[] for _ in range(windows)], maxlen=windows)

    def put(self, msg_id: bytes, msg: GossipMessage) -> None:
        if msg_id not in self._by_id:
            self._by_id[msg_id] = msg
            self._windows[0].append(msg_id)

    def get(self, msg_id: bytes) -> GossipMessage | None:
        return self._by_id.get(msg_id)

    def gossip_ids(self, topic: str, windows: int | None = None) -> list[bytes]:
        """Ids of `topic` in the newest `windows` (default `gossip_windows`) windows."""
        out: list[bytes] = []
        for i in range(self.gossip_windows if windows is None else windows):
            for msg_id in self._windows[i]:
                msg = self._by_id.get(msg_id)
                if msg is not None and msg.topic == topic:
                    out.append(msg_id)
        return out

    def shift(self) -> None:
        for msg_id in self._windows[-1]:
            self._by_id.pop(msg_id, None)
        self._windows.appendleft([])  # maxlen drops the oldest window

    def __len__(self) -> int:
        return len(self._by_id)


class TokenBucket:
    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def available(self, now: float) -> float:
        self._refill(now)
        return self.tokens

    def take(self, amount: float, now: float) -> bool:
        self._refill(now)
        if self.tokens >= amount:
            self.tokens -= amount
            return True
        return False

    def wait_s(self, amount: float, now: float) -> float:
        """Seconds until `amount` tokens are there (inf if it exceeds the burst)."""
        self._refill(now)
        if amount > self.burst:
            return float("inf")
        return max(0.0, (amount - self.tokens) / self.rate) if self.rate > 0 else float("inf")
