"""Finding the ledger's leader without configuration: signed server-group announcements.

What it owns: the announcement a leading server publishes, how every peer
checks and keeps the newest one (:class:`ServerDirectory`), and the tasks
that move it around (:class:`ServerAnnouncer` on server peers,
:class:`DirectoryService` on every ``node run`` peer).

How it works. While a server leads, it seals a :class:`ServerGroup` (its
term, itself as leader, the voters, and where each listens) with its own key
and publishes the frame on the gossip topic :data:`SERVERS_TOPIC` at once
when it wins a term and every :data:`ANNOUNCE_S` after, and stores it in the
DHT under :func:`dht_key` on winning a term (for peers that join between
announcements). Every peer keeps the newest valid announcement: ordered by
(term, timestamp), where valid means the frame is of this colony, signed by
its sender, the sender is a member whose certificate holds the ``server``
role, and it names itself the leader. So no member can redirect others to a
peer of its choosing unless it is a server, and a stale leader's
announcement loses to the next term's.

A member that runs neither gossip nor the DHT (an SDK client, a CLI) asks
any peer it is connected to with ``colony.where_leader``; the answer relays
the announcement frame unchanged, with the leader's certificate, and the
asker verifies it itself (:meth:`ColonyClient._discover
<colonymesh.node.colony.client.ColonyClient>`). The relay cannot forge it.

Invariants: a directory's announcement only moves forward in (term,
timestamp); a frame that fails any check changes nothing and is counted.
Announcements are hints: the leader they name may have died since, and the
client then falls back to the voters they list, whose not-leader answers say
where the leader is.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import trio

from colonymesh.consensus import Role as RaftRole
from colonymesh.node.certs import Certificate, Membership, Role, decode_record, encode_record
from colonymesh.node.envelope import (
    EnvelopeSealer,
    check_signature,
    decode_frame,
    message,
)
from colonymesh.node.errors import ColonymeshError
from colonymesh.node.identity import Signer, peer_id_of
from colonymesh.node.schema import limit

log = logging.getLogger("colonymesh.node.colony")

SERVERS_TOPIC = "colony.servers"
ANNOUNCE_S = 1.0  # a leader re-announces this often (and at once on winning a term)
ANNOUNCEMENT_BYTES_MAX = 16 * 1024
CERTIFICATE_BYTES_MAX = 16 * 1024
ADDRS_MAX = 64


@message("colony.server_group")
@dataclass(frozen=True, slots=True)
class ServerGroup:
    """Who leads the ledger's Raft group in ``term``, its voters, and where they listen."""

    term: int
    leader: str = field(metadata=limit(128))
    voters: tuple[str, ...] = field(default=(), metadata=limit(16))
    # Full multiaddrs ending in /p2p/<peer id>, of the leader and the voters.
    addrs: tuple[str, ...] = field(default=(), metadata=limit(ADDRS_MAX))


@message("colony.where_leader")
@dataclass(frozen=True, slots=True)
class WhereLeader:
    """Any peer: the newest server-group announcement you hold?"""


@message("colony.leader_is")
@dataclass(frozen=True, slots=True)
class LeaderIs:
    """The announcement frame as its leader sealed it (empty: none known), and its certificate."""

    frame: bytes = field(default=b"", metadata=limit(ANNOUNCEMENT_BYTES_MAX))
    certificate: bytes = field(default=b"", metadata=limit(CERTIFICATE_BYTES_MAX))


def dht_key(colony_id: bytes) -> bytes:
    return hashlib.sha256(b"colonymesh/servers/" + colony_id).digest()


def split_addr(address: str) -> tuple[str, str] | None:
    """(peer id, address) of a multiaddr ending in /p2p/<peer id>; None otherwise."""
    head, sep, peer_id = address.rpartition("/p2p/")
    if not sep or not head or not peer_id or "/" in peer_id:
        return None
    return peer_id, address


@dataclass(slots=True)
class DirectoryStatistics:
    accepted: int = 0  # announcements newer than the one held
    stale: int = 0  # valid but not newer
    refused: int = 0  # failed a check


