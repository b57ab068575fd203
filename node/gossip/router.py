"""`GossipRouter`: one peer's epidemic broadcast, gossipsub-v1.1-style, as a sans-I/O core.

What it owns: the topics this node subscribes to, which connected peer subscribes
to what, a mesh of about `d` peers per subscribed topic (and a fanout set per
topic it publishes to without subscribing), the seen-cache, the message cache,
per-peer token buckets, push-back state, and delivery-receipt aggregation.

How it works.
- Eager push: a new valid message is delivered locally and forwarded to the
  topic's mesh peers (not back to the sender or the publisher). Heartbeats
  (`heartbeat_s`) keep every mesh between `d_lo` and `d_hi` with GRAFT/PRUNE
  (a pruned peer is not re-grafted for `prune_backoff_s`), expire fanout sets, and
  send IHAVE with the ids of the last `mcache_gossip_windows` heartbeats to
  `max(d_lazy, gossip_factor * others)` non-mesh topic peers; a peer missing one of
  them answers IWANT and gets the full message (lazy repair of lost pushes).
  Beyond gossipsub, mesh peers also get an IHAVE of the newest windows' ids
  (`mesh_ihave_windows`, not those we got from that peer): a node whose every
  peer has it in their mesh would otherwise never be repaired when all its
  eager pushes are lost (measured: 300 peers, degree 8, 25% loss: 2 of 6 runs
  left one peer out without it). An IWANT is not repeated for `iwant_followup_s`,
  then the next IHAVE (from any peer) asks again.
- Validation: a message is accepted only if its publisher is a colony member
  (injected `is_member`) and its signature verifies (injected `verify`); an invalid
  one is never marked seen (so it cannot shadow the real message) and its sender is
  reported with `PeerMisbehaved`.
- Push-back, never a silent drop: full messages from each peer pass a token bucket
  (messages and bytes). One over the limit is not taken: the sender gets
  `Throttle(retry_after_s, [id])` and we report `PeerRateLimited`. A throttled
  sender (`ThrottledBy` event) pushes nothing eagerly to that peer until
  `retry_after_s` has passed, then offers every message it held back by IHAVE, and
  the peer pulls what it still lacks, asking for no more than its budget allows.
  The owner's own `publish` passes a token bucket too and is refused with
  `PublishThrottled(retry_after_s)` rather than queued without bound.
- Delivery accounting (convergecast of cumulative counts): the peer that first sent
  us a message is its *parent*, so the first-delivery edges form a tree rooted at
  the publisher. Each node reports to its parent, in batched `Receipts`, the number
  of deliveries in its subtree (itself plus its children's latest reports); a
  changed count is sent at once (after `receipt_flush_s`) and an unchanged one
  repeated `receipt_repeats` more times. The publisher's `DeliveryCounted` is the
  sum of its children's counts. Accuracy: every delivery is counted at most once
  (each node has one parent and reports cumulative, not incremental, counts, the
  parent keeping the maximum per child), so the count never exceeds the true
  number of deliveries among honest members; it falls short only when all
  `1 + receipt_repeats` copies of a subtree's last report are lost (probability
  p**(1 + receipt_repeats) per edge under independent loss p), when a parent leaves
  before forwarding, or when the entry leaves the seen-cache (`seen_ttl_s`).
  A member can lie about its subtree: counts are as honest as the members.

Invariants: seen-cache, message cache, IWANT follow-ups and per-peer deferred ids
are bounded; at most `ihave_per_peer_per_heartbeat` IHAVEs per peer are acted on
per heartbeat; all iteration is over dicts (insertion order) or sorted data and all
randomness comes from the injected `random.Random`, so a run is a function of its
inputs.

Contract for the driver: call `peer_connected` when an authenticated member's
connection opens and `peer_disconnected` when it closes (messages from a peer
that is not connected are ignored); deliver every
`SendMessage` (or lose it); call `handle_message` for every gossip message and
`tick(now)` no later than `next_deadline()`. `now` never goes backwards.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from colonymesh.node.gossip.caches import MessageCache, SeenCache, TokenBucket
from colonymesh.node.gossip.effects import (
    Delivered,
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
    Message,
    Prune,
    Publish,
    Receipts,
    Subscriptions,
    Throttle,
    message_id,
    message_signing_bytes,
    validate_message,
)
from colonymesh.node.gossip.receipts import ReceiptBook

if TYPE_CHECKING:
    import random

log = logging.getLogger("colonymesh.node.gossip")

Sign = Callable[[bytes], bytes]
Verify = Callable[[bytes, bytes, bytes], bool]  # (public key, message, signature)
IsMember = Callable[[bytes], bool]


class _Peer:
    __slots__ = (
        "bytes_in",
        "deferred",
        "ihaves",
        "msgs_in",
        "offered",
        "throttled_until",
        "topics",
    )

    def __init__(self, cfg: GossipConfig, now: float) -> None:
        self.topics: dict[str, None] = {}
        self.msgs_in = TokenBucket(cfg.peer_msgs_per_s, cfg.peer_msgs_burst, now)
        self.bytes_in = TokenBucket(cfg.peer_bytes_per_s, cfg.peer_bytes_burst, now)
        self.throttled_until = -math.inf  # it asked us to push nothing until then
        # messages held back from it (it throttled us), re-offered by IHAVE once it
        # lifts; kept here, not only in the message cache, so a long push-back loses
        # nothing; `offered` keeps the last batch offered, for its IWANT
        self.deferred: dict[bytes, GossipMessage] = {}
        self.offered: dict[bytes, GossipMessage] = {}
        self.ihaves = 0  # IHAVEs from it this heartbeat


class GossipRouter:
    __slots__ = (
        "_backoff",
        "_fanout",
        "_fanout_used",
        "_heartbeat_at",
        "_is_member",
        "_iwant_sent",
        "_mcache",
        "_mesh",
        "_peers",
        "_publish_bucket",
        "_receipts",
        "_resubscribe_at",
        "_rng",
        "_seen",
        "_seqno",
        "_sign",
        "_subs",
        "_topic_peers",
        "_verify",
        "config",
        "self_key",
    )

    def __init__(
        self,
        self_key: bytes,
        *,
        sign: Sign,
        verify: Verify,
        is_member: IsMember,
        rng: random.Random,
        config: GossipConfig | None = None,
        now: float = 0.0,
    ) -> None:
        self.config = cfg = config if config is not None else GossipConfig()
        if not 0 < cfg.d_lo <= cfg.d <= cfg.d_hi:
            raise ValueError("need 0 < d_lo <= d <= d_hi")
        self.self_key = self_key
        self._sign = sign
        self._verify = verify
        self._is_member = is_member
        self._rng = rng
        self._peers: dict[bytes, _Peer] = {}
        self._subs: dict[str, None] = {}
        self._topic_peers: dict[str, dict[bytes, None]] = {}
        self._mesh: dict[str, dict[bytes, None]] = {}
        self._fanout: dict[str, dict[bytes, None]] = {}
        self._fanout_used: dict[str, float] = {}
        self._backoff: dict[tuple[str, bytes], float] = {}
        self._seen = SeenCache(cfg.seen_ttl_s, cfg.seen_max)
        self._mcache = MessageCache(cfg.mcache_windows, cfg.mcache_gossip_windows)
        self._iwant_sent: dict[bytes, float] = {}
        self._publish_bucket = TokenBucket(cfg.publish_per_s, cfg.publish_burst, now)
        self._seqno = rng.getrandbits(32) << 20  # unique across restarts in practice
        self._receipts = ReceiptBook(
            cfg.receipt_flush_s, cfg.receipt_repeats, cfg.wire.receipts_per_message_max
        )
        # jitter so that a simulated population does not beat in lockstep
        self._heartbeat_at = now + rng.uniform(0.0, cfg.heartbeat_s)
        self._resubscribe_at = now + cfg.resubscribe_s

    # --- owner's inputs -------------------------------------------------------------

    def subscribe(self, topic: str, now: float) -> list[Output]:
        self._check_topic(topic)
        if topic in self._subs:
            return []
        self._subs[topic] = None
        out: list[Output] = [SendMessage(p, Subscriptions(subscribe=(topic,))) for p in self._peers]
        mesh = self._mesh.setdefault(topic, {})
        for p in self._fanout.pop(topic, {}):
            mesh[p] = None
        self._fanout_used.pop(topic, None)
        self._fill_mesh(topic, mesh, now, out)
        return out

    def unsubscribe(self, topic: str, now: float) -> list[Output]:
        if topic not in self._subs:
            return []
        del self._subs[topic]
        out: list[Output] = [
            SendMessage(p, Subscriptions(unsubscribe=(topic,))) for p in self._peers
        ]
        for p in self._mesh.pop(topic, {}):
            out.append(SendMessage(p, Prune(topic, self.config.prune_backoff_s)))
        return out

    def peer_connected(self, peer: bytes, now: float) -> list[Output]:
        if peer == self.self_key or peer in self._peers:
            return []
        self._peers[peer] = _Peer(self.config, now)
        if self._subs:
            return [SendMessage(peer, Subscriptions(subscribe=tuple(self._subs)))]
        return []

    def peer_disconnected(self, peer: bytes, now: float) -> list[Output]:
        state = self._peers.pop(peer, None)
        if state is None:
            return []
        for topic in state.topics:
            self._topic_peers.get(topic, {}).pop(peer, None)
        for group in (self._mesh, self._fanout):
            for members in group.values():
                members.pop(peer, None)
        return []

    def publish(self, topic: str, data: bytes, now: float) -> tuple[bytes | None, list[Output]]:
        """Sign and broadcast `data`; (message id, outputs), or (None, [PublishThrottled])."""
        self._check_topic(topic)
        if len(data) > self.config.wire.data_bytes_max:
            raise PublishError(f"{len(data)} bytes exceed data_bytes_max")
        if not self._publish_bucket.take(1, now):
            return None, [PublishThrottled(topic, self._publish_bucket.wait_s(1, now))]
        self._seqno += 1
        signed = message_signing_bytes(topic, data, self.self_key, self._seqno)
        msg = GossipMessage(topic, data, self.self_key, self._seqno, self._sign(signed))
        msg_id = message_id(msg)
        entry = self._seen.add(msg_id, topic, None, now)
        entry.children = {}
        self._mcache.put(msg_id, msg)
        out: list[Output] = []
        self._push(msg, msg_id, self._publish_targets(topic, now), b"", out, now)
        return msg_id, out

    def delivery_count(self, msg_id: bytes, now: float) -> int | None:
        """Peers known to have delivered a message we published (None: unknown/expired)."""
        entry = self._seen.get(msg_id, now)
        if entry is None or entry.parent is not None:
            return None
        return entry.subtree()

    # --- network input --------------------------------------------------------------

    def handle_message(self, from_peer: bytes, msg: Message, now: float) -> list[Output]:
        try:
            validate_message(msg, self.config.wire)
        except GossipProtocolError as exc:
            log.info("gossip: bad message from %s: %s", from_peer.hex()[:16], exc)
            return [PeerMisbehaved(from_peer, str(exc))]
        if from_peer == self.self_key:
            return []
        peer = self._peers.get(from_peer)
        if peer is None:
            # not connected (or a message still in flight when it disconnected): taking
            # it would re-create state for a peer nobody will ever disconnect again
            log.debug("gossip: message from unconnected peer %s ignored", from_peer.hex()[:16])
            return []
        out: list[Output] = []
        match msg:
            case Publish(message=inner):
                self._on_publish(from_peer, peer, inner, now, out)
            case IHave(topic=topic, msg_ids=ids):
                self._on_ihave(from_peer, peer, topic, ids, now, out)
            case IWant(msg_ids=ids):
                for msg_id in ids:
                    found = (
                        self._mcache.get(msg_id)
                        or peer.offered.pop(msg_id, None)
                        or peer.deferred.pop(msg_id, None)
                    )
                    if found is not None:
                        out.append(SendMessage(from_peer, Publish(found)))
            case Graft(topic=topic):
                self._on_graft(from_peer, peer, topic, now, out)
            case Prune(topic=topic, backoff_s=backoff):
                if topic in self._subs:  # only topics we hold a mesh for: bounded
                    self._mesh.get(topic, {}).pop(from_peer, None)
                    self._backoff[(topic, from_peer)] = now + max(backoff, 1.0)
            case Subscriptions(subscribe=sub, unsubscribe=unsub):
                self._on_subscriptions(from_peer, peer, sub, unsub)
            case Throttle(retry_after_s=retry, msg_ids=ids):
                until = now + min(retry, self.config.throttle_backoff_s_max)
                peer.throttled_until = max(peer.throttled_until, until)
                for msg_id in ids:
                    held = self._mcache.get(msg_id) or peer.offered.get(msg_id)
                    if held is not None:
                        self._defer(peer, msg_id, held)
                out.append(ThrottledBy(from_peer, peer.throttled_until, ids))
            case Receipts(entries=entries):
                out.extend(
                    self._receipts.received(from_peer, entries, self._seen, len(self._peers), now)
                )
            case _:
                raise GossipProtocolError("unreachable: validated above")
        return out

    def tick(self, now: float) -> list[Output]:
        out: list[Output] = []
        if now >= self._heartbeat_at:
            self._heartbeat(now, out)
            self._heartbeat_at = max(self._heartbeat_at + self.config.heartbeat_s, now)
        if now >= self._receipts.flush_at:
            out.extend(self._receipts.flush(self._seen, self._peers, now))
        return out

    def next_deadline(self) -> float:
        return min(self._heartbeat_at, self._receipts.flush_at)

    def statistics(self) -> dict[str, int]:
        return {
            "peers": len(self._peers),
            "topics": len(self._subs),
            "mesh_peers": sum(len(m) for m in self._mesh.values()),
            "seen": len(self._seen),
            "mcache": len(self._mcache),
            "receipts_due": len(self._receipts),
        }

    def mesh_peers(self, topic: str) -> list[bytes]:
        return list(self._mesh.get(topic, {}))

    # --- internals: messages ----------------------------------------------------------

    def _check_topic(self, topic: str) -> None:
        if not isinstance(topic, str) or not 0 < len(topic) <= self.config.wire.topic_chars_max:
            raise PublishError("topic must be a non-empty string within topic_chars_max")

    def _on_publish(
        self, key: bytes, peer: _Peer, msg: GossipMessage, now: float, out: list[Output]
    ) -> None:
        msg_id = message_id(msg)
        if self._seen.get(msg_id, now) is not None:
            return  # a duplicate: the mesh sends each message along several edges
        size = len(msg.data)
        if peer.msgs_in.available(now) < 1 or peer.bytes_in.available(now) < size:
            retry = max(peer.msgs_in.wait_s(1, now), peer.bytes_in.wait_s(size, now))
            retry = min(retry, self.config.throttle_backoff_s_max)
            out.append(SendMessage(key, Throttle(retry, (msg_id,))))
            out.append(PeerRateLimited(key, msg_id, retry))
            self._iwant_sent.pop(msg_id, None)  # not taken: accept the next offer of it
            return
        peer.msgs_in.take(1, now)
        peer.bytes_in.take(size, now)
        if msg.publisher == self.self_key:
            return  # our own message, back after its seen entry expired
        if not self._is_member(msg.publisher):
            out.append(PeerMisbehaved(key, "relayed a message from a non-member"))
            return
        signed = message_signing_bytes(msg.topic, msg.data, msg.publisher, msg.seqno)
        if not self._verify(msg.publisher, signed, msg.signature):
            out.append(PeerMisbehaved(key, "relayed a message with a bad signature"))
            return
        if msg.publisher != key:
            # only subscribers relay a message they did not publish: learn that, in
            # case its subscription announcement was lost
            self._note_topic(key, peer, msg.topic)
        entry = self._seen.add(msg_id, msg.topic, key, now)
        self._mcache.put(msg_id, msg)
        self._iwant_sent.pop(msg_id, None)
        if msg.topic not in self._subs:
            return
        entry.delivered = True
        out.append(Delivered(msg.topic, msg_id, msg.data, msg.publisher))
        self._receipts.changed(msg_id, entry, now)
        mesh = self._mesh.get(msg.topic, {})
        self._push(msg, msg_id, list(mesh), key, out, now)

    def _push(
        self,
        msg: GossipMessage,
        msg_id: bytes,
        targets: list[bytes],
        source: bytes,
        out: list[Output],
        now: float,
    ) -> None:
        for p in targets:
            if p == source or p == msg.publisher:
                continue
            peer = self._peers.get(p)
            if peer is None:
                continue
            if peer.throttled_until > now:
                self._defer(peer, msg_id, msg)  # offered by IHAVE once it lifts
            else:
                out.append(SendMessage(p, Publish(msg)))

    def _defer(self, peer: _Peer, msg_id: bytes, msg: GossipMessage) -> None:
        peer.deferred[msg_id] = msg
        while len(peer.deferred) > self.config.deferred_max:
            # the bound on memory: the oldest held-back message is offered no more
            # (others still reach that peer through the mesh and IHAVE gossip)
            del peer.deferred[next(iter(peer.deferred))]

    def _publish_targets(self, topic: str, now: float) -> list[bytes]:
        cfg = self.config
        topic_peers = list(self._topic_peers.get(topic, {}))
        if cfg.flood_publish:
            return topic_peers
        if topic in self._subs:
            return list(self._mesh.get(topic, {}))
        fanout = self._fanout.setdefault(topic, {})
        self._fanout_used[topic] = now
        if len(fanout) < cfg.d:
            extra = [p for p in topic_peers if p not in fanout]
            for p in self._rng.sample(extra, min(cfg.d - len(fanout), len(extra))):
                fanout[p] = None
        return list(fanout)

    def _on_ihave(
        self,
        key: bytes,
        peer: _Peer,
        topic: str,
        ids: tuple[bytes, ...],
        now: float,
        out: list[Output],
    ) -> None:
        peer.ihaves += 1
        if peer.ihaves > self.config.ihave_per_peer_per_heartbeat or topic not in self._subs:
            return
        budget = int(min(peer.msgs_in.available(now), len(ids)))
        want: list[bytes] = []
        later: list[bytes] = []
        for msg_id in ids:
            if self._seen.get(msg_id, now) is None and self._iwant_sent.get(msg_id, -1.0) <= now:
                (want if len(want) < budget else later).append(msg_id)
        if later:
            # more on offer than this peer's budget: push back on the pull as well
            deficit = len(want) + len(later) - peer.msgs_in.available(now)
            rate = peer.msgs_in.rate
            cap = self.config.throttle_backoff_s_max
            retry = min(deficit / rate, cap) if rate > 0 else cap
            out.append(SendMessage(key, Throttle(retry, tuple(later))))
        if not want:
            return
        until = now + self.config.iwant_followup_s
        for msg_id in want:
            self._iwant_sent[msg_id] = until
        while len(self._iwant_sent) > self.config.seen_max:
            del self._iwant_sent[next(iter(self._iwant_sent))]
        out.append(SendMessage(key, IWant(tuple(want))))

    def _on_graft(self, key: bytes, peer: _Peer, topic: str, now: float, out: list[Output]) -> None:
        self._note_topic(key, peer, topic)
        if topic not in self._subs or self._backoff.get((topic, key), -math.inf) > now:
            out.append(SendMessage(key, Prune(topic, self.config.prune_backoff_s)))
            return
        self._mesh.setdefault(topic, {})[key] = None

    def _note_topic(self, key: bytes, peer: _Peer, topic: str) -> None:
        if topic not in peer.topics:
            if len(peer.topics) >= self.config.wire.topics_per_message_max * 4:
                return
            peer.topics[topic] = None
            self._topic_peers.setdefault(topic, {})[key] = None

    def _on_subscriptions(
        self, key: bytes, peer: _Peer, sub: tuple[str, ...], unsub: tuple[str, ...]
    ) -> None:
        for topic in sub:
            self._note_topic(key, peer, topic)
        for topic in unsub:
            peer.topics.pop(topic, None)
            self._topic_peers.get(topic, {}).pop(key, None)
            self._mesh.get(topic, {}).pop(key, None)
            self._fanout.get(topic, {}).pop(key, None)

    # --- internals: heartbeat -----------------------------------------------------------

    def _fill_mesh(
        self, topic: str, mesh: dict[bytes, None], now: float, out: list[Output]
    ) -> None:
        cfg = self.config
        want = cfg.d - len(mesh)
        if want <= 0:
            return
        candidates = [
            p
            for p in self._topic_peers.get(topic, {})
            if p not in mesh and self._backoff.get((topic, p), -math.inf) <= now
        ]
        for p in self._rng.sample(candidates, min(want, len(candidates))):
            mesh[p] = None
            out.append(SendMessage(p, Graft(topic)))

    def _heartbeat(self, now: float, out: list[Output]) -> None:
        cfg = self.config
        for peer in self._peers.values():
            peer.ihaves = 0
        for topic in self._subs:
            mesh = self._mesh.setdefault(topic, {})
            if len(mesh) < cfg.d_lo:
                self._fill_mesh(topic, mesh, now, out)
            elif len(mesh) > cfg.d_hi:
                keep = set(self._rng.sample(list(mesh), cfg.d))
                for p in [p for p in mesh if p not in keep]:
                    del mesh[p]
                    self._backoff[(topic, p)] = now + cfg.prune_backoff_s
                    out.append(SendMessage(p, Prune(topic, cfg.prune_backoff_s)))
        for topic, used in list(self._fanout_used.items()):
            if used + cfg.fanout_ttl_s <= now:
                del self._fanout_used[topic]
                self._fanout.pop(topic, None)
        if now >= self._resubscribe_at:
            self._resubscribe_at = now + cfg.resubscribe_s
            if self._subs:
                announce = Subscriptions(subscribe=tuple(self._subs))
                out.extend(SendMessage(p, announce) for p in self._peers)
            for topic in self._subs:
                out.extend(SendMessage(p, Graft(topic)) for p in self._mesh.get(topic, {}))
        self._emit_gossip(now, out)
        self._emit_deferred(now, out)
        self._mcache.shift()
        self._seen.expire(now)
        for bk in [bk for bk, until in self._backoff.items() if until <= now]:
            del self._backoff[bk]
        for msg_id in [i for i, until in self._iwant_sent.items() if until <= now]:
            del self._iwant_sent[msg_id]

    def _emit_gossip(self, now: float, out: list[Output]) -> None:
        cfg = self.config
        cap = cfg.wire.ids_per_message_max
        for topic in list(self._subs) + list(self._fanout):
            ids = self._mcache.gossip_ids(topic)
            if not ids:
                continue
            ids = ids[-cap:]
            exclude = self._mesh.get(topic) or self._fanout.get(topic) or {}
            candidates = [
                p
                for p in self._topic_peers.get(topic, {})
                if p not in exclude and self._peers[p].throttled_until <= now
            ]
            n = min(len(candidates), max(cfg.d_lazy, int(cfg.gossip_factor * len(candidates))))
            for p in self._rng.sample(candidates, n):
                out.append(SendMessage(p, IHave(topic, tuple(ids))))
            if cfg.mesh_ihave_windows and exclude:
                self._emit_mesh_gossip(topic, exclude, now, out)

    def _emit_mesh_gossip(
        self, topic: str, mesh: dict[bytes, None], now: float, out: list[Output]
    ) -> None:
        recent = self._mcache.gossip_ids(topic, self.config.mesh_ihave_windows)
        if not recent:
            return
        parents = {}
        for msg_id in recent:
            entry = self._seen.get(msg_id, now)
            parents[msg_id] = entry.parent if entry is not None else None
        cap = self.config.wire.ids_per_message_max
        for p in mesh:
            peer = self._peers.get(p)
            if peer is None or peer.throttled_until > now:
                continue
            # not to the peer we got it from: it has it
            ids = [i for i in recent if parents[i] != p][-cap:]
            if ids:
                out.append(SendMessage(p, IHave(topic, tuple(ids))))

    def _emit_deferred(self, now: float, out: list[Output]) -> None:
        cap = self.config.wire.ids_per_message_max
        for key, peer in self._peers.items():
            if not peer.deferred or peer.throttled_until > now:
                continue
            by_topic: dict[str, list[bytes]] = {}
            for msg_id, msg in peer.deferred.items():
                by_topic.setdefault(msg.topic, []).append(msg_id)
            peer.offered = peer.deferred
            peer.deferred = {}
            for topic, ids in by_topic.items():
                for i in range(0, len(ids), cap):
                    out.append(SendMessage(key, IHave(topic, tuple(ids[i : i + cap]))))
