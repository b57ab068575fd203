"""The Kademlia routing table: k-buckets with liveness-checked replacement and refresh.

What it owns: up to `k` contacts per bucket (bucket `i` = peers at XOR distance in
`[2**i, 2**(i+1))`), ordered least-recently-seen first, and per bucket a bounded
replacement cache of newcomers that did not fit.

How it works (Kademlia paper §2.2, with libp2p's replacement cache):
- `observe(peer, now)` is called for every message from a peer. A known contact
  moves to the most-recently-seen end. A newcomer is added if the bucket has room;
  if the bucket is full it goes to the replacement cache, and if the least-recently
  -seen (LRS) contact has not been heard from for `probe_after_s` and no probe is
  running in that bucket, `observe` returns the LRS contact: the caller must ping it.
- `probe_answered` (the ping came back, which also arrives as `observe`) keeps the
  LRS and ends the probe; `probe_failed` (the ping timed out) evicts it and promotes
  the most recent replacement.
- `record_failure` counts request timeouts; a contact with `failures_max` failures is
  replaced as soon as a replacement is cached, and is dropped from `closest` answers.
- `due_refreshes(now)` names the buckets not touched by a lookup for
  `refresh_interval_s`, from the nearest non-empty bucket outward; the caller looks
  up a random id in each.

Invariants: at most `k` contacts and `replacements_max` cached newcomers per
bucket; the own id is never stored; at most one probe per bucket at a time.
Contract: the driver (here `DhtNode`) pings what `observe` returns and reports the
outcome with `probe_answered`/`probe_failed` exactly once per probe.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from colonymesh.node.dht.ids import NodeId, bucket_index, node_id_of
from colonymesh.node.dht.messages import PeerInfo


class _Contact:
    __slots__ = ("failures", "info", "last_seen", "node_id")

    def __init__(self, info: PeerInfo, node_id: NodeId, now: float) -> None:
        self.info = info
        self.node_id = node_id
        self.last_seen = now
        self.failures = 0


class _Bucket:
    __slots__ = ("contacts", "last_refreshed", "probing", "replacements")

    def __init__(self, now: float) -> None:
        # dicts keep insertion order: first = least recently seen
        self.contacts: dict[bytes, _Contact] = {}
        self.replacements: dict[bytes, _Contact] = {}
        self.probing: bytes | None = None
        self.last_refreshed = now


class RoutingTable:
    __slots__ = (
        "_buckets",
        "_created",
        "_next_refresh",
        "failures_max",
        "k",
        "probe_after_s",
        "refresh_interval_s",
        "replacements_max",
        "self_id",
        "self_key",
    )

    def __init__(
        self,
        self_key: bytes,
        *,
        k: int = 20,
        replacements_max: int = 8,
        refresh_interval_s: float = 3600.0,
        probe_after_s: float = 60.0,
        failures_max: int = 2,
        now: float = 0.0,
    ) -> None:
        if k < 1 or replacements_max < 0 or failures_max < 1:
            raise ValueError("k and failures_max must be >= 1, replacements_max >= 0")
        self.self_key = self_key
        self.self_id = node_id_of(self_key)
        self.k = k
        self.replacements_max = replacements_max
        self.refresh_interval_s = refresh_interval_s
        self.probe_after_s = probe_after_s
        self.failures_max = failures_max
        self._buckets: dict[int, _Bucket] = {}
        self._created = now
        self._next_refresh: float | None = None  # cache; never later than the truth

    # --- membership -------------------------------------------------------------

    def _bucket(self, index: int, now: float) -> _Bucket:
        bucket = self._buckets.get(index)
        if bucket is None:
            bucket = self._buckets[index] = _Bucket(self._created)
        return bucket

    def observe(self, info: PeerInfo, now: float) -> PeerInfo | None:
        """Note that `info` is alive; return a contact to ping if a probe must start."""
        key = info.public_key
        if key == self.self_key:
            return None
        nid = node_id_of(key)
        bucket = self._bucket(bucket_index(self.self_id, nid), now)
        contact = bucket.contacts.pop(key, None)
        if contact is not None:
            # move to the most-recently-seen end; refresh addresses
            contact.last_seen = now
            contact.failures = 0
            if info.addrs:
                contact.info = info
            bucket.contacts[key] = contact
            if bucket.probing == key:
                bucket.probing = None
            return None
        if len(bucket.contacts) < self.k:
            if not bucket.contacts:
                self._next_refresh = None  # the range of refreshed buckets may grow
            bucket.replacements.pop(key, None)
            bucket.contacts[key] = _Contact(info, nid, now)
            return None
        self._cache_replacement(bucket, info, nid, now)
        lrs = next(iter(bucket.contacts.values()))
        if lrs.failures >= self.failures_max:
            # already known dead: no need to ask again
            self._evict(bucket, lrs.info.public_key)
            return None
        if bucket.probing is None and now - lrs.last_seen >= self.probe_after_s:
            bucket.probing = lrs.info.public_key
            return lrs.info
        return None

    def _cache_replacement(self, bucket: _Bucket, info: PeerInfo, nid: NodeId, now: float) -> None:
        if self.replacements_max == 0:
            return
        bucket.replacements.pop(info.public_key, None)
        bucket.replacements[info.public_key] = _Contact(info, nid, now)
        while len(bucket.replacements) > self.replacements_max:
            del bucket.replacements[next(iter(bucket.replacements))]

    def _evict(self, bucket: _Bucket, key: bytes) -> None:
        del bucket.contacts[key]
        if bucket.probing == key:
            bucket.probing = None
        if bucket.replacements:
            newest = next(reversed(bucket.replacements))
            bucket.contacts[newest] = bucket.replacements.pop(newest)

    def _find(self, key: bytes) -> tuple[_Bucket, _Contact | None] | None:
        if key == self.self_key or len(key) != len(self.self_key):
            return None
        bucket = self._buckets.get(bucket_index(self.self_id, node_id_of(key)))
        if bucket is None:
            return None
        return bucket, bucket.contacts.get(key)

    def probe_answered(self, key: bytes, now: float) -> None:
        """The probed contact answered its ping: keep it."""
        found = self._find(key)
        if found is None:
            return
        bucket, contact = found
        if bucket.probing == key:
            bucket.probing = None
        if contact is not None:
            contact.last_seen = now
            contact.failures = 0
            bucket.contacts[key] = bucket.contacts.pop(key)

    def probe_failed(self, key: bytes, now: float) -> None:
        """The probed contact's ping timed out: evict it, promote a replacement."""
        found = self._find(key)
        if found is None:
            return
        bucket, contact = found
        if bucket.probing != key:
            return  # it was heard from meanwhile (observe ended the probe): keep it
        if contact is not None:
            self._evict(bucket, key)
        else:
            bucket.probing = None

    def cancel_probe(self, key: bytes) -> None:
        """The caller could not send the probe: forget it without judging the contact."""
        found = self._find(key)
        if found is not None and found[0].probing == key:
            found[0].probing = None

    def record_failure(self, key: bytes, now: float) -> None:
        """A request to `key` timed out."""
        found = self._find(key)
        if found is None:
            return
        bucket, contact = found
        if contact is None:
            bucket.replacements.pop(key, None)
            return
        contact.failures += 1
        if contact.failures >= self.failures_max and bucket.replacements:
            self._evict(bucket, key)

    def remove(self, key: bytes) -> bool:
        found = self._find(key)
        if found is None:
            return False
        bucket, contact = found
        bucket.replacements.pop(key, None)
        if contact is None:
            return False
        self._evict(bucket, key)
        return True

    # --- queries ------------------------------------------------------------------

    def __len__(self) -> int:
        return sum(len(b.contacts) for b in self._buckets.values())

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, bytes):
            return False
        found = self._find(key)
        return found is not None and found[1] is not None

    def peers(self) -> Iterator[PeerInfo]:
        for index in sorted(self._buckets):
            for contact in self._buckets[index].contacts.values():
                yield contact.info

    def bucket_sizes(self) -> dict[int, int]:
        """Bucket index -> number of contacts, for non-empty buckets (operator view)."""
        return {i: len(b.contacts) for i, b in sorted(self._buckets.items()) if b.contacts}

    def replacement_keys(self, index: int) -> list[bytes]:
        bucket = self._buckets.get(index)
        return list(bucket.replacements) if bucket is not None else []

    def bucket_keys(self, index: int) -> list[bytes]:
        """Contacts of bucket `index`, least recently seen first."""
        bucket = self._buckets.get(index)
        return list(bucket.contacts) if bucket is not None else []

    def closest(self, target: int, n: int, exclude: bytes | None = None) -> list[PeerInfo]:
        """The `n` live-looking contacts closest to `target`, nearest first (the
        failing ones only when no live-looking contact is left).

        Buckets are visited in distance order instead of scanning the whole table:
        with `i` the bucket `target` falls in, bucket `i` holds the contacts nearer
        than 2**i, every bucket below `i` holds contacts in [2**i, 2**(i+1)), and each
        bucket `j > i` holds contacts in [2**j, 2**(j+1))."""
        if n <= 0:
            return []
        t = self.self_id ^ target
        i = t.bit_length() - 1  # -1: target is our own id
        buckets = self._buckets
        groups: list[list[int]] = [[i], [j for j in buckets if j < i]] if i >= 0 else []
        groups.extend([j] for j in sorted(b for b in buckets if b > i))
        fmax = self.failures_max
        found: list[tuple[int, PeerInfo]] = []
        failing: list[tuple[int, PeerInfo]] = []
        for group in groups:
            for j in group:
                bucket = buckets.get(j)
                if bucket is None:
                    continue
                for c in bucket.contacts.values():
                    if c.info.public_key == exclude:
                        continue
                    if c.failures < fmax:
                        found.append((c.node_id ^ target, c.info))
                    elif not found:
                        failing.append((c.node_id ^ target, c.info))
            if len(found) >= n:
                break
        # Contacts that stopped answering stay in their bucket until a replacement
        # exists; when nothing else is left, they are all we can ask. Excluding them
        # then would wedge a peer whose only contact (its bootstrap) once timed out:
        # it would never ask again, and so never hear the answer that clears it.
        pool = found or failing
        pool.sort(key=lambda pair: pair[0])
        return [info for _, info in pool[:n]]

    # --- refresh ------------------------------------------------------------------

    def touch(self, target: int, now: float) -> None:
        """A lookup toward `target` ran: its bucket counts as refreshed."""
        if target != self.self_id:
            self._bucket(bucket_index(self.self_id, target), now).last_refreshed = now
            self._next_refresh = None

    def due_refreshes(self, now: float) -> list[int]:
        """Buckets (nearest non-empty outward) untouched for `refresh_interval_s`;
        they are marked refreshed, so each is named once per interval."""
        self._next_refresh = None
        nonempty = [i for i, b in self._buckets.items() if b.contacts]
        if not nonempty:
            return []
        due: list[int] = []
        for index in range(min(nonempty), 256):
            bucket = self._buckets.get(index)
            last = bucket.last_refreshed if bucket is not None else self._created
            if now - last >= self.refresh_interval_s:
                self._bucket(index, now).last_refreshed = now
                due.append(index)
        return due

    def next_refresh_at(self) -> float:
        if self._next_refresh is None:
            self._next_refresh = self._compute_next_refresh()
        return self._next_refresh

    def _compute_next_refresh(self) -> float:
        nonempty = [i for i, b in self._buckets.items() if b.contacts]
        if not nonempty:
            return math.inf
        lo = min(nonempty)
        oldest = min(
            (self._buckets[i].last_refreshed if i in self._buckets else self._created)
            for i in range(lo, 256)
        )
        return oldest + self.refresh_interval_s

    def mark_all_stale(self, from_index: int) -> None:
        """Make buckets `from_index..255` due for refresh at the next tick (after joining)."""
        for index in range(from_index, 256):
            self._bucket(index, self._created).last_refreshed = -math.inf
        self._next_refresh = None
