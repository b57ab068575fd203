"""The connection manager: one admitted connection per peer, a cap, dials by peer id, back-off.

* **Reuse**: :meth:`ConnectionManager.connect` returns the admitted
  connection a peer already has (either direction); concurrent callers for
  the same peer share one dial.
* **Cap**: at most ``peers_max`` admitted peers; dialling one more raises
  :class:`ConnectionLimitReached` (inbound ones are refused by the gatekeeper).
* **Addresses**: an :class:`AddressBook` of multiaddrs per peer id, filled
  from bootstrap addresses, from what callers add, and from identify answers
  of admitted peers (their listen addresses); bounded per peer and in total.
* **Back-off**: a failed dial makes the peer wait ``initial * 2**(n-1)``
  seconds (capped, with ±``jitter`` randomness) before the next attempt;
  success resets it. :class:`Backoff` is pure (``now`` and ``random.Random``
  are passed in). Bootstrap addresses are kept connected by one task each,
  redialling on that schedule whenever the connection drops.
"""

from __future__ import annotations

import logging
import random
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from colonymesh.node.errors import ColonymeshError
from colonymesh.node.peer.errors import (
    ConnectionLimitReached,
    NotAdmitted,
    PeerUnreachable,
)
from colonymesh.node.peer.gating import Gatekeeper
from colonymesh.node.transport import multiaddr
from colonymesh.node.transport.connection import Connection
from colonymesh.node.transport.errors import TransportError
from colonymesh.node.transport.host import Host

log = logging.getLogger("colonymesh.node.peer")

_DIAL_ERRORS = (
    TransportError,
    ColonymeshError,
    OSError,
    trio.TooSlowError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
)


@dataclass(frozen=True, slots=True)
class ConnectionsConfig:
    peers_max: int = 256
    dial_timeout_s: float = 5.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    backoff_jitter: float = 0.2  # fraction of the delay, drawn uniformly either way
    addresses_per_peer_max: int = 8
    peers_in_address_book_max: int = 4096


class Backoff:
    """Exponential back-off with jitter per key; pure."""

    def __init__(self, config: ConnectionsConfig, rng: random.Random) -> None:
        self._config = config
        self._rng = rng
        self._failures: dict[str, int] = {}
        self._ready_at: dict[str, float] = {}

    def delay(self, failures: int) -> float:
        base = min(
            self._config.backoff_max_s, self._config.backoff_initial_s * 2.0 ** (failures - 1)
        )
        spread = base * self._config.backoff_jitter
        return max(0.0, base + self._rng.uniform(-spread, spread))

    def failed(self, key: str, now: float) -> float:
        """Record a failure; the time the next attempt may start."""
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        ready = now + self.delay(failures)
        self._ready_at[key] = ready
        return ready

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)
        self._ready_at.pop(key, None)

    def ready_at(self, key: str) -> float:
        return self._ready_at.get(key, float("-inf"))

    def failures(self, key: str) -> int:
        return self._failures.get(key, 0)


class AddressBook:
    """Known dialable multiaddrs per peer id, newest first, bounded."""

    def __init__(self, per_peer_max: int, peers_max: int) -> None:
        self._per_peer_max = per_peer_max
        self._peers_max = peers_max
        self._addresses: OrderedDict[str, list[str]] = OrderedDict()

    def add(self, peer_id: str, address: str) -> None:
        try:
            host, port, named = multiaddr.parse_tcp_address(address)
        except ColonymeshError:
            return  # not a TCP address we can dial
        if named is not None and named != peer_id:
            return
        plain = multiaddr.tcp_address(host, port)
        if port == 0 or host in ("0.0.0.0", "::"):
            return
        known = self._addresses.pop(peer_id, [])
        if plain in known:
            known.remove(plain)
        known.insert(0, plain)
        del known[self._per_peer_max :]
        self._addresses[peer_id] = known
        while len(self._addresses) > self._peers_max:
            self._addresses.popitem(last=False)

    def addresses(self, peer_id: str) -> list[str]:
        return list(self._addresses.get(peer_id, []))

    def __len__(self) -> int:
        return len(self._addresses)


