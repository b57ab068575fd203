"""A whole colony on loopback in one trio run: the demo's, the tests' and the benchmarks'.

Creates a colony (owner key, certificates for every member) and opens real
peers on 127.0.0.1 with real sockets, Noise and yamux: ``servers`` server
peers replicating the ledger with Raft on real disks (under ``state_dir``),
``executors`` executor peers serving Python functions (plus any
``executor_groups``: peers of other types running other executor kinds,
e.g. local processes or Slurm), and one submitter
whose :class:`~colonymesh.node.colony.client.ColonyClient` is handed out.
Every executor and the submitter keep a chunk store of their own (under
``state_dir/chunks``) for labelled files (``LocalColony.files``); executors
carry out specs' fs sync directives in ``state_dir/fs/<name>``.
Everything lives in the caller's task tree and stops when the block exits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trio

from colonymesh.executors.base import ExecutorKind
from colonymesh.executors.python import PythonFunctions
from colonymesh.fs.store import ChunkStore
from colonymesh.node.certs import (
    Capabilities,
    Certificate,
    Colony,
    Membership,
    Role,
    create_colony,
    issue_certificate,
)
from colonymesh.node.colony.client import ColonyClient
from colonymesh.node.colony.files import ColonyFiles
from colonymesh.node.colony.fssync import FsSync
from colonymesh.node.colony.server import LedgerServer, ServerConfig
from colonymesh.node.colony.worker import ExecutorService
from colonymesh.node.fsnet.service import ChunkService
from colonymesh.node.identity import KeyPair
from colonymesh.node.peer.peer import Peer, PeerConfig

log = logging.getLogger("colonymesh.node.colony")
FS_CAPACITY_BYTES = 2 * 2**30  # each member's chunk store (unpinned blocks are evicted first)


@dataclass(frozen=True)
class ExecutorGroup:
    """``count`` executor peers of type ``executor_type`` running ``kind``."""

    executor_type: str
    kind: ExecutorKind
    count: int = 1


@dataclass
class LocalColonyConfig:
    state_dir: Path
    functions: PythonFunctions | None = None
    servers: int = 3
    executors: int = 4  # peers serving ``functions`` as ``executor_type``
    executor_type: str = "python"
    concurrency: int = 2
    name: str = "local"
    executor_groups: tuple[ExecutorGroup, ...] = ()

    def groups(self) -> list[ExecutorGroup]:
        """Every executor group: the Python functions' first, then ``executor_groups``."""
        python = (
            [ExecutorGroup(self.executor_type, self.functions, self.executors)]
            if self.functions is not None and self.executors > 0
            else []
        )
        return python + list(self.executor_groups)


@dataclass
class LocalColony:
    colony: Colony
    client: ColonyClient
    owner: KeyPair
    servers: list[LedgerServer] = field(default_factory=list)
    executors: list[ExecutorService] = field(default_factory=list)
    peers: list[Peer] = field(default_factory=list)
    # The submitter's labelled files (its own chunk store); every executor has its own too.
    files: ColonyFiles | None = None

    def leader(self) -> LedgerServer | None:
        return next((s for s in self.servers if s.is_leader), None)

    def issue(self, name: str, role: Role, executor_type: str = "") -> tuple[KeyPair, Certificate]:
        """Keys and a certificate for a new member, as the colony owner would issue them."""
        now = int(time.time())
        keys = KeyPair.generate()
        certificate = issue_certificate(
            self.owner,
            self.colony,
            keys.public_key,
            name=name,
            roles=[role],
            # Backdated as the CLI's `colony admit` does: the ledger's clock trails
            # real time until the leader's first tick, and may start at genesis.
            not_before=now - 300,
            not_after=now + 86400,
            serial=1000 + len(self.peers),
            executor_type=executor_type,
            capabilities=Capabilities(cpu_millicores=4000, mem_bytes=8 * 2**30),
        )
        return keys, certificate

    @property
    def bootstrap(self) -> list[str]:
        """Where the server peers listen."""
        return [address for server in self.servers for address in server.peer.listen_addrs]


@asynccontextmanager
async def open_local_colony(config: LocalColonyConfig) -> AsyncIterator[LocalColony]:
    now = int(time.time())
    owner = KeyPair.generate()
    colony = create_colony(owner, config.name, now - 60)
    members: list[tuple[str, KeyPair, Certificate]] = []

    def admit(name: str, role: Role, executor_type: str = "") -> None:
        keys = KeyPair.generate()
        certificate = issue_certificate(
            owner,
            colony,
            keys.public_key,
            name=name,
            roles=[role],
            not_before=now - 60,
            not_after=now + 86400,
            serial=len(members) + 1,
            executor_type=executor_type,
            capabilities=Capabilities(
                cpu_millicores=4000, mem_bytes=8 * 2**30, storage_bytes=2**34
            ),
        )
        members.append((name, keys, certificate))

    for i in range(config.servers):
        admit(f"server-{i + 1}", Role.SERVER)
    kinds: list[ExecutorKind] = []
    for group in config.groups():
        for i in range(group.count):
            admit(f"{group.executor_type}-{i + 1}", Role.EXECUTOR, group.executor_type)
            kinds.append(group.kind)
    admit("submitter", Role.SUBMITTER)
    server_certificates = tuple(c for _, _, c in members[: config.servers])
    server_ids = tuple(c.peer_id for c in server_certificates)

    async with AsyncExitStack() as stack:
        peers: list[Peer] = []
        for _, keys, certificate in members:
            membership = Membership(colony)
            for _, _, known in members:
                membership.admit(known, time.time())
            peer = await stack.enter_async_context(
                Peer.open(PeerConfig(keys, membership, certificate))
            )
            peers.append(peer)
        for peer in peers:
            for other in peers[: config.servers]:
                if other is not peer:
                    for address in other.listen_addrs:
                        peer.add_address(other.peer_id, address)
        async with trio.open_nursery() as nursery:
            local = LocalColony(colony, ColonyClient(peers[-1], server_ids), owner, peers=peers)
            for index, peer in enumerate(peers[: config.servers]):
                server = LedgerServer(
                    peer,
                    ServerConfig(
                        state_dir=config.state_dir / f"server-{index + 1}",
                        founding_servers=server_ids,
                        genesis_ms=colony.created * 1000,
                        founding_certificates=server_certificates,
                    ),
                    nursery,
                )
                await nursery.start(server.run)
                local.servers.append(server)
            await local.client.admit_self()
            local.files = _files(local.client, config.state_dir / "chunks" / "submitter")
            executor_members = zip(
                members[config.servers : -1], peers[config.servers : -1], kinds, strict=True
            )
            for (name, _, _), peer, kind in executor_members:
                client = ColonyClient(peer, server_ids)
                service = ExecutorService(client, kind, name=name, concurrency=config.concurrency)
                service.fs = FsSync(
                    _files(client, config.state_dir / "chunks" / name),
                    config.state_dir / "fs" / name,
                )
                await nursery.start(service.run)
                local.executors.append(service)
            try:
                yield local
            finally:
                nursery.cancel_scope.cancel()


def _files(client: ColonyClient, store_dir: Path) -> ColonyFiles:
    """A member's labelled files over a chunk store of its own, served to its peers."""
    return ColonyFiles(client, ChunkService(client.peer, ChunkStore(store_dir, FS_CAPACITY_BYTES)))
