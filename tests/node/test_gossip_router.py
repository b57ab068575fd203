"""GossipRouter unit tests: validation with real Ed25519, caches and their bounds, local
and per-peer rate limits, receipts aggregation, decoder fuzzing."""

from __future__ import annotations

import contextlib
import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from colonymesh.node.gossip.caches import MessageCache, SeenCache, TokenBucket
from colonymesh.node.gossip.effects import (
    Delivered,
    DeliveryCounted,
    GossipConfig,
    Output,
    PeerMisbehaved,
    PeerRateLimited,
    PublishError,
    PublishThrottled,
    SendMessage,
    ThrottledBy,
)
from colonymesh.node.gossip.messages import (
    GossipMessage,
    GossipProtocolError,
    Graft,
    IHave,
    IWant,
    Prune,
    Publish,
    Receipt,
    Receipts,
    Subscriptions,
    Throttle,
    WireLimits,
    message_id,
    message_signing_bytes,
    validate_message,
)
from colonymesh.node.gossip.router import GossipRouter

T = "specs"
KEYS = {name: SigningKey(bytes([i + 1]) * 32) for i, name in enumerate("abcdm")}
PK = {name: bytes(sk.verify_key) for name, sk in KEYS.items()}
MEMBERS = {PK[n] for n in "abcd"}  # m is not a member


def verify(pk: bytes, data: bytes, sig: bytes) -> bool:
    try:
        VerifyKey(pk).verify(data, sig)
    except (BadSignatureError, ValueError):
        return False
    return True


def router(name: str, config: GossipConfig | None = None) -> GossipRouter:
    sk = KEYS[name]
    return GossipRouter(
        PK[name],
        sign=lambda data: sk.sign(data).signature,
        verify=verify,
        is_member=lambda pk: pk in MEMBERS,
        rng=random.Random(1),
        config=config,
    )


def signed(name: str, data: bytes, seqno: int = 1, topic: str = T) -> GossipMessage:
    sig = KEYS[name].sign(message_signing_bytes(topic, data, PK[name], seqno)).signature
    return GossipMessage(topic, data, PK[name], seqno, sig)


def sends(out: list[Output], kind: type) -> list[SendMessage]:
    return [o for o in out if isinstance(o, SendMessage) and isinstance(o.message, kind)]


def subscribed(name: str, peers: str, config: GossipConfig | None = None) -> GossipRouter:
    r = router(name, config)
    r.subscribe(T, 0.0)
    for p in peers:
        r.peer_connected(PK[p], 0.0)
        r.handle_message(PK[p], Subscriptions(subscribe=(T,)), 0.0)
        r.handle_message(PK[p], Graft(T), 0.0)
    return r


def test_valid_message_is_delivered_once_and_forwarded_to_the_mesh() -> None:
    a = subscribed("a", "bcd")
    msg = signed("b", b"hello")
    out = a.handle_message(PK["b"], Publish(msg), 1.0)
    assert Delivered(T, message_id(msg), b"hello", PK["b"]) in out
    fwd = {s.to for s in sends(out, Publish)}
    assert fwd == {PK["c"], PK["d"]}  # not back to the sender (= publisher)
    assert a.handle_message(PK["c"], Publish(msg), 1.1) == []  # duplicate


def test_forged_and_foreign_messages_are_refused_and_do_not_shadow_the_real_one() -> None:
    a = subscribed("a", "bc")
    real = signed("c", b"payload")
    forged = replace(real, signature=bytes(64))
    out = a.handle_message(PK["b"], Publish(forged), 1.0)
    assert out == [PeerMisbehaved(PK["b"], "relayed a message with a bad signature")]
    tampered = replace(real, data=b"other")
    out = a.handle_message(PK["b"], Publish(tampered), 1.0)
    assert [type(o) for o in out] == [PeerMisbehaved]
    foreign = signed("m", b"x")
    out = a.handle_message(PK["b"], Publish(foreign), 1.0)
    assert out == [PeerMisbehaved(PK["b"], "relayed a message from a non-member")]
    out = a.handle_message(PK["c"], Publish(real), 2.0)
    assert any(isinstance(o, Delivered) for o in out)


