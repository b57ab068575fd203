"""Routing table maintenance: k-buckets, liveness-checked replacement, refresh."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from colonymesh.node.dht.effects import DhtConfig, SendMessage
from colonymesh.node.dht.ids import bucket_index, node_id_of, random_id_in_bucket
from colonymesh.node.dht.messages import PeerInfo, Ping, Pong
from colonymesh.node.dht.node import DhtNode
from colonymesh.node.dht.routing import RoutingTable

SELF = bytes(32)


def keys_in_bucket(self_key: bytes, index: int, n: int, seed: int = 1) -> list[bytes]:
    """`n` random public keys that land in bucket `index` of `self_key`."""
    rng = random.Random(seed)
    sid = node_id_of(self_key)
    out: list[bytes] = []
    while len(out) < n:
        key = rng.randbytes(32)
        if bucket_index(sid, node_id_of(key)) == index:
            out.append(key)
    return out


def test_bucket_fills_to_k_then_caches_newcomers_and_probes_stale_lrs() -> None:
    table = RoutingTable(SELF, k=4, replacements_max=2, probe_after_s=60.0)
    keys = keys_in_bucket(SELF, 255, 7)
    for i, key in enumerate(keys[:4]):
        assert table.observe(PeerInfo(key), now=float(i)) is None
    assert table.bucket_keys(255) == keys[:4]
    # full, LRS seen recently: newcomer is cached, no probe
    assert table.observe(PeerInfo(keys[4]), now=10.0) is None
    assert table.replacement_keys(255) == [keys[4]]
    # later the LRS is stale: the next newcomer triggers a probe of the LRS
    probe = table.observe(PeerInfo(keys[5]), now=100.0)
    assert probe == PeerInfo(keys[0])
    # one probe per bucket at a time
    assert table.observe(PeerInfo(keys[6]), now=101.0) is None
    # replacement cache is bounded and keeps the most recent
    assert table.replacement_keys(255) == [keys[5], keys[6]]
    assert len(table) == 4


def test_probe_answered_keeps_the_lrs() -> None:
    table = RoutingTable(SELF, k=3, probe_after_s=0.0)
    keys = keys_in_bucket(SELF, 255, 4)
    for key in keys[:3]:
        table.observe(PeerInfo(key), now=0.0)
    probe = table.observe(PeerInfo(keys[3]), now=5.0)
    assert probe is not None and probe.public_key == keys[0]
    table.probe_answered(keys[0], now=6.0)
    assert table.bucket_keys(255) == [keys[1], keys[2], keys[0]]  # LRS moved to MRU end
    assert keys[3] not in table
    assert table.replacement_keys(255) == [keys[3]]


def test_probe_timeout_evicts_lrs_and_promotes_newcomer() -> None:
    table = RoutingTable(SELF, k=3, probe_after_s=0.0)
    keys = keys_in_bucket(SELF, 255, 4)
    for key in keys[:3]:
        table.observe(PeerInfo(key), now=0.0)
    probe = table.observe(PeerInfo(keys[3]), now=5.0)
    assert probe is not None
    table.probe_failed(probe.public_key, now=15.0)
    assert keys[0] not in table
    assert table.bucket_keys(255) == [keys[1], keys[2], keys[3]]
    assert table.replacement_keys(255) == []


def test_request_failures_replace_a_contact_once_a_replacement_exists() -> None:
    table = RoutingTable(SELF, k=2, failures_max=2, probe_after_s=1e9)
    keys = keys_in_bucket(SELF, 255, 3)
    table.observe(PeerInfo(keys[0]), 0.0)
    table.observe(PeerInfo(keys[1]), 0.0)
    table.record_failure(keys[1], 1.0)
    table.record_failure(keys[1], 2.0)
    # no replacement yet: kept, but no longer handed out
    assert keys[1] in table
    assert [p.public_key for p in table.closest(0, 5)] == [keys[0]]
    # a newcomer finds the LRS... keys[0] alive; keys[1] dead → the dead one goes first
    table.observe(PeerInfo(keys[2]), 3.0)
    table.record_failure(keys[1], 4.0)
    assert keys[1] not in table and keys[2] in table


def test_dead_lrs_is_replaced_without_a_probe() -> None:
    table = RoutingTable(SELF, k=2, failures_max=1, replacements_max=0, probe_after_s=0.0)
    keys = keys_in_bucket(SELF, 255, 3)
    table.observe(PeerInfo(keys[0]), 0.0)
    table.observe(PeerInfo(keys[1]), 0.0)
    table.record_failure(keys[0], 1.0)
    assert table.observe(PeerInfo(keys[2]), 2.0) is None
    assert keys[0] not in table


def test_own_key_is_never_stored() -> None:
    table = RoutingTable(SELF)
    assert table.observe(PeerInfo(SELF), 0.0) is None
    assert len(table) == 0


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 120), st.integers(1, 30))
def test_closest_is_brute_force_closest_of_contents(seed: int, n_peers: int, n: int) -> None:
    rng = random.Random(seed)
    table = RoutingTable(SELF, k=4)
    for _ in range(n_peers):
        table.observe(PeerInfo(rng.randbytes(32)), 0.0)
    stored = [p.public_key for p in table.peers()]
    sid = node_id_of(SELF)
    # random targets, our own id, and targets right next to us
    for target in (rng.getrandbits(256), sid, sid ^ 1, sid ^ (1 << 200)):
        expect = sorted(stored, key=lambda k: node_id_of(k) ^ target)[:n]
        assert [p.public_key for p in table.closest(target, n)] == expect
    # bucket invariant: at most k per bucket, each in its right bucket
    assert all(size <= 4 for size in table.bucket_sizes().values())
    for index in table.bucket_sizes():
        for key in table.bucket_keys(index):
            assert bucket_index(sid, node_id_of(key)) == index


def test_refresh_names_untouched_buckets_once_per_interval() -> None:
    table = RoutingTable(SELF, refresh_interval_s=3600.0, now=0.0)
    key = keys_in_bucket(SELF, 250, 1)[0]
    table.observe(PeerInfo(key), 0.0)
    assert table.due_refreshes(100.0) == []
    assert table.next_refresh_at() == 3600.0
    # a lookup into bucket 252 counts as its refresh
    table.touch(random_id_in_bucket(node_id_of(SELF), 252, random.Random(3)), 1800.0)
    due = table.due_refreshes(3600.0)
    assert due == [250, 251, *range(253, 256)]
    assert table.due_refreshes(3601.0) == []
    assert table.due_refreshes(5400.0) == [252]


def test_random_id_in_bucket_lands_in_that_bucket() -> None:
    rng = random.Random(7)
    sid = node_id_of(SELF)
    for index in (0, 1, 17, 128, 255):
        for _ in range(20):
            assert bucket_index(sid, random_id_in_bucket(sid, index, rng)) == index


def _node(key: bytes, **cfg: object) -> DhtNode:
    config = DhtConfig(**cfg)  # type: ignore[arg-type]
    return DhtNode(
        PeerInfo(key),
        verify=lambda pk, m, s: True,
        is_member=lambda pk: True,
        rng=random.Random(1),
        config=config,
    )


def test_node_pings_lrs_and_keeps_it_when_it_answers() -> None:
    node = _node(SELF, k=2, probe_after_s=0.0, request_timeout_s=5.0)
    keys = keys_in_bucket(SELF, 255, 3)
    for key in keys[:2]:
        assert node.handle_message(PeerInfo(key), Ping(1), 0.0) == [
            SendMessage(PeerInfo(key), Pong(1))
        ]
    out = node.handle_message(PeerInfo(keys[2]), Ping(2), 1.0)
    pings = [e for e in out if isinstance(e, SendMessage) and isinstance(e.message, Ping)]
    assert len(pings) == 1 and pings[0].to.public_key == keys[0]
    assert node.next_deadline() == 6.0
    node.handle_message(PeerInfo(keys[0]), Pong(pings[0].message.request_id), 2.0)
    node.tick(10.0)
    assert keys[0] in node.table and keys[2] not in node.table


def test_node_evicts_lrs_when_ping_times_out() -> None:
    node = _node(SELF, k=2, probe_after_s=0.0, request_timeout_s=5.0)
    keys = keys_in_bucket(SELF, 255, 3)
    for key in keys[:2]:
        node.handle_message(PeerInfo(key), Ping(1), 0.0)
    out = node.handle_message(PeerInfo(keys[2]), Ping(2), 1.0)
    assert any(isinstance(e, SendMessage) and isinstance(e.message, Ping) for e in out)
    node.tick(5.9)
    assert keys[0] in node.table
    node.tick(6.0)
    assert keys[0] not in node.table and keys[2] in node.table
    # a late pong for the expired probe matches nothing; its sender is a newcomer again
    node.handle_message(PeerInfo(keys[0]), Pong(12345), 7.0)
    assert keys[0] not in node.table
    assert node.table.replacement_keys(255) == [keys[0]]


def test_a_probe_timeout_does_not_evict_a_contact_heard_from_meanwhile() -> None:
    node = _node(SELF, k=2, probe_after_s=0.0, request_timeout_s=5.0)
    keys = keys_in_bucket(SELF, 255, 3)
    for key in keys[:2]:
        node.handle_message(PeerInfo(key), Ping(1), 0.0)
    node.handle_message(PeerInfo(keys[2]), Ping(2), 1.0)  # probe of keys[0] starts
    node.handle_message(PeerInfo(keys[0]), Ping(3), 2.0)  # keys[0] talks: alive
    node.tick(6.0)  # the ping itself was lost and times out
    assert keys[0] in node.table


def test_node_refreshes_stale_buckets_with_lookups_into_them() -> None:
    from colonymesh.node.dht.messages import FindNode

    node = _node(SELF, refresh_interval_s=3600.0, refresh_on_bootstrap=False)
    keys = keys_in_bucket(SELF, 255, 2) + keys_in_bucket(SELF, 254, 1)
    for key in keys:
        node.handle_message(PeerInfo(key), Ping(1), 0.0)
    assert node.next_deadline() <= 3600.0
    assert not [e for e in node.tick(1000.0) if isinstance(e, SendMessage)]
    out = node.tick(3600.0)
    finds = [e.message for e in out if isinstance(e, SendMessage)]
    targets = {
        bucket_index(node_id_of(SELF), int.from_bytes(m.target, "big"))
        for m in finds
        if isinstance(m, FindNode)
    }
    assert targets == {254, 255}  # one random-id lookup per stale bucket
    assert node.statistics()["operations"] == 2


def test_operations_are_bounded() -> None:
    import pytest

    from colonymesh.node.dht.effects import DhtBusy

    node = _node(SELF, lookups_max=2)
    node.handle_message(PeerInfo(keys_in_bucket(SELF, 255, 1)[0]), Ping(1), 0.0)
    node.find_node(bytes(32), 0.0)
    node.get_providers(b"k", 0.0)
    with pytest.raises(DhtBusy):
        node.find_node(bytes(32), 0.0)


def test_a_table_of_failing_contacts_still_hands_them_out() -> None:
    """A peer whose only contact (its bootstrap) timed out must ask it again: the answer
    is what clears the failures. Seen with 20 node processes starting under load."""
    table = RoutingTable(SELF, k=2, failures_max=2, probe_after_s=1e9)
    keys = keys_in_bucket(SELF, 255, 2)
    table.observe(PeerInfo(keys[0]), 0.0)
    table.record_failure(keys[0], 1.0)
    table.record_failure(keys[0], 2.0)
    assert [p.public_key for p in table.closest(0, 5)] == [keys[0]]
    table.observe(PeerInfo(keys[1]), 3.0)  # a live one again: the failing one steps aside
    assert [p.public_key for p in table.closest(0, 5)] == [keys[1]]
    table.observe(PeerInfo(keys[0]), 4.0)  # it answered: failures cleared
    assert sorted(p.public_key for p in table.closest(0, 5)) == sorted(keys)
