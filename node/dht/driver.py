"""`DhtService`: the Kademlia core (`DhtNode`) on a real :class:`Peer`.

How it runs. One task owns the core: it sleeps until the core's
`next_deadline()` or until something arrives in its bounded inbox (inbound
messages, or a wake-up after an API call changed the core), then feeds the core
`now = trio.current_time()` and carries out what it returned. API calls
(`find_node`, `get_value`, ...) call the core synchronously (trio never
preempts, so the core is never entered twice at once) and wait on an event the
matching `...Finished` event sets.

Wire. DHT messages travel on one long-lived `/colonymesh/dht/1.0.0` stream per
direction and pair (`StreamLinks`), framed by `colonymesh.node.dht.codec`.
Why streams and not the peer's signed request/response envelopes: the core
already matches responses to requests (by id *and* sender) and owns every
timeout, so a second request layer would duplicate both; and an envelope signs
and verifies every message (two Ed25519 operations per RPC) on a channel the
Noise handshake already authenticates: the transport proves who sent a frame,
the value records inside carry their own signatures. Each new stream opens with
a `Hello` naming the opener's listen addresses, which become its contact's
addresses in our routing table.

Membership. Value records are verified with `verify_signature` and the
publisher must hold a current certificate in `peer.config.membership`. A frame
carrying a record also carries its publisher's certificate (owner-signed, so
self-verifying): the service admits it before the core looks at the record,
which is how a member learns of a publisher it never connected to.

Connections. Peers admitted by the gatekeeper whose addresses we know enter the
routing table at once (they are members; liveness is the table's job, so a
closed connection does not remove a contact).

Bounds: inbox `inbox_max` (overflow dropped, counted), per-destination queues
`queue_max` (dropped, counted), the core's own caps on operations and requests.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar, assert_never

import trio

from colonymesh.node.certs import Certificate, decode_record, encode_record
from colonymesh.node.dht import codec
from colonymesh.node.dht.effects import (
    DhtBusy,
    DhtConfig,
    LookupFinished,
    Output,
    PeerMisbehaved,
    ProvidersLookupFinished,
    SendMessage,
    StoreFinished,
    ValueLookupFinished,
)
from colonymesh.node.dht.ids import id_to_bytes, node_id_of
from colonymesh.node.dht.links import ConnectionWatch, StreamLinks, run_core
from colonymesh.node.dht.messages import (
    GetValueResult,
    Message,
    PeerInfo,
    PutValue,
    ValueRecord,
    value_signing_bytes,
)
from colonymesh.node.dht.node import DhtNode
from colonymesh.node.dht.records import publisher_owned_keys
from colonymesh.node.errors import ColonymeshError, MalformedFrame
from colonymesh.node.identity import peer_id_of, public_key_from_peer_id, verify_signature
from colonymesh.node.peer.peer import Peer
from colonymesh.node.transport import multiaddr
from colonymesh.node.transport.connection import Connection

log = logging.getLogger("colonymesh.node.dht")

PROTOCOL_ID = "/colonymesh/dht/1.0.0"
_WAKE = None
_KNOWN_CERTS_MAX = 4096

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class DhtServiceConfig:
    dht: DhtConfig = field(default_factory=lambda: DhtConfig(request_timeout_s=5.0))
    inbox_max: int = 4096
    queue_max: int = 256
    connect_timeout_s: float = 3.0
    idle_stream_s: float = 60.0
    bootstrap_retry_s: float = 1.0  # while the table is empty after a bootstrap
    # after joining, look up our own id again at doubling intervals up to the cap: a
    # peer that joined early learns of those that joined after it (who told only the
    # peers closest to themselves) without waiting for an hourly bucket refresh
    self_lookup_first_s: float = 2.0
    self_lookup_max_s: float = 600.0
    seed: int | None = None
    # Client mode (libp2p kad's "client"): look things up, never be routed through.
    # The Hello names no address, so remote tables never take this peer in.
    client: bool = False


@dataclass(slots=True)
class DhtStatistics:
    inbox_dropped: int = 0
    malformed: int = 0
    misbehaved: int = 0
    certificates_admitted: int = 0
    certificates_refused: int = 0
    lookups: int = 0


class CertificateCache:
    """Admits certificates carried in frames, verifying each distinct one once."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self._seen: dict[bytes, None] = {}

    def admit(self, raw: tuple[bytes, ...], stats: DhtStatistics) -> None:
        membership = self.peer.config.membership
        for encoded in raw:
            if encoded in self._seen:
                continue
            try:
                certificate = decode_record(Certificate, encoded)
                membership.admit(certificate, self.peer.config.clock())
            except ColonymeshError as error:
                stats.certificates_refused += 1
                log.info("refused a carried certificate: %s", error)
                continue
            stats.certificates_admitted += 1
            self._seen[encoded] = None
            while len(self._seen) > _KNOWN_CERTS_MAX:
                del self._seen[next(iter(self._seen))]

    def of(self, public_key: bytes) -> tuple[bytes, ...]:
        certificate = self.peer.config.membership.known_certificate(public_key)
        return () if certificate is None else (encode_record(certificate),)