def test_publish_signs_and_sends_to_mesh_then_local_limit_pushes_back() -> None:
    cfg = GossipConfig(publish_per_s=1.0, publish_burst=2.0)
    a = subscribed("a", "bc", cfg)
    msg_id, out = a.publish(T, b"one", 0.0)
    assert msg_id is not None
    pubs = sends(out, Publish)
    assert {s.to for s in pubs} == {PK["b"], PK["c"]}
    m = pubs[0].message
    if not isinstance(m, Publish):
        raise AssertionError(m)
    assert message_id(m.message) == msg_id
    assert verify(
        PK["a"], message_signing_bytes(T, b"one", PK["a"], m.message.seqno), m.message.signature
    )
    assert a.publish(T, b"two", 0.0)[0] is not None
    refused, out = a.publish(T, b"three", 0.0)
    assert refused is None and out == [PublishThrottled(T, 1.0)]
    assert a.publish(T, b"three", 1.0)[0] is not None
    with pytest.raises(PublishError):
        a.publish(T, b"x" * (64 * 1024 + 1), 5.0)


def test_per_peer_limit_sends_throttle_and_the_upstream_defers_then_reoffers() -> None:
    cfg = GossipConfig(peer_msgs_per_s=1.0, peer_msgs_burst=2.0)
    a = subscribed("a", "bc", cfg)
    msgs = [signed("b", f"m{i}".encode(), seqno=i) for i in range(3)]
    for m in msgs[:2]:
        assert any(isinstance(o, Delivered) for o in a.handle_message(PK["b"], Publish(m), 0.0))
    out = a.handle_message(PK["b"], Publish(msgs[2]), 0.0)
    third = message_id(msgs[2])
    assert PeerRateLimited(PK["b"], third, 1.0) in out
    (throttle,) = sends(out, Throttle)
    assert throttle.to == PK["b"] and throttle.message == Throttle(1.0, (third,))

    # the upstream side: b learns it is throttled, holds back, re-offers after the wait
    b = subscribed("b", "ad", cfg)
    mid, _ = b.publish(T, b"first", 0.0)
    assert mid is not None
    told = b.handle_message(PK["a"], Throttle(1.0, (mid,)), 0.1)
    assert told == [ThrottledBy(PK["a"], 1.1, (mid,))]
    _, out = b.publish(T, b"second", 0.2)
    assert {s.to for s in sends(out, Publish)} == {PK["d"]}  # nothing eager to a
    out = b.tick(0.5)
    assert not [s for s in sends(out, IHave) if s.to == PK["a"] and mid in s.message.msg_ids]  # type: ignore[union-attr]
    out = b.tick(1.5) + b.tick(2.5)
    offers = [s for s in sends(out, IHave) if s.to == PK["a"]]
    offered = {i for s in offers for i in s.message.msg_ids}  # type: ignore[union-attr]
    assert mid in offered and len(offered) == 2
    # a's IWANT is served from what was held back
    served = b.handle_message(PK["a"], IWant((mid,)), 2.6)
    assert len(sends(served, Publish)) == 1


def test_ihave_beyond_budget_is_pushed_back_not_ignored() -> None:
    cfg = GossipConfig(peer_msgs_per_s=1.0, peer_msgs_burst=2.0)
    a = subscribed("a", "b", cfg)
    ids = tuple(bytes([i]) * 32 for i in range(5))
    out = a.handle_message(PK["b"], IHave(T, ids), 0.0)
    (want,) = sends(out, IWant)
    (back,) = sends(out, Throttle)
    assert want.message == IWant(ids[:2])
    assert back.message == Throttle(3.0, ids[2:])  # wait for min(3 ids, burst 2)... capped
    # ids already asked for are not asked again within iwant_followup_s
    out = a.handle_message(PK["b"], IHave(T, ids[:2]), 0.2)
    assert sends(out, IWant) == []


