"""`DhtNode`: one peer's Kademlia, composing routing table, lookups and record stores.

What it owns: the routing table, the value and provider stores, the operations in
progress (lookups, then stores), the requests in flight, and the keys this node
itself provides or publishes (to republish them).

How it works: every message from a peer first updates the routing table (which
may ask for a liveness probe of a full bucket's least-recently-seen contact: a
PING). Requests are answered at once from local state. Responses are matched to
the request in flight by `request_id` *and* sender, then fed to the operation that
sent it. An operation is a lookup (`Lookup`, or `DisjointLookup` with
`disjoint_paths > 1`); PUT_VALUE and PROVIDE then send the record to the `k`
closest peers found and count acknowledgements. `tick(now)` expires requests,
starts bucket refreshes, expires records and republishes this node's own.

Invariants: at most `lookups_max` operations and `probes_max` probes at once; each
lookup has at most `alpha` requests per path in flight plus its late ones, and a
store at most `k`: pending requests are bounded by
`lookups_max * (alpha * disjoint_paths + k) + probes_max`. Nothing from the network
is looked at before `validate_message` passed; a malformed message yields a
`PeerMisbehaved` event and changes nothing else.

Contract for the driver: deliver every `SendMessage`; call `handle_message` for
every DHT message received, with the sender's `PeerInfo` as the authenticated
transport knows it, and `routable=False` when the sender is a client (it
announced no listen address: answer it, never put it in the table, so
short-lived CLI peers do not linger in routing tables); call `tick(now)` no later than `next_deadline()`. `now` never
goes backwards.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, assert_never

from colonymesh.node.dht.effects import (
    DhtBusy,
    DhtConfig,
    LookupFinished,
    OpKind,
    Output,
    PeerMisbehaved,
    ProvidersLookupFinished,
    RecordRefused,
    SendMessage,
    StoreFinished,
    ValueLookupFinished,
)
from colonymesh.node.dht.ids import (
    bucket_index,
    id_from_bytes,
    id_to_bytes,
    key_id,
    node_id_of,
    random_id_in_bucket,
)
from colonymesh.node.dht.lookup import DisjointLookup, Lookup, Step
from colonymesh.node.dht.messages import (
    AddProvider,
    AddProviderResult,
    DhtProtocolError,
    FindNode,
    FindNodeResult,
    GetProviders,
    GetProvidersResult,
    GetValue,
    GetValueResult,
    Message,
    PeerInfo,
    Ping,
    Pong,
    PutValue,
    PutValueResult,
    ValueRecord,
    validate_message,
    validate_peer,
)
from colonymesh.node.dht.ops import Op, Pending, ReqKind
from colonymesh.node.dht.records import (
    IsMember,
    ProviderStore,
    RecordPolicy,
    Rejection,
    ValueStore,
    Verify,
    check_value_record,
    record_order,
)
from colonymesh.node.dht.routing import RoutingTable
from colonymesh.node.dht.serve import answer_request

if TYPE_CHECKING:
    import random

log = logging.getLogger("colonymesh.node.dht")

_U64 = 1 << 64


class DhtNode:
    __slots__ = (
        "_expire_at",
        "_is_member",
        "_next_op",
        "_next_rid",
        "_ops",
        "_pending",
        "_probes",
        "_provided",
        "_published",
        "_rng",
        "_verify",
        "config",
        "providers",
        "self_info",
        "table",
        "values",
    )

    def __init__(
        self,
        self_info: PeerInfo,
        *,
        verify: Verify,
        is_member: IsMember,
        rng: random.Random,
        config: DhtConfig | None = None,
        record_policy: RecordPolicy | None = None,
        now: float = 0.0,
    ) -> None:
        self.config = cfg = config if config is not None else DhtConfig()
        self.self_info = self_info
        self.table = RoutingTable(
            self_info.public_key,
            k=cfg.k,
            replacements_max=cfg.replacements_max,
            refresh_interval_s=cfg.refresh_interval_s,
            probe_after_s=cfg.probe_after_s,
            failures_max=cfg.failures_max,
            now=now,
        )
        self.values = ValueStore(verify, is_member, cfg.records, record_policy)
        self.providers = ProviderStore(cfg.records)
        self._verify = verify
        self._is_member = is_member
        self._rng = rng
        self._ops: dict[int, Op] = {}
        self._pending: dict[int, Pending] = {}
        self._probes = 0
        self._next_op = 1
        self._next_rid = rng.getrandbits(63)
        self._provided: dict[bytes, float] = {}  # key -> next republish
        self._published: dict[bytes, tuple[ValueRecord, float]] = {}
        self._expire_at = now + cfg.expire_interval_s

    # --- operations started by the owner ------------------------------------------

    def bootstrap(self, peers: list[PeerInfo], now: float) -> tuple[int, list[Output]]:
        """Join through `peers`: add them, then look up our own id."""
        for peer in peers:
            if peer.public_key != self.self_info.public_key:
                probe = self.table.observe(peer, now)
                if probe is not None:
                    self.table.cancel_probe(probe.public_key)
        return self._start(OpKind.BOOTSTRAP, self.table.self_id, b"", now)

    def find_node(self, target: bytes, now: float) -> tuple[int, list[Output]]:
        return self._start(OpKind.FIND_NODE, id_from_bytes(target), b"", now)

    def get_value(self, key: bytes, now: float) -> tuple[int, list[Output]]:
        return self._start(OpKind.GET_VALUE, key_id(key), key, now)

    def get_providers(self, key: bytes, now: float) -> tuple[int, list[Output]]:
        return self._start(OpKind.GET_PROVIDERS, key_id(key), key, now)

    def put_value(self, record: ValueRecord, now: float) -> tuple[int, list[Output]]:
        """Store a signed record locally and at the k closest peers; republished until
        replaced by a newer one."""
        why = self.values.put(record, now)
        if why is not None:
            raise RecordRefused(why.value)
        self._published[record.key] = (record, now + self.config.value_republish_s)
        return self._start(OpKind.PUT_VALUE, key_id(record.key), record.key, now, record)

    def provide(self, key: bytes, now: float) -> tuple[int, list[Output]]:
        """Announce this node as a provider of `key`; republished until `stop_providing`."""
        if not self.providers.add(key, self.self_info, now):
            raise RecordRefused(Rejection.FULL.value)
        self._provided[key] = now + self.config.provider_republish_s
        return self._start(OpKind.PROVIDE, key_id(key), key, now)

    def stop_providing(self, key: bytes) -> None:
        self._provided.pop(key, None)

    # --- inputs -------------------------------------------------------------------

    def handle_message(
        self, from_peer: PeerInfo, msg: Message, now: float, *, routable: bool = True
    ) -> list[Output]:
        try:
            validate_peer(from_peer, self.config.wire)
            validate_message(msg, self.config.wire)
        except DhtProtocolError as exc:
            sender = from_peer.public_key if isinstance(from_peer.public_key, bytes) else b""
            log.info("dht: bad message from %s: %s", sender.hex()[:16], exc)
            return [PeerMisbehaved(sender, str(exc))]
        if from_peer.public_key == self.self_info.public_key:
            return []
        out: list[Output] = []
        if routable:
            self._observe(from_peer, now, out)
        match msg:
            case Ping() | FindNode() | GetValue() | PutValue() | AddProvider() | GetProviders():
                out.extend(
                    answer_request(
                        from_peer,
                        msg,
                        now,
                        self.table,
                        self.values,
                        self.providers,
                        self._is_member,
                        self.config.k,
                    )
                )
            case (
                Pong()
                | FindNodeResult()
                | GetValueResult()
                | PutValueResult()
                | AddProviderResult()
                | GetProvidersResult()
            ):
                self._on_response(from_peer, msg, now, out)
            case _:
                assert_never(msg)
        return out

    def tick(self, now: float) -> list[Output]:
        out: list[Output] = []
        self._expire_requests(now, out)
        for op in list(self._ops.values()):
            lookup = op.lookup
            if lookup is not None and not lookup.finished and lookup.next_deadline() <= now:
                self._after_step(op, lookup.on_timeout(now), now, out)
        for index in self.table.due_refreshes(now):
            if len(self._ops) < self.config.lookups_max:
                target = random_id_in_bucket(self.table.self_id, index, self._rng)
                out.extend(self._start(OpKind.REFRESH, target, b"", now)[1])
        if now >= self._expire_at:
            self.values.expire(now)
            self.providers.expire(now)
            self._expire_at = now + self.config.expire_interval_s
        self._republish(now, out)
        return out

    def next_deadline(self) -> float:
        # asked after every input by the driver: plain loops, no generators (measured:
        # 17% of a 3,000-peer simulation's time went to the generator-and-min form)
        deadline = self._expire_at
        refresh = self.table.next_refresh_at()
        if refresh < deadline:
            deadline = refresh
        for p in self._pending.values():
            if p.deadline < deadline:
                deadline = p.deadline
        for due in self._provided.values():
            if due < deadline:
                deadline = due
        for _, due in self._published.values():
            if due < deadline:
                deadline = due
        for op in self._ops.values():
            lookup = op.lookup
            if lookup is not None and not lookup.finished:
                due = lookup.next_deadline()
                if due < deadline:
                    deadline = due
        return deadline

    def statistics(self) -> dict[str, int]:
        return {
            "contacts": len(self.table),
            "operations": len(self._ops),
            "pending_requests": len(self._pending),
            "values": len(self.values),
            "provider_records": len(self.providers),
        }

    # --- internals: operations ----------------------------------------------------

    def _start(
        self,
        kind: OpKind,
        target: int,
        key: bytes,
        now: float,
        record: ValueRecord | None = None,
    ) -> tuple[int, list[Output]]:
        cfg = self.config
        if len(self._ops) >= cfg.lookups_max:
            raise DhtBusy(f"{len(self._ops)} operations in progress (lookups_max)")
        op = Op(self._next_op, kind, target, key)
        self._next_op += 1
        op.record = record
        if kind is OpKind.GET_VALUE:
            op.best = self.values.get(key, now)
        elif kind is OpKind.GET_PROVIDERS:
            for info in self.providers.get(key, now, cfg.k):
                op.providers[info.public_key] = info
        seeds = self.table.closest(target, cfg.k)
        if cfg.disjoint_paths > 1:
            op.lookup = DisjointLookup(
                target,
                seeds,
                paths=cfg.disjoint_paths,
                k=cfg.k,
                alpha=cfg.alpha,
                request_timeout_s=cfg.request_timeout_s,
                peers_max=cfg.lookup_peers_max,
                self_key=self.self_info.public_key,
            )
        else:
            op.lookup = Lookup(
                target,
                seeds,
                k=cfg.k,
                alpha=cfg.alpha,
                request_timeout_s=cfg.request_timeout_s,
                peers_max=cfg.lookup_peers_max,
                self_key=self.self_info.public_key,
            )
        self._ops[op.id] = op
        self.table.touch(target, now)
        out: list[Output] = []
        self._after_step(op, op.lookup.start(now), now, out)
        return op.id, out

    def _rid(self) -> int:
        rid = self._next_rid
        self._next_rid = (rid + 1) % _U64
        return rid

    def _request_message(self, op: Op, rid: int) -> Message:
        match op.kind:
            case OpKind.GET_VALUE:
                return GetValue(rid, op.key)
            case OpKind.GET_PROVIDERS:
                return GetProviders(rid, op.key)
            case (
                OpKind.FIND_NODE
                | OpKind.BOOTSTRAP
                | OpKind.REFRESH
                | OpKind.PUT_VALUE
                | OpKind.PROVIDE
            ):
                return FindNode(rid, id_to_bytes(op.target))
            case _:
                assert_never(op.kind)

    def _after_step(self, op: Op, step: Step, now: float, out: list[Output]) -> None:
        for key in step.failed:
            rid = op.rids.pop(key, None)
            if rid is not None:
                self._pending.pop(rid, None)
            self.table.record_failure(key, now)
        for info in step.query:
            rid = self._rid()
            self._pending[rid] = Pending(info, ReqKind.LOOKUP, op.id, math.inf)
            op.rids[info.public_key] = rid
            out.append(SendMessage(info, self._request_message(op, rid)))
        if op.lookup is not None and op.lookup.finished:
            self._lookup_done(op, now, out)

    def _lookup_done(self, op: Op, now: float, out: list[Output]) -> None:
        lookup = op.lookup
        if lookup is None:
            raise RuntimeError("operation without a lookup")
        for rid in op.rids.values():
            self._pending.pop(rid, None)
        op.rids.clear()
        op.lookup = None
        closest = tuple(lookup.result())
        hops, queried = lookup.hops, lookup.queried
        match op.kind:
            case OpKind.FIND_NODE | OpKind.REFRESH | OpKind.BOOTSTRAP:
                del self._ops[op.id]
                target = id_to_bytes(op.target)
                out.append(LookupFinished(op.id, op.kind, target, closest, hops, queried))
                if op.kind is OpKind.BOOTSTRAP and self.config.refresh_on_bootstrap:
                    self._stale_far_buckets()
            case OpKind.GET_VALUE:
                del self._ops[op.id]
                self._correct_stale(op, closest, now, out)
                out.append(ValueLookupFinished(op.id, op.key, op.best, hops, queried))
            case OpKind.GET_PROVIDERS:
                del self._ops[op.id]
                found = tuple(op.providers.values())
                out.append(ProvidersLookupFinished(op.id, op.key, found, hops, queried))
            case OpKind.PUT_VALUE | OpKind.PROVIDE:
                self._store_at(op, closest, now, out)
            case _:
                assert_never(op.kind)

    def _stale_far_buckets(self) -> None:
        """Kademlia join: refresh every bucket farther than the closest neighbour."""
        nearest = self.table.closest(self.table.self_id, 1)
        if nearest:
            idx = bucket_index(self.table.self_id, node_id_of(nearest[0].public_key))
            self.table.mark_all_stale(idx + 1)

    def _correct_stale(
        self, op: Op, closest: tuple[PeerInfo, ...], now: float, out: list[Output]
    ) -> None:
        """Send the newest record to close peers that answered with an older one or none."""
        best = op.best
        if best is None:
            return
        for info in closest:
            had = op.answers.get(info.public_key, best)
            if had is None or record_order(had) < record_order(best):
                rid = self._rid()
                deadline = now + self.config.request_timeout_s
                self._pending[rid] = Pending(info, ReqKind.STORE, -1, deadline)
                out.append(SendMessage(info, PutValue(rid, best)))

    def _store_at(
        self, op: Op, closest: tuple[PeerInfo, ...], now: float, out: list[Output]
    ) -> None:
        deadline = now + self.config.request_timeout_s
        for info in closest:
            rid = self._rid()
            self._pending[rid] = Pending(info, ReqKind.STORE, op.id, deadline)
            if op.kind is OpKind.PUT_VALUE and op.record is not None:
                out.append(SendMessage(info, PutValue(rid, op.record)))
            else:
                out.append(SendMessage(info, AddProvider(rid, op.key, self.self_info)))
        op.attempted = op.outstanding = len(closest)
        self._maybe_stored(op, out)

    def _maybe_stored(self, op: Op, out: list[Output]) -> None:
        if op.outstanding == 0:
            self._ops.pop(op.id, None)
            out.append(StoreFinished(op.id, op.kind, op.key, op.stored, op.attempted))

    # --- internals: messages ------------------------------------------------------

    def _observe(self, peer: PeerInfo, now: float, out: list[Output]) -> None:
        probe = self.table.observe(peer, now)
        if probe is None:
            return
        if self._probes >= self.config.probes_max:
            self.table.cancel_probe(probe.public_key)
            return
        rid = self._rid()
        deadline = now + self.config.request_timeout_s
        self._pending[rid] = Pending(probe, ReqKind.PROBE, -1, deadline)
        self._probes += 1
        out.append(SendMessage(probe, Ping(rid)))

    def _on_response(
        self,
        peer: PeerInfo,
        msg: Pong
        | FindNodeResult
        | GetValueResult
        | PutValueResult
        | AddProviderResult
        | GetProvidersResult,
        now: float,
        out: list[Output],
    ) -> None:
        pending = self._pending.get(msg.request_id)
        if pending is None or pending.peer.public_key != peer.public_key:
            return  # late (already timed out) or unsolicited: nothing to match
        del self._pending[msg.request_id]
        match pending.kind:
            case ReqKind.PROBE:
                self._probes -= 1
                self.table.probe_answered(peer.public_key, now)
            case ReqKind.STORE:
                op = self._ops.get(pending.op_id)
                if op is not None:
                    ok = isinstance(msg, PutValueResult | AddProviderResult) and msg.stored
                    op.stored += int(ok)
                    op.outstanding -= 1
                    self._maybe_stored(op, out)
            case ReqKind.LOOKUP:
                op = self._ops.get(pending.op_id)
                if op is not None and op.lookup is not None:
                    op.rids.pop(peer.public_key, None)
                    self._on_lookup_response(op, op.lookup, peer, msg, now, out)
            case _:
                assert_never(pending.kind)

    def _on_lookup_response(
        self,
        op: Op,
        lookup: Lookup | DisjointLookup,
        peer: PeerInfo,
        msg: Message,
        now: float,
        out: list[Output],
    ) -> None:
        key = peer.public_key
        match msg:
            case FindNodeResult(closer=closer) if op.kind not in (
                OpKind.GET_VALUE,
                OpKind.GET_PROVIDERS,
            ):
                step = lookup.on_response(key, closer, now)
            case GetValueResult(record=record, closer=closer) if op.kind is OpKind.GET_VALUE:
                self._take_record(op, key, record, out)
                step = lookup.on_response(key, closer, now)
                quorum = self.config.value_quorum
                if quorum and op.found >= quorum and not lookup.finished:
                    lookup.finish()
            case GetProvidersResult(providers=found, closer=closer) if (
                op.kind is OpKind.GET_PROVIDERS
            ):
                for info in found:
                    if len(op.providers) < self.config.records.providers_per_key_max:
                        op.providers.setdefault(info.public_key, info)
                step = lookup.on_response(key, closer, now)
                if len(op.providers) >= self.config.k and not lookup.finished:
                    lookup.finish()
            case _:
                out.append(PeerMisbehaved(key, f"{type(msg).__name__} to a {op.kind.value}"))
                step = lookup.on_failure(key, now)
        self._after_step(op, step, now, out)

    def _take_record(
        self, op: Op, peer: bytes, record: ValueRecord | None, out: list[Output]
    ) -> None:
        if record is None:
            op.answers[peer] = None
            return
        why: Rejection | None
        if record.key != op.key:
            why = Rejection.WRONG_KEY
        else:
            why = check_value_record(
                record,
                self._verify,
                self._is_member,
                self.config.records.value_bytes_max,
                self.values.policy,
            )
        if why is not None:
            out.append(PeerMisbehaved(peer, f"served a refused record: {why.value}"))
            op.answers[peer] = None
            return
        op.answers[peer] = record
        op.found += 1
        if op.best is None or record_order(op.best) < record_order(record):
            op.best = record

    def _expire_requests(self, now: float, out: list[Output]) -> None:
        expired = [rid for rid, p in self._pending.items() if p.deadline <= now]
        for rid in expired:
            pending = self._pending.pop(rid)
            key = pending.peer.public_key
            match pending.kind:
                case ReqKind.PROBE:
                    self._probes -= 1
                    self.table.probe_failed(key, now)
                case ReqKind.STORE:
                    self.table.record_failure(key, now)
                    op = self._ops.get(pending.op_id)
                    if op is not None:
                        op.outstanding -= 1
                        self._maybe_stored(op, out)
                case ReqKind.LOOKUP:
                    pass  # lookups own their deadlines (never reached: deadline is inf)
                case _:
                    assert_never(pending.kind)

    def _republish(self, now: float, out: list[Output]) -> None:
        cfg = self.config
        for key, due in list(self._provided.items()):
            if due <= now and len(self._ops) < cfg.lookups_max:
                self.providers.add(key, self.self_info, now)
                self._provided[key] = now + cfg.provider_republish_s
                out.extend(self._start(OpKind.PROVIDE, key_id(key), key, now)[1])
        for key, (record, due) in list(self._published.items()):
            if due <= now and len(self._ops) < cfg.lookups_max:
                if self.values.put(record, now) is not None:
                    del self._published[key]  # superseded (or its publisher revoked)
                    continue
                self._published[key] = (record, now + cfg.value_republish_s)
                out.extend(self._start(OpKind.PUT_VALUE, key_id(key), key, now, record)[1])
