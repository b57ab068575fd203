"""Signed values and provider records: validation on store and on read, ordering, caps,
expiry."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from colonymesh.node.dht.effects import (
    DhtConfig,
    PeerMisbehaved,
    RecordRefused,
    SendMessage,
    ValueLookupFinished,
)
from colonymesh.node.dht.ids import key_id
from colonymesh.node.dht.messages import (
    GetValue,
    GetValueResult,
    PeerInfo,
    PutValue,
    PutValueResult,
    ValueRecord,
    value_signing_bytes,
)
from colonymesh.node.dht.node import DhtNode
from colonymesh.node.dht.records import (
    HOUR_S,
    ProviderStore,
    RecordLimits,
    Rejection,
    ValueStore,
    publisher_owned_keys,
)


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        VerifyKey(public_key).verify(message, signature)
    except (BadSignatureError, ValueError):
        return False
    return True


ALICE = SigningKey(bytes([1]) * 32)
BOB = SigningKey(bytes([2]) * 32)
MALLORY = SigningKey(bytes([3]) * 32)  # a valid key, but not a colony member
MEMBERS = {bytes(ALICE.verify_key), bytes(BOB.verify_key)}
PK_ALICE = bytes(ALICE.verify_key)


def is_member(public_key: bytes) -> bool:
    return public_key in MEMBERS


def signed(sk: SigningKey, key: bytes, value: bytes, seq: int) -> ValueRecord:
    sig = sk.sign(value_signing_bytes(key, value, seq)).signature
    return ValueRecord(key, value, bytes(sk.verify_key), seq, sig)


def store(limits: RecordLimits | None = None) -> ValueStore:
    return ValueStore(verify, is_member, limits or RecordLimits())


def test_a_members_signed_record_is_stored_and_served() -> None:
    s = store()
    rec = signed(ALICE, b"k", b"v1", 1)
    assert s.put(rec, 0.0) is None
    assert s.get(b"k", 1.0) == rec


@pytest.mark.parametrize(
    ("record", "why"),
    [
        (replace(signed(ALICE, b"k", b"v", 1), signature=b""), Rejection.UNSIGNED),
        (signed(MALLORY, b"k", b"v", 1), Rejection.NOT_MEMBER),
        (replace(signed(ALICE, b"k", b"v", 1), value=b"w"), Rejection.BAD_SIGNATURE),
        (replace(signed(ALICE, b"k", b"v", 1), seq=2), Rejection.BAD_SIGNATURE),
        (replace(signed(ALICE, b"k", b"v", 1), key=b"j"), Rejection.BAD_SIGNATURE),
        # claims to be Bob's but carries Alice's signature
        (
            replace(signed(ALICE, b"k", b"v", 1), publisher=bytes(BOB.verify_key)),
            Rejection.BAD_SIGNATURE,
        ),
        (signed(ALICE, b"k", b"x" * 101, 1), Rejection.TOO_LARGE),
    ],
)
def test_bad_records_are_refused(record: ValueRecord, why: Rejection) -> None:
    s = store(RecordLimits(value_bytes_max=100))
    assert s.put(record, 0.0) is why
    assert s.get(record.key, 0.0) is None


def test_newer_sequence_wins_and_stale_is_refused() -> None:
    s = store()
    assert s.put(signed(ALICE, b"k", b"v2", 2), 0.0) is None
    assert s.put(signed(BOB, b"k", b"v1", 1), 0.0) is Rejection.STALE
    assert s.get(b"k", 0.0) == signed(ALICE, b"k", b"v2", 2)
    assert s.put(signed(BOB, b"k", b"v3", 3), 0.0) is None
    assert s.get(b"k", 0.0) == signed(BOB, b"k", b"v3", 3)


def test_equal_sequences_are_ordered_the_same_everywhere() -> None:
    a, b = signed(ALICE, b"k", b"a", 5), signed(BOB, b"k", b"b", 5)
    s1, s2 = store(), store()
    s1.put(a, 0.0)
    s1.put(b, 0.0)
    s2.put(b, 0.0)
    s2.put(a, 0.0)
    assert s1.get(b"k", 0.0) == s2.get(b"k", 0.0)


def test_revoked_publisher_is_not_served_on_read() -> None:
    members = set(MEMBERS)
    s = ValueStore(verify, lambda pk: pk in members, RecordLimits())
    s.put(signed(BOB, b"k", b"v", 1), 0.0)
    members.discard(bytes(BOB.verify_key))
    assert s.get(b"k", 0.0) is None


def test_values_expire_and_the_store_is_capped() -> None:
    s = store(RecordLimits(values_max=2, value_ttl_s=100.0))
    assert s.put(signed(ALICE, b"a", b"1", 1), 0.0) is None
    assert s.put(signed(ALICE, b"b", b"1", 1), 0.0) is None
    assert s.put(signed(ALICE, b"c", b"1", 1), 0.0) is Rejection.FULL
    assert s.put(signed(ALICE, b"a", b"2", 2), 50.0) is None  # updates always fit
    assert s.get(b"b", 100.0) is None  # expired
    assert s.put(signed(ALICE, b"c", b"1", 1), 101.0) is None
    assert len(s) == 2


def test_provider_records_expire_refresh_and_are_capped() -> None:
    limits = RecordLimits(provider_ttl_s=48 * HOUR_S, providers_per_key_max=2, provider_keys_max=2)
    ps = ProviderStore(limits)
    p1, p2, p3 = (PeerInfo(bytes([i]) * 32) for i in (1, 2, 3))
    assert ps.add(b"k", p1, 0.0) and ps.add(b"k", p2, 10.0)
    assert not ps.add(b"k", p3, 20.0)  # full for this key
    assert ps.get(b"k", 30.0, 10) == [p2, p1]
    assert ps.add(b"k", p1, 40 * HOUR_S)  # re-announce refreshes
    assert ps.get(b"k", 48 * HOUR_S + 15, 10) == [p1]  # p2 expired
    assert ps.add(b"k", p3, 48 * HOUR_S + 20)
    assert ps.add(b"j", p1, 0.0)
    assert not ps.add(b"i", p1, 1.0)  # too many keys
    assert ps.get(b"k", 100 * HOUR_S, 10) == []


# --- through the node: verified on store and on read ---------------------------


def node_of(sk: SigningKey, **cfg: object) -> DhtNode:
    return DhtNode(
        PeerInfo(bytes(sk.verify_key)),
        verify=verify,
        is_member=is_member,
        rng=random.Random(0),
        config=DhtConfig(**cfg),  # type: ignore[arg-type]
    )


def test_node_refuses_a_tampered_put_and_says_why() -> None:
    node = node_of(ALICE)
    bob = PeerInfo(bytes(BOB.verify_key))
    bad = replace(signed(BOB, b"k", b"v", 1), value=b"forged")
    out = node.handle_message(bob, PutValue(7, bad), 0.0)
    assert out == [SendMessage(bob, PutValueResult(7, False, "bad-signature"))]
    good = signed(BOB, b"k", b"v", 1)
    assert node.handle_message(bob, PutValue(8, good), 0.0) == [
        SendMessage(bob, PutValueResult(8, True, ""))
    ]
    stale = signed(BOB, b"k", b"v0", 0)
    assert node.handle_message(bob, PutValue(9, stale), 0.0) == [
        SendMessage(bob, PutValueResult(9, False, "stale"))
    ]


def test_node_refuses_to_publish_a_record_it_would_refuse() -> None:
    node = node_of(ALICE)
    with pytest.raises(RecordRefused):
        node.put_value(signed(MALLORY, b"k", b"v", 1), 0.0)


def test_records_received_in_answers_are_verified_before_use() -> None:
    node = node_of(ALICE, k=3, value_quorum=0)
    bob = PeerInfo(bytes(BOB.verify_key))
    node.handle_message(bob, GetValue(1, b"x"), 0.0)  # Bob now in the table
    op, out = node.get_value(b"k", 1.0)
    req = next(e.message for e in out if isinstance(e, SendMessage))
    if not isinstance(req, GetValue):
        raise AssertionError(req)
    forged = replace(signed(BOB, b"k", b"v", 9), value=b"evil")
    out = node.handle_message(bob, GetValueResult(req.request_id, forged, ()), 2.0)
    assert PeerMisbehaved(bob.public_key, "served a refused record: bad-signature") in out
    done = [e for e in out if isinstance(e, ValueLookupFinished)]
    assert done == [ValueLookupFinished(op, b"k", None, 1, 1)]


def test_a_record_for_another_key_is_refused() -> None:
    node = node_of(ALICE, k=3)
    bob = PeerInfo(bytes(BOB.verify_key))
    node.handle_message(bob, GetValue(1, b"x"), 0.0)
    _, out = node.get_value(b"k", 1.0)
    req = next(e.message for e in out if isinstance(e, SendMessage))
    if not isinstance(req, GetValue):
        raise AssertionError(req)
    other = signed(BOB, b"other", b"v", 1)
    out = node.handle_message(bob, GetValueResult(req.request_id, other, ()), 2.0)
    assert PeerMisbehaved(bob.public_key, "served a refused record: wrong-key") in out
    assert key_id(b"k") != key_id(b"other")


def test_record_policy_reserves_owned_keys() -> None:
    s = ValueStore(verify, is_member, RecordLimits(), publisher_owned_keys)
    alices = b"pk/" + PK_ALICE + b"/profile"
    assert s.put(signed(ALICE, alices, b"mine", 1), 0.0) is None
    assert s.put(signed(BOB, alices, b"hijack", 2), 0.0) is Rejection.FORBIDDEN
    assert s.get(alices, 0.0) == signed(ALICE, alices, b"mine", 1)
    assert s.put(signed(BOB, b"shared/key", b"v", 1), 0.0) is None  # not an owned key