def is_member_of(peer: Peer) -> Callable[[bytes], bool]:
    membership, clock = peer.config.membership, peer.config.clock
    return lambda key: membership.certificate_of(key, clock()) is not None


class _Waiter:
    __slots__ = ("done", "result")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.result: Output | None = None


class DhtService:
    """Kademlia for one :class:`Peer`: ``nursery.start(DhtService(peer).run)``."""

    def __init__(self, peer: Peer, config: DhtServiceConfig | None = None) -> None:
        self.peer = peer
        self.config = cfg = config if config is not None else DhtServiceConfig()
        self.stats = DhtStatistics()
        seed = cfg.seed if cfg.seed is not None else int.from_bytes(os.urandom(8), "big")
        self.core = DhtNode(
            PeerInfo(peer.config.keys.public_key, self._own_addrs()),
            verify=verify_signature,
            is_member=is_member_of(peer),
            rng=random.Random(seed),
            config=cfg.dht,
            record_policy=publisher_owned_keys,
            now=trio.current_time(),
        )
        self.certificates = CertificateCache(peer)
        self.links = StreamLinks(
            peer,
            PROTOCOL_ID,
            codec.FRAME_BYTES_MAX,
            self._on_frame,
            opening=lambda: codec.encode(
                codec.Hello(() if cfg.client else self.core.self_info.addrs)
            ),
            queue_max=cfg.queue_max,
            connect_timeout_s=cfg.connect_timeout_s,
            idle_s=cfg.idle_stream_s,
        )
        self.watch = ConnectionWatch(peer, self._connected, lambda _: None)
        self._addrs: dict[bytes, tuple[str, ...]] = {}  # from Hello frames
        self._inbox_tx, self._inbox_rx = trio.open_memory_channel[tuple[PeerInfo, Message] | None](
            cfg.inbox_max
        )
        self._waiters: dict[int, _Waiter] = {}
        self._running = False
        self._joined = trio.Event()

    async def wait_joined(self) -> None:
        """Until the first bootstrap lookup finished with contacts in the table."""
        await self._joined.wait()

    def _own_addrs(self) -> tuple[str, ...]:
        limits = self.config.dht.wire
        return tuple(a for a in self.peer.listen_addrs if len(a) <= limits.addr_chars_max)[
            : limits.addrs_per_peer_max
        ]

    # --- running ------------------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[DhtService] = trio.TASK_STATUS_IGNORED
    ) -> None:
        async with trio.open_nursery() as nursery:
            self.links.start(nursery)
            self.watch.start(nursery)
            self._running = True
            try:
                nursery.start_soon(self._core_loop)
                nursery.start_soon(self._join)
                task_status.started(self)
                await trio.sleep_forever()
            finally:
                self._running = False

    async def _core_loop(self) -> None:
        await run_core(
            self.core, self._inbox_rx, self._take, lambda now: self._carry_out(self.core.tick(now))
        )

    def _take(self, item: tuple[PeerInfo, Message] | None) -> None:
        if item is not None:
            sender, msg = item
            # A sender without listen addresses is a client (see DhtServiceConfig.client).
            routable = bool(sender.addrs)
            self._carry_out(
                self.core.handle_message(sender, msg, trio.current_time(), routable=routable)
            )

    def _wake(self) -> None:
        with suppress(trio.WouldBlock):  # a full inbox: the loop is awake anyway
            self._inbox_tx.send_nowait(_WAKE)

    async def _join(self) -> None:
        """Bootstrap through the configured peers and those already admitted; retry while alone."""
        while True:
            seeds = self._bootstrap_seeds()
            if seeds:
                try:
                    await self._run_op(partial(self.core.bootstrap, seeds))
                except (ColonymeshError, DhtBusy) as error:
                    log.info("dht bootstrap failed: %s", error)
                if len(self.core.table) > 0:
                    log.info("dht joined: %d contacts", len(self.core.table))
                    self._joined.set()
                    break
            await trio.sleep(self.config.bootstrap_retry_s)
        interval = self.config.self_lookup_first_s
        own_id = id_to_bytes(self.core.table.self_id)
        while True:
            await trio.sleep(interval)
            interval = min(interval * 2, self.config.self_lookup_max_s)
            try:
                await self.find_node(own_id)
            except (ColonymeshError, DhtBusy) as error:
                log.info("dht self-lookup failed: %s", error)

    def _bootstrap_seeds(self) -> list[PeerInfo]:
        seeds: dict[bytes, PeerInfo] = {}
        for address in self.peer.config.bootstrap:
            try:
                _, _, named = multiaddr.parse_tcp_address(address)
                if named is not None:
                    key = public_key_from_peer_id(named)
                    seeds[key] = PeerInfo(key, (address,))
            except (ColonymeshError, ValueError):
                continue
        for connection in self.peer.gatekeeper.admitted_connections():
            key = connection.remote_public_key
            addrs = tuple(self.peer.connections.addresses.addresses(connection.remote_peer_id))
            if addrs and key not in seeds:
                seeds[key] = PeerInfo(key, addrs[: self.config.dht.wire.addrs_per_peer_max])
        return list(seeds.values())

    # --- network in ------------------------------------------------------------------

    def _on_frame(self, connection: Connection, frame: bytes) -> None:
        try:
            msg, certificates = codec.decode(frame, self.config.dht.wire)
        except MalformedFrame:
            self.stats.malformed += 1
            raise
        key = connection.remote_public_key
        if isinstance(msg, codec.Hello):
            self._addrs[key] = msg.addrs
            return
        if certificates:
            self.certificates.admit(certificates, self.stats)
        try:
            self._inbox_tx.send_nowait((PeerInfo(key, self._addrs.get(key, ())), msg))
        except trio.WouldBlock:
            self.stats.inbox_dropped += 1

    def _connected(self, peer_id: str, connection: Connection) -> None:
        addrs = tuple(self.peer.connections.addresses.addresses(peer_id))
        if not addrs:
            return  # an inbound peer: its first DHT frame brings its addresses
        info = PeerInfo(
            connection.remote_public_key, addrs[: self.config.dht.wire.addrs_per_peer_max]
        )
        probe = self.core.table.observe(info, trio.current_time())
        if probe is not None:  # a full bucket: keep the old contacts (as bootstrap does)
            self.core.table.cancel_probe(probe.public_key)

    # --- effects out -------------------------------------------------------------------

    def _carry_out(self, outputs: list[Output]) -> None:
        for out in outputs:
            match out:
                case SendMessage(to=to, message=message):
                    self._send(to, message)
                case (
                    LookupFinished(op_id=op)
                    | ValueLookupFinished(op_id=op)
                    | (ProvidersLookupFinished(op_id=op))
                    | StoreFinished(op_id=op)
                ):
                    waiter = self._waiters.pop(op, None)
                    if waiter is not None:
                        waiter.result = out
                        waiter.done.set()
                case PeerMisbehaved(peer=who, reason=reason):
                    self.stats.misbehaved += 1
                    log.info("dht: peer %s misbehaved: %s", who.hex()[:16], reason)
                case _:
                    assert_never(out)

    def _send(self, to: PeerInfo, message: Message) -> None:
        peer_id = peer_id_of(to.public_key)
        for address in to.addrs:
            self.peer.connections.addresses.add(peer_id, address)
        certificates: tuple[bytes, ...] = ()
        record = message.record if isinstance(message, PutValue | GetValueResult) else None
        if record is not None:
            certificates = self.certificates.of(record.publisher)
        self.links.send(peer_id, codec.encode(message, certificates))

    # --- public API -------------------------------------------------------------------

    async def _run_op(self, start: Callable[[float], tuple[int, list[Output]]]) -> Output:
        if not self._running:
            raise ColonymeshError("the DHT service is not running")
        op_id, outputs = start(trio.current_time())
        waiter = self._waiters[op_id] = _Waiter()
        self.stats.lookups += 1
        try:
            self._carry_out(outputs)
            self._wake()
            await waiter.done.wait()
        finally:
            self._waiters.pop(op_id, None)
        if waiter.result is None:
            raise RuntimeError("a DHT operation ended without a result")
        return waiter.result

    async def find_node(self, target: bytes) -> LookupFinished:
        """The k closest contacts to the 32-byte id `target` the network knows."""
        return await _expect(
            self._run_op(lambda now: self.core.find_node(target, now)), LookupFinished
        )

    async def find_peer(self, public_key: bytes) -> PeerInfo | None:
        """The contact for `public_key`, looked up by its id; None if nobody knows it."""
        found = await self.find_node(id_to_bytes(node_id_of(public_key)))
        return next((p for p in found.closest if p.public_key == public_key), None)

    async def get_value(self, key: bytes) -> ValueRecord | None:
        result = await _expect(
            self._run_op(lambda now: self.core.get_value(key, now)), ValueLookupFinished
        )
        return result.record

    async def put_value(self, key: bytes, value: bytes) -> StoreFinished:
        """Sign `value` under `key` (sequence: wall-clock ms, above any we hold) and store it."""
        keys = self.peer.config.keys
        held = self.core.values.get(key, trio.current_time())
        seq = max(int(time.time() * 1000), 0 if held is None else held.seq + 1)
        signature = keys.sign(value_signing_bytes(key, value, seq))
        record = ValueRecord(key, value, keys.public_key, seq, signature)
        return await _expect(
            self._run_op(lambda now: self.core.put_value(record, now)), StoreFinished
        )

    async def provide(self, key: bytes) -> StoreFinished:
        return await _expect(self._run_op(lambda now: self.core.provide(key, now)), StoreFinished)

    async def get_providers(self, key: bytes) -> tuple[PeerInfo, ...]:
        result = await _expect(
            self._run_op(lambda now: self.core.get_providers(key, now)), ProvidersLookupFinished
        )
        return result.providers

    def routing_table(self) -> list[dict[str, Any]]:
        """The contacts, nearest bucket first: peer id, bucket, addresses."""
        self_id = self.core.table.self_id
        rows = []
        for info in self.core.table.peers():
            distance = self_id ^ node_id_of(info.public_key)
            rows.append(
                {
                    "peer_id": peer_id_of(info.public_key),
                    "bucket": distance.bit_length() - 1,
                    "addrs": list(info.addrs),
                }
            )
        rows.sort(key=lambda row: (row["bucket"], row["peer_id"]))
        return rows

    def statistics(self) -> dict[str, Any]:
        deadline = self.core.next_deadline()
        return {
            **self.core.statistics(),
            "next_deadline_in_s": None
            if math.isinf(deadline)
            else round(deadline - trio.current_time(), 3),
            "links": vars_of(self.links.stats),
            "service": vars_of(self.stats),
        }


def vars_of(obj: object) -> dict[str, int]:
    return {name: getattr(obj, name) for name in getattr(obj, "__slots__", ())}


async def _expect(awaitable: Awaitable[Output], kind: type[T]) -> T:
    result = await awaitable
    if not isinstance(result, kind):
        raise RuntimeError(f"expected {kind.__name__}, got {type(result).__name__}")
    return result
