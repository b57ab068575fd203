"""The trio driver of LAN discovery (:mod:`.mdns`): one UDP socket on the mDNS group.

It joins 224.0.0.251 on the configured interface (its IPv4 address, or the
kernel's choice), feeds every datagram to the core, sends what the core says,
and dials each peer the core finds — the dial goes through colony gating like
any other, so mDNS only ever suggests addresses. A found peer is dialled at
most once per ``redial_s`` (a stranger or a refused member answering every
query must not make us dial it every 10 s). Socket errors on send are logged
and dropped: discovery is best-effort, the node keeps running without it.
"""

from __future__ import annotations

import logging
import random
import socket
import struct
from dataclasses import dataclass, field

import trio

from colonymesh.node.dht.mdns import (
    DATAGRAM_BYTES_MAX,
    MdnsConfig,
    MdnsCore,
    PeerFound,
    SendDatagram,
)
from colonymesh.node.errors import ColonymeshError
from colonymesh.node.peer.peer import Peer

log = logging.getLogger("colonymesh.node.dht")
GROUP = "224.0.0.251"
PORT = 5353


@dataclass(frozen=True, slots=True)
class MdnsServiceConfig:
    interface: str = "0.0.0.0"  # the IPv4 address of the LAN interface; 0.0.0.0: the kernel's
    port: int = PORT
    redial_s: float = 30.0
    dial_timeout_s: float = 5.0
    core: MdnsConfig = field(default_factory=MdnsConfig)


class MdnsService:
    """``await nursery.start(MdnsService(peer).run)``; ``found`` counts discovered peers."""

    def __init__(self, peer: Peer, config: MdnsServiceConfig | None = None) -> None:
        self.peer = peer
        self.config = config or MdnsServiceConfig()
        self.dialled: dict[str, float] = {}
        self.connected_by_mdns = 0
        self.send_errors = 0
        self.core: MdnsCore | None = None

    def _socket(self) -> trio.socket.SocketType:
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):  # other mDNS responders share the port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        interface = socket.inet_aton(self.config.interface)
        membership = struct.pack("4s4s", socket.inet_aton(GROUP), interface)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, interface)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        return sock

    async def run(
        self, *, task_status: trio.TaskStatus[MdnsService] = trio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            sock = self._socket()
            await sock.bind(("0.0.0.0", self.config.port))
        except OSError as error:
            raise ColonymeshError(
                f"mDNS: cannot join {GROUP}:{self.config.port} on {self.config.interface}: "
                f"{error.strerror or error} (does the interface have a multicast route?)"
            ) from None
        self.core = core = MdnsCore(
            self.peer.peer_id,
            self.peer.listen_addrs,
            random.Random(),
            trio.current_time(),
            self.config.core,
        )
        log.info("mDNS: announcing %s on %s", self.peer.peer_id, self.config.interface)
        with sock:
            async with trio.open_nursery() as nursery:
                task_status.started(self)
                while True:
                    with trio.move_on_at(core.next_deadline()):
                        data, source = await sock.recvfrom(DATAGRAM_BYTES_MAX + 1)
                        effects = core.handle_datagram(data, trio.current_time(), source[0])
                        await self._carry_out(effects, sock, nursery)
                        continue
                    await self._carry_out(core.tick(trio.current_time()), sock, nursery)

    async def _carry_out(
        self,
        effects: list[SendDatagram | PeerFound],
        sock: trio.socket.SocketType,
        nursery: trio.Nursery,
    ) -> None:
        for effect in effects:
            match effect:
                case SendDatagram(data=data):
                    try:
                        await sock.sendto(data, (GROUP, self.config.port))
                    except OSError as error:
                        self.send_errors += 1
                        log.info("mDNS: send failed: %s", error)
                case PeerFound(peer_id=peer_id, addrs=addrs):
                    self._maybe_dial(peer_id, addrs, nursery)

    def _maybe_dial(self, peer_id: str, addrs: tuple[str, ...], nursery: trio.Nursery) -> None:
        now = trio.current_time()
        if peer_id in self.peer.connected_peers():
            return
        if now - self.dialled.get(peer_id, float("-inf")) < self.config.redial_s:
            return
        self.dialled[peer_id] = now
        nursery.start_soon(self._dial, peer_id, addrs)

    async def _dial(self, peer_id: str, addrs: tuple[str, ...]) -> None:
        for address in addrs:
            try:
                await self.peer.connect(address, timeout=self.config.dial_timeout_s)
            except (ColonymeshError, OSError, trio.TooSlowError) as error:
                log.info("mDNS: %s at %s: %s", peer_id, address, error)
                continue
            self.connected_by_mdns += 1
            log.info("mDNS: connected to %s at %s", peer_id, address)
            return

    def statistics(self) -> dict[str, int]:
        core = self.core
        return {
            "found": 0 if core is None else core.found,
            "malformed": 0 if core is None else core.malformed,
            "connected": self.connected_by_mdns,
            "send_errors": self.send_errors,
        }
