"""Routing-table invariants under any sequence of observations, probes and failures."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from colonymesh.node.dht.ids import bucket_index, node_id_of
from colonymesh.node.dht.messages import PeerInfo
from colonymesh.node.dht.routing import RoutingTable

SELF = bytes(32)
# a small key pool so that buckets overflow and keys come back
POOL = [bytes([i]) * 32 for i in range(1, 40)]
keys = st.sampled_from(POOL)


class TableMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.table = RoutingTable(SELF, k=3, replacements_max=2, probe_after_s=5.0, failures_max=2)
        self.now = 0.0
        self.probing: dict[int, bytes] = {}

    @rule(key=keys, dt=st.floats(0, 10))
    def observe(self, key: bytes, dt: float) -> None:
        self.now += dt
        index = self._index(key)
        if self.probing.get(index) == key and key in self.table:
            del self.probing[index]  # hearing from the probed contact ends its probe
        probe = self.table.observe(PeerInfo(key), self.now)
        assert key in self.table or key in self.table.replacement_keys(self._index(key))
        if probe is not None:
            index = self._index(probe.public_key)
            assert index not in self.probing, "a second probe in one bucket"
            assert self.table.bucket_keys(index)[0] == probe.public_key  # the LRS
            self.probing[index] = probe.public_key

    @rule(data=st.data())
    def probe_outcome(self, data: st.DataObject) -> None:
        if not self.probing:
            return
        index = data.draw(st.sampled_from(sorted(self.probing)))
        key = self.probing.pop(index)
        if data.draw(st.booleans()):
            self.table.probe_answered(key, self.now)
            assert key in self.table
            assert self.table.bucket_keys(index)[-1] == key
        else:
            had_replacement = bool(self.table.replacement_keys(index))
            self.table.probe_failed(key, self.now)
            assert key not in self.table
            assert len(self.table.bucket_keys(index)) == 3 or not had_replacement

    @rule(key=keys, dt=st.floats(0, 10))
    def stale_probe_fails(self, key: bytes, dt: float) -> None:
        # a ping times out for a contact that has no probe running: nothing happens
        index = self._index(key)
        if self.probing.get(index) == key:
            return
        was_in = key in self.table
        self.table.probe_failed(key, self.now)
        assert (key in self.table) == was_in

    @rule(key=keys)
    def fail(self, key: bytes) -> None:
        self.table.record_failure(key, self.now)
        self._forget_probe_if_gone(key)

    @rule(key=keys)
    def remove(self, key: bytes) -> None:
        self.table.remove(key)
        assert key not in self.table
        self._forget_probe_if_gone(key)

    def _forget_probe_if_gone(self, key: bytes) -> None:
        index = self._index(key)
        if self.probing.get(index) == key and key not in self.table:
            del self.probing[index]

    @staticmethod
    def _index(key: bytes) -> int:
        return bucket_index(node_id_of(SELF), node_id_of(key))

    @invariant()
    def buckets_are_bounded_and_consistent(self) -> None:
        sid = node_id_of(SELF)
        for index, size in self.table.bucket_sizes().items():
            assert size <= 3
            members = self.table.bucket_keys(index)
            spares = self.table.replacement_keys(index)
            assert len(spares) <= 2
            assert not set(members) & set(spares)
            for key in members + spares:
                assert bucket_index(sid, node_id_of(key)) == index
        assert SELF not in self.table


TestTable = TableMachine.TestCase
TestTable.settings = settings(max_examples=60, stateful_step_count=60, deadline=None)
