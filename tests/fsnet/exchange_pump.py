"""An in-test pump: one ExchangeSession against several ExchangeServers on a fake network.

Deterministic from its seed: a heap of (time, seq, delivery), latency drawn from
one `random.Random`, optional loss, liars (serve wrong bytes) and providers that
vanish at a given time. Checks the session's in-flight bounds after every step.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from colonymesh.fs.cid import Cid
from colonymesh.fs.exchange.messages import BlockMessage, Cancel, DontHave, Message, WantBlocks
from colonymesh.fs.exchange.server import ExchangeServer
from colonymesh.fs.exchange.session import (
    BlockReceived,
    Effect,
    ExchangeSession,
    FindProviders,
    LoadLocal,
    PeerId,
    PeerMisbehaved,
    SendWantList,
    SessionConfig,
    SessionFinished,
)
from colonymesh.fs.importer import Block, FileImporter, FixedSizeChunker

ME = "reader"


def make_file(size: int, seed: int, chunk: int = 1024, links: int = 4) -> tuple[Cid, list[Block]]:
    data = random.Random(seed).randbytes(size)
    importer = FileImporter(FixedSizeChunker(chunk), links)
    blocks = importer.feed(data)
    root, tail = importer.finish()
    return root.cid, blocks + tail


@dataclass
class Provider:
    blocks: dict[Cid, bytes]
    liar: bool = False
    vanish_at: float | None = None
    server: ExchangeServer = field(init=False)

    def __post_init__(self) -> None:
        self.server = ExchangeServer(lambda c: c in self.blocks)

    def alive(self, now: float) -> bool:
        return self.vanish_at is None or now < self.vanish_at


@dataclass
class Pump:
    session: ExchangeSession
    providers: dict[str, Provider]
    rng: random.Random
    local: dict[Cid, bytes] = field(default_factory=dict)
    loss: float = 0.0
    duplicate: float = 0.0  # chance a message is delivered twice
    latency_s: float = 0.01
    now: float = 0.0
    finished: SessionFinished | None = None
    misbehaved: list[PeerMisbehaved] = field(default_factory=list)
    received_from: dict[str, int] = field(default_factory=dict)
    _queue: list[tuple[float, int, Callable[[], list[Effect]]]] = field(default_factory=list)
    _seq: int = 0

    def _at(self, delay: float, action: Callable[[], list[Effect]]) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (self.now + delay, self._seq, action))

    def _check(self) -> None:
        config = self.session.config
        total = 0
        for peer in self.providers:
            count = self.session.inflight_of(PeerId(peer))
            if count > config.per_peer_inflight_max:
                raise AssertionError(f"{peer} has {count} in flight")
            total += count
        if total > config.inflight_max:
            raise AssertionError(f"{total} in flight in total")

    def handle(self, effects: list[Effect]) -> None:
        for effect in effects:
            match effect:
                case LoadLocal(cids):
                    for cid in cids:
                        data = self.local.get(cid)
                        self._at(0.0, lambda c=cid, d=data: self.session.on_local(c, d, self.now))
                case SendWantList(peer, wants, cancels):
                    self._to_server(peer, wants, cancels)
                case FindProviders(cid):
                    found = [
                        PeerId(name)
                        for name, p in self.providers.items()
                        if cid in p.blocks and p.alive(self.now)
                    ]
                    self._at(
                        0.005, lambda c=cid, f=found: self.session.on_providers(c, f, self.now)
                    )
                case BlockReceived(peer, cid, data):
                    if not cid.verify(data):
                        raise AssertionError("session accepted a block that does not verify")
                    if cid in self.local:
                        raise AssertionError(f"{cid} received twice")
                    self.local[cid] = data
                    self.received_from[peer] = self.received_from.get(peer, 0) + 1
                case PeerMisbehaved():
                    self.misbehaved.append(effect)
                case SessionFinished():
                    if self.finished is not None:
                        raise AssertionError("finished twice")
                    self.finished = effect
        self._check()

    def _copies(self) -> int:
        """How many times to deliver one message: 0 (lost), 1, or 2 (duplicated)."""
        if self.loss > 0 and self.rng.random() < self.loss:
            return 0
        if self.duplicate > 0 and self.rng.random() < self.duplicate:
            return 2
        return 1

    def _to_server(self, peer: str, wants: tuple[Cid, ...], cancels: tuple[Cid, ...]) -> None:
        messages: list[Message] = []
        if cancels:
            messages.append(Cancel(cancels))
        if wants:
            messages.append(WantBlocks(wants))
        for message in messages:
            for _ in range(self._copies()):
                delay = self.latency_s * (0.5 + self.rng.random())
                self._at(delay, lambda m=message, p=peer: self._serve(p, m))

    def _serve(self, peer: str, message: Message) -> list[Effect]:
        provider = self.providers[peer]
        if not provider.alive(self.now):
            return []
        replies = provider.server.on_message(ME, message)
        while (cid := provider.server.next_want(ME)) is not None:
            data = provider.blocks.get(cid)
            if data is not None and provider.liar:
                data = b"lie:" + data
            replies.append(provider.server.answer(ME, cid, data))
        for index, reply in enumerate(replies):
            for _ in range(self._copies()):
                delay = self.latency_s * (0.5 + self.rng.random()) + 0.0001 * index
                self._at(delay, lambda r=reply, p=peer: self._to_session(p, r))
        return []

    def _to_session(self, peer: str, reply: Message) -> list[Effect]:
        if not self.providers[peer].alive(self.now - self.latency_s * 2):
            return []  # in flight when it vanished: gone with it
        match reply:
            case BlockMessage(cid, data):
                return self.session.on_block(PeerId(peer), cid, data, self.now)
            case DontHave(cids):
                return self.session.on_dont_have(PeerId(peer), cids, self.now)
        raise AssertionError(f"unexpected reply {reply}")

    def run(self, limit_s: float = 1000.0) -> SessionFinished:
        self.handle(self.session.start(self.now))
        for name in self.providers:
            self.handle(self.session.add_peer(PeerId(name), self.now))
        return self.run_started(limit_s)

    def run_started(self, limit_s: float = 1000.0) -> SessionFinished:
        while self.finished is None:
            deadline = self.session.next_deadline()
            next_event = self._queue[0][0] if self._queue else None
            if next_event is None and deadline is None:
                raise AssertionError("stuck: nothing queued, no deadline, not finished")
            if next_event is not None and (deadline is None or next_event <= deadline):
                self.now, _, action = heapq.heappop(self._queue)
                self.handle(action())
            else:
                assert deadline is not None
                self.now = max(self.now, deadline)
                self.handle(self.session.on_timeout(self.now))
            if self.now > limit_s:
                raise AssertionError("session did not finish in time")
        return self.finished


def new_session(
    root: Cid, seed: int, config: SessionConfig | None = None, *, roots: list[Cid] | None = None
) -> ExchangeSession:
    return ExchangeSession(roots or [root], random.Random(seed), config or SessionConfig())