def test_receipts_aggregate_up_the_first_delivery_tree() -> None:
    # a publishes; b gets it from a; c gets it from b. c reports 1 to b, b reports 2 to a.
    cfg = GossipConfig(receipt_flush_s=0.1, receipt_repeats=1)
    a, b, c = subscribed("a", "b", cfg), subscribed("b", "ac", cfg), subscribed("c", "b", cfg)
    mid, out = a.publish(T, b"x", 0.0)
    assert mid is not None
    (to_b,) = sends(out, Publish)
    out_b = b.handle_message(PK["a"], to_b.message, 0.01)
    (to_c,) = sends(out_b, Publish)
    c.handle_message(PK["b"], to_c.message, 0.02)
    assert c.next_deadline() == pytest.approx(0.12)
    (rc,) = sends(c.tick(0.125), Receipts)
    assert rc.to == PK["b"] and rc.message == Receipts((Receipt(mid, 1),))
    b.handle_message(PK["c"], rc.message, 0.13)
    rb = sends(b.tick(0.25), Receipts)
    assert rb[0].to == PK["a"] and rb[0].message == Receipts((Receipt(mid, 2),))
    out_a = a.handle_message(PK["b"], rb[0].message, 0.21)
    assert out_a == [DeliveryCounted(mid, 2)]
    assert a.delivery_count(mid, 0.3) == 2
    # the repeat of an unchanged count changes nothing, and a stale smaller one is ignored
    assert a.handle_message(PK["b"], Receipts((Receipt(mid, 2),)), 0.4) == []
    assert a.handle_message(PK["b"], Receipts((Receipt(mid, 1),)), 0.5) == []
    assert a.delivery_count(mid, 0.5) == 2
    # exactly 1 + receipt_repeats sends of an unchanged count, then silence
    assert len(sends(b.tick(0.36), Receipts)) == 1
    assert sends(b.tick(0.47), Receipts) == [] and b.next_deadline() > 0.47


def test_graft_prune_and_backoff() -> None:
    a = subscribed("a", "")
    a.peer_connected(PK["b"], 0.0)
    a.handle_message(PK["b"], Graft(T), 0.0)
    assert a.mesh_peers(T) == [PK["b"]]
    a.handle_message(PK["b"], Prune(T, 60.0), 1.0)
    assert a.mesh_peers(T) == []
    # b grafting during its backoff is answered with a prune
    out = a.handle_message(PK["b"], Graft(T), 2.0)
    assert sends(out, Prune) and a.mesh_peers(T) == []
    # an unsubscribed router refuses grafts
    u = router("c")
    assert u.handle_message(PK["b"], Graft(T), 0.0) == []  # not connected: ignored
    u.peer_connected(PK["b"], 0.0)
    out = u.handle_message(PK["b"], Graft(T), 0.0)
    assert [s.message for s in sends(out, Prune)] == [Prune(T, 60.0)]


def test_mesh_stays_within_degree_bounds_at_heartbeat() -> None:
    cfg = GossipConfig(d=2, d_lo=1, d_hi=3)
    a = router("a", cfg)
    a.subscribe(T, 0.0)
    peers = [bytes([i]) * 32 for i in range(1, 9)]
    for p in peers:
        a.peer_connected(p, 0.0)
        a.handle_message(p, Subscriptions(subscribe=(T,)), 0.0)
        a.handle_message(p, Graft(T), 0.0)
    assert len(a.mesh_peers(T)) == 8
    out = a.tick(2.0)
    assert len(a.mesh_peers(T)) == 2 and len(sends(out, Prune)) == 6
    for p in a.mesh_peers(T):
        a.peer_disconnected(p, 2.5)
    out = a.tick(3.0)
    assert len(a.mesh_peers(T)) == 0  # all other candidates are in prune backoff
    out = a.tick(63.0)
    assert len(a.mesh_peers(T)) == 2
    # the new mesh peers are grafted (this heartbeat also re-sends GRAFT to the mesh)
    assert {s.to for s in sends(out, Graft)} == set(a.mesh_peers(T))


