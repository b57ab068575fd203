"""What ``colonymesh node run`` runs: one :class:`Peer`, its control channel, until a signal.

Besides the peer, the node takes the colony roles its certificate and config
give it (:mod:`colonymesh.node.colony.roles`): a founding server serves the
ledger (Raft replica and member requests), and ``colonymesh executor run``
adds an executor service. ``status`` reports the Raft role, term, leader and
commit index while serving, and the executor's counters while executing.

Startup loads and cross-checks the key, colony and certificate (a mismatch
is an :class:`InputError` naming the file), opens the peer, binds the
control socket, and logs one "ready" line. A task watches the colony's
``revocations.cbor`` and applies new revocations as they appear, which cuts
the revoked members' connections. SIGINT or SIGTERM cancels everything in
order — control channel, peer tasks, connections — and the process exits 0
with its control socket removed.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import trio

from colonymesh import __version__
from colonymesh.executors.base import ExecutorKind
from colonymesh.fs.store import ChunkStore
from colonymesh.node.certs import Certificate, Membership, Revocation, Role
from colonymesh.node.colony import roles
from colonymesh.node.colony.client import ColonyClient, ColonyUnavailable, CommandRefused
from colonymesh.node.colony.discovery import DirectoryService, ServerAnnouncer, ServerDirectory
from colonymesh.node.colony.files import ColonyFiles
from colonymesh.node.colony.fscontrol import NodeFiles
from colonymesh.node.colony.fssync import FsSync
from colonymesh.node.colony.membership import VOTER_DEAD_ELECTION_TIMEOUTS, GroupKeeper
from colonymesh.node.colony.server import LedgerServer
from colonymesh.node.colony.specgossip import SpecIntake, SpecRelay
from colonymesh.node.colony.worker import ExecutorService
from colonymesh.node.colonyfiles import (
    REVOCATIONS_FILE,
    read_colony,
    read_record,
    read_revocations,
)
from colonymesh.node.config import ExecutorSettings, NodeConfig
from colonymesh.node.control import ControlServer, check_address
from colonymesh.node.dht.driver import DhtService, DhtServiceConfig
from colonymesh.node.dht.mdns_driver import MdnsService, MdnsServiceConfig
from colonymesh.node.errors import ColonymeshError, InputError
from colonymesh.node.fsnet.control import fs_commands
from colonymesh.node.fsnet.replicate import ReplicationService
from colonymesh.node.fsnet.service import ChunkService
from colonymesh.node.gossip.driver import GossipService, GossipServiceConfig
from colonymesh.node.identity import read_key_file
from colonymesh.node.peer.discovery_commands import discovery_commands
from colonymesh.node.peer.peer import Peer, PeerConfig

log = logging.getLogger("colonymesh.node")
REVOCATIONS_POLL_S = 1.0
# On a signal, how long the executor may take to stop its work and unregister.
EXECUTOR_STOP_S = 15.0
# What the node's chunk store may hold; unpinned blocks are evicted first (fs/store.py).
FS_CAPACITY_BYTES = 10 * 2**30


def load_colony(path: Path) -> tuple[Membership, list[Revocation], Path]:
    """The membership of the colony at ``path``, its revocations, and its folder."""
    folder = path if path.is_dir() else path.parent
    colony = read_colony(path)  # the folder's colony.cbor, or the file itself
    membership = Membership(colony)
    revocations = read_revocations(folder, colony)
    for revocation in revocations:
        membership.add_revocation(revocation)
    return membership, revocations, folder


def build_peer_config(config: NodeConfig) -> tuple[PeerConfig, Path]:
    keys = read_key_file(config.key)
    membership, revocations, folder = load_colony(config.colony)
    certificate: Certificate | None = None
    if config.certificate is not None:
        certificate = read_record(config.certificate, Certificate)
        if certificate.member_key != keys.public_key:
            raise InputError(
                f"{config.certificate}: certificate is for {certificate.peer_id}, "
                f"not this node's key {keys.peer_id} ({config.key})"
            )
        try:
            membership.check(certificate, time.time())
        except ColonymeshError as error:
            # Run anyway (a not-yet-valid certificate may become valid); peers will refuse us.
            log.warning("%s: our certificate does not admit us now: %s", config.certificate, error)
    else:
        log.warning("no certificate configured: no colony peer will admit this node")
    peer_config = PeerConfig(
        keys=keys,
        membership=membership,
        certificate=certificate,
        listen=config.listen,
        bootstrap=config.bootstrap,
        state_dir=config.state_dir,
        gating=config.gating,
        messaging=config.messaging,
        connections=config.connections,
        revocations=tuple(revocations),
    )
    return peer_config, folder


class Roles:
    """The colony roles this node runs (for ``status``)."""

    def __init__(self) -> None:
        self.server: LedgerServer | None = None
        self.executor: ExecutorService | None = None
        self.executor_error = ""
        # Stopped first on a signal, while the peer can still carry its unregistration.
        self.executor_scope = trio.CancelScope()
        self.executor_stopped = trio.Event()
        self.dht: DhtService | None = None
        self.gossip: GossipService | None = None
        self.mdns: MdnsService | None = None
        self.replication: ReplicationService | None = None
        self.chunks: ChunkService | None = None
        self.directory: ServerDirectory | None = None
        self.announcer: ServerAnnouncer | None = None
        self.intake: SpecIntake | None = None
        self.keeper: GroupKeeper | None = None

    def status(self) -> dict[str, Any]:
        document: dict[str, Any] = {}
        if self.directory is not None:
            document["discovery"] = self.directory.status()
        if self.intake is not None:
            document["specs"] = {
                **dataclasses.asdict(self.intake.stats),
                "pending": len(self.intake.pending),
            }
        if self.mdns is not None:
            document["mdns"] = self.mdns.statistics()
        if self.replication is not None:
            document["replication"] = self.replication.statistics()
        if self.dht is not None:
            document["dht"] = {**self.dht.statistics(), "contacts": len(self.dht.routing_table())}
        if self.gossip is not None:
            document["gossip"] = self.gossip.statistics()
        if self.server is not None:
            raft = self.server.driver.status()
            document["ledger"] = {
                "role": raft.role.name.lower(),
                "term": raft.term,
                "leader": raft.leader or "",
                "commit": raft.commit,
                "applied": raft.applied,
                "voters": list(raft.conf.voters),
                "processes": self.server.ledger.counts(),
                "executors": len(self.server.ledger.executors),
                "learners": list(raft.conf.learners),
                "group": dataclasses.asdict(self.keeper.stats) if self.keeper else {},
            }
        if self.executor is not None or self.executor_error:
            service = self.executor
            document["executor"] = {
                "name": service.name if service else "",
                "type": service.executor_type if service else "",
                "running": sorted(service.running) if service else [],
                "stats": dataclasses.asdict(service.stats) if service else {},
                "client": dataclasses.asdict(service.client.stats) if service else {},
                "error": self.executor_error,
            }
        return document


async def run_node(
    config: NodeConfig, executor: ExecutorSettings | None = None, kind: ExecutorKind | None = None
) -> int:
    """Run the node (and, given ``executor``, an executor service) until a signal.

    ``kind`` is the executor kind to serve, built by the caller (``executor run
    --executor-config``); without it the ``[executor]`` settings name a Python registry.
    """
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        peer_config, folder = build_peer_config(config)
        check_address(config.control_address)
        config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if executor is not None:
            check_executor(config, peer_config.certificate, executor)
            kind = kind or roles.executor_kind(executor.kind, executor.functions)
        server_config = None
        if config.colony_settings is not None:
            server_config = roles.server_config(
                config.colony_settings,
                config.state_dir,
                folder,
                peer_config.membership.colony,
            )
        state = Roles()
        async with trio.open_nursery() as top:
            top.start_soon(_stop_on_signal, signals, top.cancel_scope, state)
            async with Peer.open(peer_config) as peer, trio.open_nursery() as duties:
                commands = _commands(peer, config, folder, state)
                # Every node keeps a chunk store and serves the meta-filesystem.
                chunks = ChunkService(
                    peer, ChunkStore(config.state_dir / "chunks", FS_CAPACITY_BYTES)
                )
                commands.update(fs_commands(chunks))
                state.chunks = chunks
                # Labelled files: metadata in the ledger, bytes in this store (kept pinned).
                files = NodeFiles(
                    chunks, lambda: roles.find_servers(peer, config.colony_settings, timeout_s=10.0)
                )
                commands.update(files.commands())
                duties.start_soon(files.keep_pins_forever)
                control = ControlServer(config.control_address, commands)
                # Every node joins the colony's DHT and gossip mesh.
                state.dht = await duties.start(DhtService(peer, DhtServiceConfig()).run)
                # Chunks are announced in the DHT and kept at k replicas across peers.
                state.replication = await duties.start(
                    ReplicationService(chunks, chunks.use_dht(state.dht)).run
                )
                state.gossip = await duties.start(GossipService(peer, GossipServiceConfig()).run)
                # Every node keeps the newest server-group announcement (leader discovery).
                state.directory = ServerDirectory(peer.config.membership)
                await duties.start(
                    DirectoryService(peer, state.directory, state.gossip, state.dht).run
                )
                commands.update(discovery_commands(state.dht, state.gossip))
                if config.mdns:  # LAN discovery: found peers are dialled, then gated
                    mdns = MdnsServiceConfig(interface=config.mdns_interface, port=config.mdns_port)
                    state.mdns = await duties.start(MdnsService(peer, mdns).run)
                await top.start(control.serve)
                top.start_soon(_watch_revocations, peer, folder)
                if server_config is not None and roles.serves_ledger(peer, config.colony_settings):
                    state.server = await roles.start_server(peer, server_config, duties)
                    state.announcer = ServerAnnouncer(
                        state.server, state.directory, state.gossip, state.dht
                    )
                    duties.start_soon(state.announcer.run)
                    # Submissions gossiped by members that cannot reach the leader.
                    state.intake = SpecIntake(state.server, state.gossip)
                    await duties.start(state.intake.run)
                    # The leader replaces dead voters with spare server-role peers.
                    state.keeper = GroupKeeper(
                        state.server,
                        lambda: roles.admitted_servers(peer),
                        # As many voters as founded the group: 3 by default, 5 if 5 founded it.
                        voters_target=len(server_config.founding_servers),
                        voter_dead_s=VOTER_DEAD_ELECTION_TIMEOUTS
                        * server_config.raft.election_timeout_s,
                    )
                    duties.start_soon(state.keeper.run)
                elif server_config is None and _holds(peer, Role.SERVER):
                    log.warning(
                        "this node holds the server role but %s has no [colony] section "
                        "naming the servers: not serving the ledger",
                        config.path,
                    )
                SpecRelay(peer, state.gossip, state.intake)  # for members without gossip
                if executor is not None and kind is not None:
                    duties.start_soon(_run_executor, peer, config, executor, kind, state)
                log.info(
                    "node %s ready: colony %s, listening on %s, control at %s",
                    peer.peer_id,
                    peer_config.membership.colony.name,
                    " ".join(peer.listen_addrs),
                    config.control_address,
                )
                await trio.sleep_forever()
    log.info("node stopped")
    return 0


def _holds(peer: Peer, role: Role) -> bool:
    return peer.certificate is not None and peer.certificate.has_role(role)


def check_executor(
    config: NodeConfig, certificate: Certificate | None, settings: ExecutorSettings
) -> None:
    """Refuse, before starting, an executor its certificate does not allow."""
    where = config.certificate or config.path
    if certificate is None or not certificate.has_role(Role.EXECUTOR):
        raise InputError(f"{where}: an executor needs a certificate with the executor role")
    if settings.executor_type and settings.executor_type != certificate.executor_type:
        raise InputError(
            f"{where}: the certificate is for executor type {certificate.executor_type!r}, "
            f"not {settings.executor_type!r}"
        )


async def _run_executor(
    peer: Peer,
    config: NodeConfig,
    settings: ExecutorSettings,
    kind: ExecutorKind,
    state: Roles,
) -> None:
    """Serve ``kind`` until cancelled; registration waits for the colony to answer."""
    try:
        with state.executor_scope:
            await _serve_executor(peer, config, settings, kind, state)
    finally:
        state.executor_stopped.set()


async def _serve_executor(
    peer: Peer,
    config: NodeConfig,
    settings: ExecutorSettings,
    kind: ExecutorKind,
    state: Roles,
) -> None:
    certificate = peer.certificate
    if certificate is None:  # checked by check_executor before the node started
        return
    while True:
        try:
            servers = await roles.find_servers(peer, config.colony_settings, timeout_s=5.0)
        except roles.RoleError as error:
            # No server among our connections: the client finds the leader through
            # the server-group announcements (gossip, DHT, or by asking peers).
            log.info("executor: %s; finding the leader by announcement", error)
            servers = []
        client = ColonyClient(peer, servers, directory=state.directory, gossip=state.gossip)
        service = ExecutorService(
            client,
            kind,
            name=settings.name or certificate.name,
            concurrency=settings.concurrency,
        )
        if state.chunks is not None:  # specs' fs directives, synced under state_dir/fs
            service.fs = FsSync(ColonyFiles(client, state.chunks), config.state_dir / "fs")
        state.executor = service
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(service.run)  # returns once registered
                state.executor_error = ""
            return
        except (ColonyUnavailable, CommandRefused) as error:
            # Registration needs a leader; a refusal (e.g. the name is taken) may clear.
            state.executor_error = str(error)
            log.warning("executor %s: not registered: %s; retrying", service.name, error)
            await trio.sleep(1.0)


async def _stop_on_signal(signals: Any, scope: trio.CancelScope, state: Roles) -> None:
    async for signum in signals:
        log.info("received %s; shutting down", signal.Signals(signum).name)
        if state.executor is not None:
            # The executor unregisters (re-queuing its work) through the peer: stop it
            # while the peer still runs, then the rest.
            state.executor_scope.cancel()
            with trio.move_on_after(EXECUTOR_STOP_S):
                await state.executor_stopped.wait()
        scope.cancel()
        return


def _apply_revocations(peer: Peer, folder: Path) -> int:
    """Apply revocations.cbor's new entries; how many were new."""
    colony = peer.config.membership.colony
    return len(peer.revocations.apply(read_revocations(folder, colony), source=REVOCATIONS_FILE))


