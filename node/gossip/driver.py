"""`GossipService`: the gossip core (`GossipRouter`) on a real :class:`Peer`.

How it runs. One task owns the router: it sleeps until `next_deadline()` or
until its bounded inbox has something (inbound messages, peer connections and
disconnections, a wake-up after an API call), feeds `now =
trio.current_time()` and carries out the effects. `subscribe` and `publish`
call the router synchronously (trio never preempts it).

Wire. Gossip messages travel on one long-lived `/colonymesh/gossip/1.0.0`
stream per direction and pair (`StreamLinks` from the DHT driver), framed by
`colonymesh.node.gossip.codec`; the sender of a frame is the connection's
Noise-proven key. A `Publish` carries its publisher's owner-signed certificate,
admitted into `peer.config.membership` before the router checks membership: a
member far from the publisher in the mesh learns of it that way. The router
verifies every message's signature (`verify_signature`) itself.

Peers. Every connection the gatekeeper admits is a gossip neighbour while it
lasts (`ConnectionWatch` feeds `peer_connected` / `peer_disconnected`).

Handlers. `subscribe(topic, handler)` runs `handler(Delivered)` in the router's
task for each new message: it must not block (hand work to a channel or a task).

Bounds: inbox `inbox_max` (overflow dropped, counted; the router repairs losses
by IHAVE/IWANT), per-destination queues `queue_max` (dropped, counted), the
router's own caches and rate limits (our publish waits out `PublishThrottled`).
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, assert_never

import trio

from colonymesh.node.dht.driver import CertificateCache, DhtStatistics, is_member_of, vars_of
from colonymesh.node.dht.links import ConnectionWatch, StreamLinks, run_core
from colonymesh.node.errors import ColonymeshError, MalformedFrame
from colonymesh.node.gossip import codec
from colonymesh.node.gossip.effects import (
    Delivered,
    DeliveryCounted,
    GossipConfig,
    Output,
    PeerMisbehaved,
    PeerRateLimited,
    PublishThrottled,
    SendMessage,
    ThrottledBy,
)
from colonymesh.node.gossip.messages import Message, Publish
from colonymesh.node.gossip.router import GossipRouter
from colonymesh.node.identity import peer_id_of, public_key_from_peer_id, verify_signature
from colonymesh.node.peer.peer import Peer
from colonymesh.node.transport.connection import Connection

log = logging.getLogger("colonymesh.node.gossip")

PROTOCOL_ID = "/colonymesh/gossip/1.0.0"

Handler = Callable[[Delivered], None]


@dataclass(frozen=True, slots=True)
class GossipServiceConfig:
    gossip: GossipConfig = field(default_factory=GossipConfig)
    inbox_max: int = 4096
    queue_max: int = 512
    connect_timeout_s: float = 3.0
    idle_stream_s: float = 120.0
    publish_wait_s_max: float = 30.0  # publish gives up when throttled longer than this
    seed: int | None = None


@dataclass(slots=True)
class GossipStatistics:
    inbox_dropped: int = 0
    malformed: int = 0
    misbehaved: int = 0
    delivered: int = 0
    published: int = 0
    rate_limited_peers: int = 0
    throttled_by_peers: int = 0


@dataclass(frozen=True, slots=True)
class _Inbound:
    sender: bytes
    message: Message


@dataclass(frozen=True, slots=True)
class _Up:
    key: bytes


@dataclass(frozen=True, slots=True)
class _Down:
    key: bytes


_Item = _Inbound | _Up | _Down | None


class GossipService:
    """Epidemic broadcast for one :class:`Peer`: ``nursery.start(GossipService(peer).run)``."""

    def __init__(self, peer: Peer, config: GossipServiceConfig | None = None) -> None:
        self.peer = peer
        self.config = cfg = config if config is not None else GossipServiceConfig()
        self.stats = GossipStatistics()
        self._cert_stats = DhtStatistics()
        seed = cfg.seed if cfg.seed is not None else int.from_bytes(os.urandom(8), "big")
        self.router = GossipRouter(
            peer.config.keys.public_key,
            sign=peer.config.keys.sign,
            verify=verify_signature,
            is_member=is_member_of(peer),
            rng=random.Random(seed),
            config=cfg.gossip,
            now=trio.current_time(),
        )
        self.certificates = CertificateCache(peer)
        self.links = StreamLinks(
            peer,
            PROTOCOL_ID,
            codec.FRAME_BYTES_MAX,
            self._on_frame,
            queue_max=cfg.queue_max,
            connect_timeout_s=cfg.connect_timeout_s,
            idle_s=cfg.idle_stream_s,
        )
        self.watch = ConnectionWatch(peer, self._up, self._down)
        self._inbox_tx, self._inbox_rx = trio.open_memory_channel[_Item](cfg.inbox_max)
        self._handlers: dict[str, list[Handler]] = {}
        self._counts: dict[bytes, int] = {}  # delivery counts of our messages, newest last
        self._running = False

    # --- running ------------------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[GossipService] = trio.TASK_STATUS_IGNORED
    ) -> None:
        async with trio.open_nursery() as nursery:
            self.links.start(nursery)
            self.watch.start(nursery)
            self._running = True
            try:
                nursery.start_soon(self._core_loop)
                task_status.started(self)
                await trio.sleep_forever()
            finally:
                self._running = False

    async def _core_loop(self) -> None:
        await run_core(
            self.router,
            self._inbox_rx,
            self._take,
            lambda now: self._carry_out(self.router.tick(now)),
        )

    def _take(self, item: _Item) -> None:
        now = trio.current_time()
        match item:
            case None:
                pass
            case _Inbound(sender=sender, message=message):
                self._carry_out(self.router.handle_message(sender, message, now))
            case _Up(key=key):
                self._carry_out(self.router.peer_connected(key, now))
            case _Down(key=key):
                self._carry_out(self.router.peer_disconnected(key, now))
            case _:
                assert_never(item)

    def _put(self, item: _Item, *, control: bool = False) -> None:
        try:
            self._inbox_tx.send_nowait(item)
        except trio.WouldBlock:
            if control:  # a connection change must not be lost: apply it now
                self._take(item)
            else:
                self.stats.inbox_dropped += item is not None

    # --- network in ---------------------------------------------------------------------

    def _on_frame(self, connection: Connection, frame: bytes) -> None:
        try:
            msg, certificates = codec.decode(frame, self.config.gossip.wire)
        except MalformedFrame:
            self.stats.malformed += 1
            raise
        if certificates and isinstance(msg, Publish):
            self.certificates.admit(certificates, self._cert_stats)
        self._put(_Inbound(connection.remote_public_key, msg))

    def _up(self, peer_id: str, connection: Connection) -> None:
        self._put(_Up(connection.remote_public_key), control=True)

    def _down(self, peer_id: str) -> None:
        self._put(_Down(public_key_from_peer_id(peer_id)), control=True)

    # --- effects out --------------------------------------------------------------------

    def _carry_out(self, outputs: list[Output]) -> None:
        for out in outputs:
            match out:
                case SendMessage(to=to, message=message):
                    certificates: tuple[bytes, ...] = ()
                    if isinstance(message, Publish):
                        certificates = self.certificates.of(message.message.publisher)
                    self.links.send(peer_id_of(to), codec.encode(message, certificates))
                case Delivered(topic=topic):
                    self.stats.delivered += 1
                    for handler in self._handlers.get(topic, ()):
                        try:
                            handler(out)
                        except Exception:  # a subscriber's bug must not stop the router
                            log.exception("gossip: handler for %s failed", topic)
                case DeliveryCounted(msg_id=msg_id, delivered=delivered):
                    self._counts[msg_id] = delivered
                    while len(self._counts) > 4096:
                        del self._counts[next(iter(self._counts))]
                case PeerRateLimited():
                    self.stats.rate_limited_peers += 1
                case ThrottledBy():
                    self.stats.throttled_by_peers += 1
                case PublishThrottled():
                    pass  # handled by publish()
                case PeerMisbehaved(peer=who, reason=reason):
                    self.stats.misbehaved += 1
                    log.info("gossip: peer %s misbehaved: %s", who.hex()[:16], reason)
                case _:
                    assert_never(out)

    # --- public API ---------------------------------------------------------------------

    def subscribe(self, topic: str, handler: Handler) -> None:
        """Call `handler` for every new message on `topic` (in the router's task)."""
        if not self._running:
            raise ColonymeshError("the gossip service is not running")
        self._handlers.setdefault(topic, []).append(handler)
        self._carry_out(self.router.subscribe(topic, trio.current_time()))
        self._put(None)

    async def publish(self, topic: str, data: bytes) -> bytes:
        """Sign and broadcast `data`; its message id. Waits while our publish rate is over
        its limit (up to `publish_wait_s_max`, then `ColonymeshError`)."""
        if not self._running:
            raise ColonymeshError("the gossip service is not running")
        waited = 0.0
        while True:
            msg_id, outputs = self.router.publish(topic, data, trio.current_time())
            self._carry_out(outputs)
            if msg_id is not None:
                self.stats.published += 1
                self._put(None)
                return msg_id
            retry = max(
                (o.retry_after_s for o in outputs if isinstance(o, PublishThrottled)), default=0.1
            )
            if waited + retry > self.config.publish_wait_s_max:
                raise ColonymeshError(f"gossip publish on {topic} throttled for {retry:.1f} s")
            await trio.sleep(retry)
            waited += retry

    def delivery_count(self, msg_id: bytes) -> int | None:
        """How many peers are known to have delivered a message we published."""
        return self.router.delivery_count(msg_id, trio.current_time())

    def neighbours(self) -> list[str]:
        return sorted(self.watch.connected())

    def statistics(self) -> dict[str, Any]:
        return {
            **self.router.statistics(),
            "neighbours": len(self.watch.connected()),
            "links": vars_of(self.links.stats),
            "service": vars_of(self.stats),
            "certificates_admitted": self._cert_stats.certificates_admitted,
            "certificates_refused": self._cert_stats.certificates_refused,
        }