def test_seen_cache_is_bounded_and_expires() -> None:
    seen = SeenCache(ttl_s=10.0, max_entries=3)
    for i in range(5):
        seen.add(bytes([i]) * 32, T, None, float(i))
    assert len(seen) == 3
    assert seen.get(bytes([0]) * 32, 4.0) is None  # evicted (oldest first)
    assert seen.get(bytes([4]) * 32, 4.0) is not None
    assert seen.get(bytes([2]) * 32, 12.0) is None  # expired
    seen.expire(13.5)
    assert len(seen) == 1


def test_router_seen_cache_bound_holds_under_a_flood() -> None:
    cfg = GossipConfig(seen_max=50, peer_msgs_burst=1e9, peer_bytes_burst=1e12)
    a = subscribed("a", "b", cfg)
    for i in range(200):
        a.handle_message(PK["b"], Publish(signed("b", b"x", seqno=i)), 0.0)
    assert a.statistics()["seen"] == 50


def test_message_cache_windows() -> None:
    mc = MessageCache(windows=3, gossip_windows=2)
    m1, m2 = signed("a", b"1", 1), signed("a", b"2", 2)
    mc.put(b"1" * 32, m1)
    mc.shift()
    mc.put(b"2" * 32, m2)
    assert mc.gossip_ids(T) == [b"2" * 32, b"1" * 32]
    mc.shift()
    assert mc.gossip_ids(T) == [b"2" * 32]
    assert mc.get(b"1" * 32) is m1  # still answerable by IWANT
    mc.shift()
    assert mc.get(b"1" * 32) is None and len(mc) == 1


def test_token_bucket() -> None:
    tb = TokenBucket(rate=2.0, burst=4.0, now=0.0)
    assert all(tb.take(1, 0.0) for _ in range(4)) and not tb.take(1, 0.0)
    assert tb.wait_s(1, 0.0) == 0.5
    assert tb.take(1, 0.5)
    assert tb.wait_s(5, 0.5) == float("inf")


junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.binary(max_size=70),
    st.text(max_size=200),
    st.floats(allow_nan=True),
)
ids = st.one_of(st.lists(st.binary(min_size=32, max_size=32), max_size=5).map(tuple), junk)
gmsg = st.builds(GossipMessage, junk, junk, junk, junk, junk)
wire = st.one_of(
    st.builds(Publish, st.one_of(gmsg, junk)),
    st.builds(IHave, junk, ids),
    st.builds(IWant, ids),
    st.builds(Graft, junk),
    st.builds(Prune, junk, junk),
    st.builds(Subscriptions, st.one_of(st.lists(junk, max_size=3).map(tuple), junk), junk),
    st.builds(Throttle, junk, ids),
    st.builds(
        Receipts, st.one_of(st.lists(st.builds(Receipt, junk, junk), max_size=3).map(tuple), junk)
    ),
    junk,
)


@settings(max_examples=400, deadline=None)
@given(wire)
def test_router_survives_any_message(msg: object) -> None:
    a = subscribed("a", "b")
    assert a.handle_message(PK["c"], Graft(T), 0.0) == []  # unconnected peer
    out = a.handle_message(PK["b"], msg, 0.0)  # type: ignore[arg-type]
    try:
        validate_message(msg, WireLimits())
    except GossipProtocolError:
        assert len(out) == 1 and isinstance(out[0], PeerMisbehaved)
    a.tick(5.0)


@settings(max_examples=200, deadline=None)
@given(wire)
def test_validation_raises_only_the_typed_error(msg: object) -> None:
    with contextlib.suppress(GossipProtocolError):
        validate_message(msg, WireLimits())