class ServerDirectory:
    """The newest valid server-group announcement this peer has seen (see the module docs)."""

    def __init__(self, membership: Membership) -> None:
        self.membership = membership
        self.group: ServerGroup | None = None
        self.frame = b""
        self.certificate = b""  # the announcing leader's certificate record
        self.version = 0  # bumped on every accepted announcement
        self._order = (-1, -1)
        self.stats = DirectoryStatistics()
        self.changed = trio.Event()

    def observe(self, frame: bytes, certificate: bytes = b"", now: float | None = None) -> bool:
        """Check ``frame``; keep it if newer. Whether it was accepted."""
        now = time.time() if now is None else now
        try:
            decoded = decode_frame(frame, ANNOUNCEMENT_BYTES_MAX, self.membership.colony.colony_id)
            check_signature(decoded)
            envelope = decoded.envelope
            body = envelope.body
            if not isinstance(body, ServerGroup):
                raise ColonymeshError(f"a {envelope.kind} is no server-group announcement")
            held = self._certificate_of(envelope.sender, certificate, now)
            if not held.has_role(Role.SERVER):
                raise ColonymeshError(f"{held.name} holds no server role")
            if peer_id_of(envelope.sender) != body.leader:
                raise ColonymeshError("an announcement must name its sender the leader")
        except (ColonymeshError, ValueError) as error:
            self.stats.refused += 1
            log.info("server-group announcement refused: %s", error)
            return False
        order = (body.term, envelope.timestamp_ms)
        if order <= self._order:
            self.stats.stale += 1
            return False
        self._order = order
        self.group = body
        self.frame = frame
        self.certificate = encode_record(held)
        self.version += 1
        self.stats.accepted += 1
        self.changed.set()
        self.changed = trio.Event()
        return True

    def _certificate_of(self, sender: bytes, record: bytes, now: float) -> Certificate:
        held = self.membership.certificate_of(sender, now)
        if held is None and record:
            held = self.membership.admit(decode_record(Certificate, record), now)
        if held is None or held.member_key != sender:
            raise ColonymeshError(f"{peer_id_of(sender)} is not a known member")
        return held

    @property
    def leader(self) -> str | None:
        return self.group.leader if self.group is not None else None

    def servers(self) -> list[str]:
        """The announced leader first, then the other voters."""
        if self.group is None:
            return []
        return [self.group.leader, *(v for v in self.group.voters if v != self.group.leader)]

    def addresses(self) -> list[tuple[str, str]]:
        if self.group is None:
            return []
        return [pair for a in self.group.addrs if (pair := split_addr(a)) is not None]

    def status(self) -> dict[str, Any]:
        group = self.group
        return {
            "leader": group.leader if group else "",
            "term": group.term if group else 0,
            "voters": list(group.voters) if group else [],
            **{k: getattr(self.stats, k) for k in ("accepted", "stale", "refused")},
        }


def full_addrs(peer_id: str, addresses: list[str]) -> list[str]:
    return [a if "/p2p/" in a else f"{a}/p2p/{peer_id}" for a in addresses]


class ServerAnnouncer:
    """A server peer's duty: announce the group while it leads (see the module docs)."""

    def __init__(self, server: Any, directory: ServerDirectory, gossip: Any, dht: Any) -> None:
        self.server = server  # LedgerServer (typed loosely: this module is imported by it)
        self.peer = server.peer
        self.directory = directory
        self.gossip = gossip
        self.dht = dht
        self.announced = 0
        colony_id = self.peer.config.membership.colony.colony_id
        self._sealer = EnvelopeSealer(Signer(self.peer.config.keys), colony_id, time.time())

    def group(self) -> ServerGroup | None:
        status = self.server.driver.status()
        if status.role is not RaftRole.LEADER:
            return None
        me = self.peer.peer_id
        voters = tuple(sorted(status.conf.voters))
        addrs = full_addrs(me, list(self.peer.listen_addrs))
        for voter in voters:
            if voter != me:
                known = self.peer.connections.addresses.addresses(voter)[:2]
                addrs += full_addrs(voter, known)
        return ServerGroup(status.term, me, voters, tuple(addrs[:ADDRS_MAX]))

    async def run(self) -> None:
        last_term = -1
        last_at = -float("inf")
        async with trio.open_nursery() as nursery:
            while True:
                await trio.sleep(0.05)
                group = self.group()
                if group is None:
                    continue
                fresh_term = group.term != last_term
                if not fresh_term and trio.current_time() - last_at < ANNOUNCE_S:
                    continue
                last_term, last_at = group.term, trio.current_time()
                frame = self._sealer.seal(group, time.time())
                self.directory.observe(frame, encode_record(self.peer.certificate), time.time())
                try:
                    await self.gossip.publish(SERVERS_TOPIC, frame)
                    self.announced += 1
                except ColonymeshError as error:
                    log.info("server-group announcement not published: %s", error)
                if fresh_term:
                    log.info("announcing: leader of term %d, voters %s", group.term, group.voters)
                    nursery.start_soon(self._store, frame)

    async def _store(self, frame: bytes) -> None:
        colony_id = self.peer.config.membership.colony.colony_id
        with trio.move_on_after(10.0):
            try:
                await self.dht.put_value(dht_key(colony_id), frame)
            except ColonymeshError as error:
                log.info("server-group announcement not stored in the DHT: %s", error)


class DirectoryService:
    """Every peer's side: keep the directory from gossip and the DHT; answer ``where_leader``."""

    def __init__(self, peer: Any, directory: ServerDirectory, gossip: Any, dht: Any) -> None:
        self.peer = peer
        self.directory = directory
        self.gossip = gossip
        self.dht = dht
        peer.on("colony.where_leader", self._where_leader)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.gossip.subscribe(SERVERS_TOPIC, self._delivered)
        task_status.started()
        colony_id = self.peer.config.membership.colony.colony_id
        # Joined between announcements: the DHT holds the newest term's.
        for delay in (1.0, 3.0, 10.0):
            await trio.sleep(delay)
            if self.directory.group is not None:
                return
            with trio.move_on_after(10.0):
                try:
                    record = await self.dht.get_value(dht_key(colony_id))
                except ColonymeshError as error:
                    log.info("no server-group announcement from the DHT: %s", error)
                    continue
                if record is not None:
                    self.directory.observe(record.value)

    def _delivered(self, delivered: Any) -> None:
        self.directory.observe(delivered.data)

    async def _where_leader(self, incoming: Any) -> LeaderIs:
        return LeaderIs(self.directory.frame, self.directory.certificate)