async def _watch_revocations(peer: Peer, folder: Path) -> None:
    path = folder / REVOCATIONS_FILE
    seen: tuple[int, int] | None = None
    while True:
        try:
            stat = path.stat()
            current: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            current = None
        if current != seen:
            seen = current
            if current is not None:
                try:
                    _apply_revocations(peer, folder)
                except ColonymeshError as error:
                    log.warning("%s: not applied: %s", path, error)
        await trio.sleep(REVOCATIONS_POLL_S)


def _commands(peer: Peer, config: NodeConfig, folder: Path, state: Roles) -> dict[str, Any]:
    async def ping(args: dict[str, Any]) -> dict[str, Any]:
        peer_id = args.get("peer_id")
        if peer_id is None:
            return {"pong": True}
        if not isinstance(peer_id, str):
            raise InputError("peer_id must be text")
        timeout = args.get("timeout_s", 5.0)
        if not isinstance(timeout, int | float) or not 0 < timeout <= 60:
            raise InputError("timeout_s must be a number of seconds in (0, 60]")
        rtt = await peer.ping(peer_id, timeout=float(timeout))
        return {"peer_id": peer_id, "rtt_ms": round(rtt * 1000, 3)}

    async def status(args: dict[str, Any]) -> dict[str, Any]:
        return {
            **peer.statistics(),
            "pid": os.getpid(),
            "version": __version__,
            "config": str(config.path.resolve()),
            "control": config.control_address,
            **state.status(),
        }

    async def peers(args: dict[str, Any]) -> dict[str, Any]:
        """Admitted peers, once each (two peers dialling each other may hold two connections)."""
        listed: dict[str, dict[str, Any]] = {}
        for connection in peer.gatekeeper.admitted_connections():
            known = listed.get(connection.remote_peer_id)
            if known is not None:
                known["connections"] += 1
                continue
            certificate = peer.gatekeeper.certificate_of(connection)
            listed[connection.remote_peer_id] = {
                "peer_id": connection.remote_peer_id,
                "name": certificate.name if certificate else "",
                "roles": [r.value for r in certificate.roles] if certificate else [],
                "remote_addr": connection.remote_addr,
                "connections": 1,
            }
        return {"peers": [listed[key] for key in sorted(listed)]}

    async def connect(args: dict[str, Any]) -> dict[str, Any]:
        address = args.get("address")
        if not isinstance(address, str):
            raise InputError("address must be a multiaddr")
        return {"peer_id": await peer.connect(address, timeout=10.0)}

    async def reload(args: dict[str, Any]) -> dict[str, Any]:
        return {"revocations_added": _apply_revocations(peer, folder)}

    return {"ping": ping, "status": status, "peers": peers, "connect": connect, "reload": reload}
