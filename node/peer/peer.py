"""The embeddable peer: ``async with Peer.open(config) as peer:`` — and :class:`SyncPeer`.

A :class:`Peer` composes the transport :class:`~colonymesh.node.transport.host.Host`
with colony gating (:mod:`.gating`), messaging (:mod:`.messaging`) and the
connection manager (:mod:`.connections`). Structured concurrency: the host's
nursery holds every connection and the handlers running on them; the peer's
own nursery, inside it, holds the sweeper, bootstrap keepers and address
learning. Leaving the ``async with`` block cancels all of it; nothing
outlives the peer.

Usage::

    async with Peer.open(PeerConfig(keys, membership, certificate)) as peer:
        peer.on("colony.ping", answer_ping)
        pong = await peer.request(other_peer_id, Ping(nonce), timeout=2.0)

A program without trio uses :class:`SyncPeer`, which runs the same peer on
a thread of its own (``start()``/``stop()`` or ``with``) and blocks the
caller in :meth:`SyncPeer.request`.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from colonymesh.node.certs import Certificate, Membership, Revocation
from colonymesh.node.envelope import EnvelopeOpener, EnvelopeSealer, OpenerConfig
from colonymesh.node.errors import ColonymeshError, InputError
from colonymesh.node.identity import KeyPair, Signer
from colonymesh.node.messages import Ping, Pong
from colonymesh.node.peer.connections import ConnectionManager, ConnectionsConfig
from colonymesh.node.peer.errors import PeerUnreachable, RequestTimeout
from colonymesh.node.peer.gating import PROTOCOL_ID, Gatekeeper, GatingConfig
from colonymesh.node.peer.messaging import (
    REQUEST_PROTOCOL,
    SEND_PROTOCOL,
    Handler,
    Incoming,
    MessagingConfig,
    Messenger,
)
from colonymesh.node.peer.sync import (
    REVOCATIONS_PER_MESSAGE_MAX,
    RevocationBook,
    Revocations,
    WantRevocations,
)
from colonymesh.node.transport import multiaddr
from colonymesh.node.transport.config import TransportConfig
from colonymesh.node.transport.connection import Connection, StreamHandler
from colonymesh.node.transport.host import Host
from colonymesh.node.transport.stream import MuxedStream

log = logging.getLogger("colonymesh.node.peer")

_IDENTIFY_TIMEOUT_S = 5.0
_SYNC_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class PeerConfig:
    keys: KeyPair
    membership: Membership
    certificate: Certificate | None = None
    listen: tuple[str, ...] = ("/ip4/127.0.0.1/tcp/0",)
    bootstrap: tuple[str, ...] = ()
    state_dir: Path | None = None
    gating: GatingConfig = field(default_factory=GatingConfig)
    messaging: MessagingConfig = field(default_factory=MessagingConfig)
    connections: ConnectionsConfig = field(default_factory=ConnectionsConfig)
    transport: TransportConfig = field(default_factory=TransportConfig)
    opener: OpenerConfig = field(default_factory=OpenerConfig)
    # Wall clock for certificate validity and envelope timestamps (tests pass their own).
    # Owner-signed revocations held at start (also applied to ``membership``).
    revocations: tuple[Revocation, ...] = ()
    clock: Callable[[], float] = time.time
    seed: int | None = None  # for the back-off jitter; None draws one from the OS


class Peer:
    """A running colony peer; create it with :meth:`Peer.open`."""

    def __init__(
        self,
        config: PeerConfig,
        host: Host,
        nursery: trio.Nursery,
        gatekeeper: Gatekeeper,
        messenger: Messenger,
    ) -> None:
        self.config = config
        self.host = host
        self.gatekeeper = gatekeeper
        self.messenger = messenger
        self._nursery = nursery
        rng = random.Random(config.seed if config.seed is not None else os.urandom(8))
        self.connections = ConnectionManager(host, gatekeeper, config.connections, rng, nursery)
        self.started_at = trio.current_time()
        self.certificate = config.certificate
        self.revocations = RevocationBook(config.membership, config.revocations)
        self.revocations.on_new = self._on_new_revocations
        gatekeeper.revocations_held = lambda: len(self.revocations)

    @classmethod
    @asynccontextmanager
    async def open(cls, config: PeerConfig) -> AsyncIterator[Peer]:
        if (
            config.certificate is not None
            and config.certificate.member_key != config.keys.public_key
        ):
            raise ColonymeshError("the certificate names another key than this peer's")
        sealer = EnvelopeSealer(
            Signer(config.keys), config.membership.colony.colony_id, config.clock()
        )
        opener = EnvelopeOpener(config.membership, config.opener)
        if config.certificate is not None:
            # Admit ourselves, so our own envelopes open (loopback, tests) and status has our roles.
            try:
                config.membership.admit(config.certificate, config.clock())
            except ColonymeshError as error:
                log.warning("our own certificate does not admit us: %s", error)
        gatekeeper = Gatekeeper(
            config.membership, opener, sealer, config.certificate, config.clock, config.gating
        )
        messenger = Messenger(sealer, opener, config.clock, config.messaging)
        async with (
            Host.open(
                config.keys,
                config=config.transport,
                gate=gatekeeper.gate,
                stream_filter=gatekeeper.stream_filter,
            ) as host,
            trio.open_nursery() as nursery,
        ):
            peer = cls(config, host, nursery, gatekeeper, messenger)
            messenger.on_bad_frame = peer._on_bad_frame
            gatekeeper.attach(host, nursery)
            gatekeeper.on_admitted = peer._on_admitted
            host.set_stream_handler(REQUEST_PROTOCOL, gatekeeper.guard(messenger.serve_request))
            host.set_stream_handler(SEND_PROTOCOL, gatekeeper.guard(messenger.serve_send))
            messenger.on("colony.ping", _answer_ping)
            messenger.on("colony.revocations.want", peer._answer_revocations)
            messenger.on("colony.revocations", peer._receive_revocations)
            for address in config.listen:
                listen_host, port, _ = multiaddr.parse_tcp_address(address)
                try:
                    await host.listen(listen_host, port)
                except OSError as error:
                    raise InputError(f"cannot listen on {address}: {error.strerror}") from None
            for address in config.bootstrap:
                nursery.start_soon(peer.connections.keep, address)
            log.info("peer %s listening on %s", host.peer_id, " ".join(host.listen_addrs))
            try:
                yield peer
            finally:
                nursery.cancel_scope.cancel()

    # --- identity -------------------------------------------------------------------

    @property
    def peer_id(self) -> str:
        return self.host.peer_id

    @property
    def listen_addrs(self) -> list[str]:
        return list(self.host.listen_addrs)

    # --- messaging -------------------------------------------------------------------

    def on(self, kind: str, handler: Handler) -> None:
        """Handle envelopes of ``kind``; for requests, the handler's return value is the answer."""
        self.messenger.on(kind, handler)

    def _deadline(self, timeout: float | None) -> float:
        return trio.current_time() + (
            self.config.messaging.request_timeout_s if timeout is None else timeout
        )

    async def request(self, peer_id: str, body: object, timeout: float | None = None) -> Any:
        """Send ``body`` to ``peer_id`` and return the body of its signed answer."""
        return (await self.request_envelope(peer_id, body, timeout)).body

    async def request_envelope(
        self, peer_id: str, body: object, timeout: float | None = None
    ) -> Incoming:
        deadline = self._deadline(timeout)
        connection = await self._connect(peer_id, deadline)
        return await self.messenger.request(connection, body, deadline)

    async def send(self, peer_id: str, body: object, timeout: float | None = None) -> None:
        """One-way: return once ``body`` is on its way to ``peer_id``."""
        deadline = self._deadline(timeout)
        connection = await self._connect(peer_id, deadline)
        await self.messenger.send(connection, body, deadline)

    async def _connect(self, peer_id: str, deadline: float) -> Connection:
        with trio.move_on_at(deadline):
            return await self.connections.connect(peer_id, deadline)
        raise PeerUnreachable(f"no connection to {peer_id} before the deadline")

    async def ping(self, peer_id: str, timeout: float | None = None) -> float:
        """Round-trip time of a signed ``colony.ping`` to ``peer_id``, in seconds."""
        nonce = os.urandom(16)
        started = trio.current_time()
        pong = await self.request(peer_id, Ping(nonce), timeout)
        if not isinstance(pong, Pong) or pong.nonce != nonce:
            raise PeerUnreachable(f"{peer_id} answered the ping with something else")
        return trio.current_time() - started

    # --- other colony protocols (DHT, gossip, Raft, chunk exchange) -----------------------

    def set_stream_handler(self, protocol: str, handler: StreamHandler) -> None:
        """Serve a colony stream protocol; streams from unadmitted connections are reset."""
        self.host.set_stream_handler(protocol, self.gatekeeper.guard(handler))

    async def open_stream(
        self, peer_id: str, protocols: Sequence[str], timeout: float | None = None
    ) -> MuxedStream:
        """A stream to an admitted ``peer_id`` (connecting if need be) speaking one of ``protocols``."""
        deadline = self._deadline(timeout)
        connection = await self._connect(peer_id, deadline)
        with trio.move_on_at(deadline):
            return await connection.open_stream(protocols)
        raise RequestTimeout(f"no stream to {peer_id} before the deadline")

    # --- connections -------------------------------------------------------------------

    def add_address(self, peer_id: str, address: str) -> None:
        self.connections.addresses.add(peer_id, address)

    async def connect(self, address: str, timeout: float | None = None) -> str:
        """Dial ``address`` and run the membership exchange; the peer id admitted."""
        connection = await self.connections.connect_addr(address, self._deadline(timeout))
        return connection.remote_peer_id

    def connected_peers(self) -> list[str]:
        return self.connections.connected_peers()

    def add_revocation(self, revocation: Revocation) -> bool:
        """Apply an owner-signed revocation (cutting the member now, telling our peers); True if new."""
        return bool(self.revocations.apply([revocation], source="local"))

    def _on_admitted(self, connection: Connection, certificate: Certificate, seen: int) -> None:
        with suppress(RuntimeError):  # the peer is shutting down
            self._nursery.start_soon(self._learn_addresses, connection)
            if seen > len(self.revocations):
                self._nursery.start_soon(self._pull_revocations, connection)

    # --- revocations (see colonymesh.node.peer.sync) -------------------------------------

    def _on_new_revocations(self, revocations: list[Revocation]) -> None:
        self.gatekeeper.wake()  # cut the revoked members now
        with suppress(RuntimeError):
            for connection in self.gatekeeper.admitted_connections():
                self._nursery.start_soon(self._push_revocations, connection, revocations)

    async def _push_revocations(
        self, connection: Connection, revocations: list[Revocation]
    ) -> None:
        body = Revocations(tuple(revocations[:REVOCATIONS_PER_MESSAGE_MAX]))
        try:
            await self.messenger.send(connection, body, trio.current_time() + _SYNC_TIMEOUT_S)
        except ColonymeshError as error:
            log.info("could not push revocations to %s: %s", connection.remote_peer_id, error)

    async def _pull_revocations(self, connection: Connection) -> None:
        deadline = trio.current_time() + _SYNC_TIMEOUT_S
        try:
            answer = await self.messenger.request(
                connection, WantRevocations(len(self.revocations)), deadline
            )
        except ColonymeshError as error:
            log.info("could not pull revocations from %s: %s", connection.remote_peer_id, error)
            return
        if isinstance(answer.body, Revocations):
            self.revocations.apply(answer.body.records, source=connection.remote_peer_id)

    async def _answer_revocations(self, incoming: Incoming) -> Revocations:
        return Revocations(self.revocations.newest())

    async def _receive_revocations(self, incoming: Incoming) -> None:
        records: tuple[Revocation, ...] = incoming.body.records
        self.revocations.apply(records, source=incoming.peer_id)

    async def _learn_addresses(self, connection: Connection) -> None:
        try:
            info = await self.host.identify(connection, _IDENTIFY_TIMEOUT_S)
        except (ColonymeshError, trio.TooSlowError, trio.BrokenResourceError) as error:
            log.info("identify of %s failed: %s", connection.remote_peer_id, error)
            return
        for address in info.listen_addrs:
            self.connections.addresses.add(connection.remote_peer_id, address)

    def _on_bad_frame(self, connection: Connection, cause: str) -> None:
        with suppress(RuntimeError):  # the peer is shutting down
            self._nursery.start_soon(connection.aclose)

    # --- reporting -----------------------------------------------------------------------

    def statistics(self) -> dict[str, Any]:
        certificate = self.certificate
        return {
            "peer_id": self.peer_id,
            "colony": self.config.membership.colony.name,
            "colony_id": self.config.membership.colony.colony_id.hex(),
            "name": certificate.name if certificate else None,
            "roles": [role.value for role in certificate.roles] if certificate else [],
            "listen_addrs": self.listen_addrs,
            "connected_peers": self.connected_peers(),
            "uptime_s": round(trio.current_time() - self.started_at, 3),
            "gating": self.gatekeeper.statistics(),
            "messaging": self.messenger.statistics(),
            "connections": self.connections.statistics(),
            "transport": {
                "connections": len(self.host.connections),
                "dialled": self.host.stats.dialled,
                "accepted": self.host.stats.accepted,
                "refused_by_gate": self.host.stats.refused_by_gate,
                "failed_upgrades": self.host.stats.failed_upgrades,
                "over_capacity": self.host.stats.over_capacity,
            },
            "membership": self.config.membership.statistics(),
            "revocations": self.revocations.statistics(),
        }