class ConnectionManager:
    """Dials, reuses and keeps admitted connections (see the module docs)."""

    def __init__(
        self,
        host: Host,
        gatekeeper: Gatekeeper,
        config: ConnectionsConfig,
        rng: random.Random,
        nursery: trio.Nursery,
    ) -> None:
        self._host = host
        self._gatekeeper = gatekeeper
        self.config = config
        self._nursery = nursery
        self.backoff = Backoff(config, rng)
        self.addresses = AddressBook(
            config.addresses_per_peer_max, config.peers_in_address_book_max
        )
        self._dialling: dict[str, trio.Event] = {}
        self.counters: dict[str, int] = {"dials": 0, "dial_failures": 0, "reused": 0}
        self.on_connected: Callable[[Connection], None] | None = None

    def connection_to(self, peer_id: str) -> Connection | None:
        """The admitted connection to ``peer_id`` that still takes new streams, if any."""
        for connection in self._gatekeeper.admitted_connections():
            if connection.remote_peer_id == peer_id and not connection.going_away:
                return connection
        return None

    def connected_peers(self) -> list[str]:
        return sorted({c.remote_peer_id for c in self._gatekeeper.admitted_connections()})

    async def connect(self, peer_id: str, deadline: float) -> Connection:
        """An admitted connection to ``peer_id``, reused or dialled by the deadline."""
        while True:
            existing = self.connection_to(peer_id)
            if existing is not None:
                self.counters["reused"] += 1
                return existing
            pending = self._dialling.get(peer_id)
            if pending is None:
                break
            with trio.move_on_at(deadline):
                await pending.wait()
            if trio.current_time() >= deadline:
                raise PeerUnreachable(f"no connection to {peer_id} by the deadline")
        if len(self.connected_peers()) >= self.config.peers_max:
            raise ConnectionLimitReached(f"already connected to {self.config.peers_max} peers")
        done = self._dialling[peer_id] = trio.Event()
        try:
            return await self._dial_peer(peer_id, deadline)
        finally:
            del self._dialling[peer_id]
            done.set()

    async def _dial_peer(self, peer_id: str, deadline: float) -> Connection:
        ready = self.backoff.ready_at(peer_id)
        if ready > deadline:
            raise PeerUnreachable(
                f"{peer_id}: backing off after {self.backoff.failures(peer_id)} failed dials "
                f"(next try in {ready - trio.current_time():.1f} s)"
            )
        if ready > trio.current_time():
            await trio.sleep_until(ready)
        addresses = self.addresses.addresses(peer_id)
        if not addresses:
            raise PeerUnreachable(f"no known address for {peer_id}")
        errors: list[str] = []
        for address in addresses:
            try:
                return await self._dial(f"{address}/p2p/{peer_id}", deadline)
            except NotAdmitted:
                raise
            except PeerUnreachable as error:
                errors.append(str(error))
        self.backoff.failed(peer_id, trio.current_time())
        raise PeerUnreachable(f"cannot reach {peer_id}: {'; '.join(errors)}")

    async def connect_addr(self, address: str, deadline: float) -> Connection:
        """Dial a multiaddr and run the membership exchange; with ``/p2p/ID``, reuse one we have."""
        _, _, named = multiaddr.parse_tcp_address(address)
        existing = self.connection_to(named) if named is not None else None
        if existing is not None:
            self.counters["reused"] += 1
            return existing
        return await self._dial(address, deadline)

    async def _dial(self, address: str, deadline: float) -> Connection:
        self.counters["dials"] += 1
        timeout = min(self.config.dial_timeout_s, deadline - trio.current_time())
        try:
            with trio.fail_after(max(timeout, 0.0)):
                connection = await self._host.dial_addr(address)
        except _DIAL_ERRORS as error:
            self.counters["dial_failures"] += 1
            raise PeerUnreachable(
                f"dial {address} failed: {type(error).__name__}: {error}"
            ) from None
        await self._gatekeeper.present(connection)  # NotAdmitted closes it
        self.backoff.succeeded(connection.remote_peer_id)
        host, port, _ = multiaddr.parse_tcp_address(address)
        self.addresses.add(connection.remote_peer_id, multiaddr.tcp_address(host, port))
        if self.on_connected is not None:
            self.on_connected(connection)
        return connection

    async def keep(self, address: str) -> None:
        """Keep a connection to ``address`` up for the peer's lifetime, redialling with back-off."""
        while True:
            ready = self.backoff.ready_at(address)
            if ready > trio.current_time():
                await trio.sleep_until(ready)
            try:
                connection = await self.connect_addr(
                    address, trio.current_time() + self.config.dial_timeout_s
                )
            except (PeerUnreachable, NotAdmitted) as error:
                ready = self.backoff.failed(address, trio.current_time())
                log.info(
                    "bootstrap %s: %s; retrying in %.1f s",
                    address,
                    error,
                    ready - trio.current_time(),
                )
                continue
            self.backoff.succeeded(address)
            log.info("connected to bootstrap peer %s at %s", connection.remote_peer_id, address)
            await connection.wait_closed()
            log.info("bootstrap peer %s at %s disconnected", connection.remote_peer_id, address)
            self.backoff.failed(address, trio.current_time())  # don't spin on a flapping peer

    def statistics(self) -> dict[str, Any]:
        return {
            **self.counters,
            "peers": len(self.connected_peers()),
            "address_book": len(self.addresses),
        }
