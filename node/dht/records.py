"""DHT records: signed values and provider records, with their checks, caps and expiry.

What it owns: the values and provider records this node stores for others (and
for itself).

Signed values. A `ValueRecord` is (key, value, publisher key, seq, signature over
`value_signing_bytes`). `check_value_record` refuses, in this order: an unsigned
record, a value over the size cap, a publisher that is not a colony member (the
injected `is_member`), a signature that does not verify (the injected `verify`).
An optional injected `RecordPolicy` then decides whether that member may write that
key (`publisher_owned_keys` reserves `pk/<key>...` to its owner); without one any
member may write any key. `ValueStore.put` runs all this on store and keeps the
record only if it is newer:
records of one key are ordered by (seq, publisher, value), so every replica picks
the same winner even for equal sequence numbers. `ValueStore.get` re-checks
membership on read, so a revoked publisher's records stop being served; the node
also verifies every record it receives in an answer (verified on read).

Provider records. (key, provider) with an expiry; a provider re-announcing
refreshes it. Defaults follow libp2p's kad-dht: records live 48 h and their
owner republishes every 22 h; values live 36 h (libp2p's MaxRecordAge) and their
publisher republishes every 22 h.

Invariants: at most `values_max` value keys, at most `provider_keys_max` keys with
providers and `providers_per_key_max` providers per key; a full store refuses new
keys rather than evicting (so nobody can flush it), but always accepts updates.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from colonymesh.node.dht.messages import PeerInfo, ValueRecord, value_signing_bytes

Verify = Callable[[bytes, bytes, bytes], bool]  # (public key, message, signature) -> ok
IsMember = Callable[[bytes], bool]  # public key -> is a current colony member
RecordPolicy = Callable[[ValueRecord], bool]  # may this publisher write this key?

HOUR_S = 3600.0


class Rejection(enum.Enum):
    UNSIGNED = "unsigned"
    TOO_LARGE = "too-large"
    NOT_MEMBER = "not-member"
    BAD_SIGNATURE = "bad-signature"
    STALE = "stale"
    FULL = "full"
    WRONG_KEY = "wrong-key"
    FORBIDDEN = "forbidden"  # the record policy refuses this publisher for this key


@dataclass(frozen=True, slots=True)
class RecordLimits:
    value_bytes_max: int = 16 * 1024
    values_max: int = 10_000
    value_ttl_s: float = 36 * HOUR_S
    provider_ttl_s: float = 48 * HOUR_S
    providers_per_key_max: int = 64
    provider_keys_max: int = 10_000


def record_order(record: ValueRecord) -> tuple[int, bytes, bytes]:
    """Total order on the records of one key: the larger one wins."""
    return (record.seq, record.publisher, record.value)


OWNED_PREFIX = b"pk/"


def publisher_owned_keys(record: ValueRecord) -> bool:
    """A record policy: keys `pk/<32-byte public key>...` may only be written by that
    key's owner; every other key by any member (the default policy allows all)."""
    if record.key.startswith(OWNED_PREFIX):
        owner = record.key[len(OWNED_PREFIX) : len(OWNED_PREFIX) + 32]
        return owner == record.publisher
    return True


def check_value_record(
    record: ValueRecord,
    verify: Verify,
    is_member: IsMember,
    value_bytes_max: int,
    policy: RecordPolicy | None = None,
) -> Rejection | None:
    """Why `record` must be refused, or None if it is properly signed by a member
    (and, with a `policy`, that member may write that key)."""
    if not record.signature:
        return Rejection.UNSIGNED
    if len(record.value) > value_bytes_max:
        return Rejection.TOO_LARGE
    if not is_member(record.publisher):
        return Rejection.NOT_MEMBER
    try:
        signed = value_signing_bytes(record.key, record.value, record.seq)
        ok = verify(record.publisher, signed, record.signature)
    except ValueError:
        ok = False
    if not ok:
        return Rejection.BAD_SIGNATURE
    if policy is not None and not policy(record):
        return Rejection.FORBIDDEN
    return None