async def _answer_ping(incoming: Incoming) -> Pong:
    ping: Ping = incoming.body
    return Pong(ping.nonce)


class SyncPeer:
    """A :class:`Peer` on its own thread, for programs that do not run trio.

    ``start()`` blocks until the peer listens (or raises its startup error);
    every other method blocks the caller until the peer's thread answers.
    Handlers registered with :meth:`on` are plain functions, run on worker
    threads so they may block.
    """

    def __init__(self, config: PeerConfig, *, startup_timeout_s: float = 10.0) -> None:
        self.config = config
        self._startup_timeout_s = startup_timeout_s
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._peer: Peer | None = None
        self._stop: trio.Event | None = None
        self._error: BaseException | None = None

    def start(self) -> SyncPeer:
        if self._thread is not None:
            raise RuntimeError("SyncPeer already started")
        self._thread = threading.Thread(target=self._run, name="colonymesh-peer", daemon=True)
        self._thread.start()
        if not self._ready.wait(self._startup_timeout_s):
            raise ColonymeshError("the peer did not start in time")
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as error:
            self._error = error
        finally:
            self._ready.set()

    async def _main(self) -> None:
        async with Peer.open(self.config) as peer:
            self._peer = peer
            self._stop = trio.Event()
            self._token = trio.lowlevel.current_trio_token()
            self._ready.set()
            await self._stop.wait()

    def stop(self) -> None:
        if self._thread is None:
            return
        if self._token is not None and self._stop is not None and self._thread.is_alive():
            with suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join()
        self._thread = None

    def __enter__(self) -> SyncPeer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def peer(self) -> Peer:
        if self._peer is None or self._token is None:
            raise RuntimeError("SyncPeer is not running; call start()")
        return self._peer

    def _call(self, function: Callable[..., Any], *args: Any) -> Any:
        self.peer  # noqa: B018 -- raises if not running
        return trio.from_thread.run(function, *args, trio_token=self._token)

    def _call_sync(self, function: Callable[..., Any], *args: Any) -> Any:
        self.peer  # noqa: B018 -- raises if not running
        return trio.from_thread.run_sync(function, *args, trio_token=self._token)

    @property
    def peer_id(self) -> str:
        return self.peer.peer_id

    @property
    def listen_addrs(self) -> list[str]:
        return list(self._call_sync(lambda: self.peer.listen_addrs))

    def request(self, peer_id: str, body: object, timeout: float | None = None) -> Any:
        return self._call(self.peer.request, peer_id, body, timeout)

    def send(self, peer_id: str, body: object, timeout: float | None = None) -> None:
        self._call(self.peer.send, peer_id, body, timeout)

    def connect(self, address: str, timeout: float | None = None) -> str:
        return str(self._call(self.peer.connect, address, timeout))

    def add_address(self, peer_id: str, address: str) -> None:
        self._call_sync(self.peer.add_address, peer_id, address)

    def on(self, kind: str, handler: Callable[[Incoming], object | None]) -> None:
        async def run_in_thread(incoming: Incoming) -> object | None:
            return await trio.to_thread.run_sync(handler, incoming)

        self._call_sync(self.peer.on, kind, run_in_thread)

    def connected_peers(self) -> list[str]:
        return list(self._call_sync(self.peer.connected_peers))

    def statistics(self) -> dict[str, Any]:
        return dict(self._call_sync(self.peer.statistics))


__all__ = ["PROTOCOL_ID", "Peer", "PeerConfig", "SyncPeer"]