class _StoredValue:
    __slots__ = ("expires", "record")

    def __init__(self, record: ValueRecord, expires: float) -> None:
        self.record = record
        self.expires = expires


class ValueStore:
    __slots__ = ("_is_member", "_records", "_verify", "limits", "policy")

    def __init__(
        self,
        verify: Verify,
        is_member: IsMember,
        limits: RecordLimits,
        policy: RecordPolicy | None = None,
    ) -> None:
        self._verify = verify
        self._is_member = is_member
        self.limits = limits
        self.policy = policy
        self._records: dict[bytes, _StoredValue] = {}

    def put(self, record: ValueRecord, now: float) -> Rejection | None:
        """Verify and store `record`; the reason it was refused, or None if stored."""
        why = check_value_record(
            record, self._verify, self._is_member, self.limits.value_bytes_max, self.policy
        )
        if why is not None:
            return why
        held = self._records.get(record.key)
        if held is not None and held.expires > now:
            if record_order(record) < record_order(held.record):
                return Rejection.STALE
            if record == held.record:
                held.expires = now + self.limits.value_ttl_s  # a republish refreshes
                return None
        elif len(self._records) >= self.limits.values_max:
            self.expire(now)
            if len(self._records) >= self.limits.values_max:
                return Rejection.FULL
        self._records[record.key] = _StoredValue(record, now + self.limits.value_ttl_s)
        return None

    def get(self, key: bytes, now: float) -> ValueRecord | None:
        held = self._records.get(key)
        if held is None:
            return None
        if held.expires <= now or not self._is_member(held.record.publisher):
            del self._records[key]
            return None
        return held.record

    def expire(self, now: float) -> int:
        dead = [k for k, v in self._records.items() if v.expires <= now]
        for k in dead:
            del self._records[k]
        return len(dead)

    def __len__(self) -> int:
        return len(self._records)


class ProviderStore:
    __slots__ = ("_keys", "limits")

    def __init__(self, limits: RecordLimits) -> None:
        self.limits = limits
        # key -> provider public key -> (info, expiry); insertion order = age
        self._keys: dict[bytes, dict[bytes, tuple[PeerInfo, float]]] = {}

    def add(self, key: bytes, provider: PeerInfo, now: float) -> bool:
        providers = self._keys.get(key)
        if providers is None:
            if len(self._keys) >= self.limits.provider_keys_max:
                self.expire(now)
                if len(self._keys) >= self.limits.provider_keys_max:
                    return False
            providers = self._keys[key] = {}
        pk = provider.public_key
        if pk not in providers and len(providers) >= self.limits.providers_per_key_max:
            self._expire_key(key, providers, now)
            if len(providers) >= self.limits.providers_per_key_max:
                return False
            providers = self._keys.setdefault(key, providers)  # expiry may have emptied it
        providers.pop(pk, None)
        providers[pk] = (provider, now + self.limits.provider_ttl_s)
        return True

    def get(self, key: bytes, now: float, limit: int) -> list[PeerInfo]:
        providers = self._keys.get(key)
        if providers is None:
            return []
        self._expire_key(key, providers, now)
        # most recently announced first
        return [info for info, _ in reversed(list(providers.values()))][:limit]

    def _expire_key(
        self, key: bytes, providers: dict[bytes, tuple[PeerInfo, float]], now: float
    ) -> int:
        dead = [pk for pk, (_, exp) in providers.items() if exp <= now]
        for pk in dead:
            del providers[pk]
        if not providers:
            self._keys.pop(key, None)
        return len(dead)

    def expire(self, now: float) -> int:
        return sum(self._expire_key(k, p, now) for k, p in list(self._keys.items()))

    def __len__(self) -> int:
        return sum(len(p) for p in self._keys.values())
