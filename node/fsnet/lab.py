"""A colony of file-serving peers on loopback: for the tests, the benchmark and demos.

`lab_colony(secret, n, now)` derives a whole colony -- owner, members, their
keys and certificates -- from one secret, so separate OS processes given the
same secret, size and time agree on it without exchanging files (Ed25519
signatures are deterministic). `open_fs_lab` opens `n` real peers (TCP,
Noise, yamux, colony gating) in the caller's trio run, each with its own
chunk store and `ChunkService`, connected in a full mesh.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

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
from colonymesh.node.fsnet.service import ChunkService, ServiceConfig
from colonymesh.node.identity import KeyPair
from colonymesh.node.peer.peer import Peer, PeerConfig

STORE_BYTES_DEFAULT = 4 * 2**30


@dataclass(frozen=True, slots=True)
class LabColony:
    colony: Colony
    owner: KeyPair
    members: tuple[tuple[KeyPair, Certificate], ...]

    def membership(self) -> Membership:
        membership = Membership(self.colony)
        for _, certificate in self.members:
            membership.admit(certificate, time.time())
        return membership

    def peer_config(self, index: int, listen: str = "/ip4/127.0.0.1/tcp/0") -> PeerConfig:
        keys, certificate = self.members[index]
        return PeerConfig(keys, self.membership(), certificate, listen=(listen,))


def _seed(secret: str, label: str) -> bytes:
    return hashlib.sha256(f"colonymesh-fs-lab/{secret}/{label}".encode()).digest()


def lab_colony(secret: str, members: int, now: int) -> LabColony:
    """The same colony for the same (secret, members, now), in any process."""
    owner = KeyPair.from_seed(_seed(secret, "owner"))
    colony = create_colony(owner, f"fs-lab-{secret}", now - 60)
    issued: list[tuple[KeyPair, Certificate]] = []
    for index in range(members):
        keys = KeyPair.from_seed(_seed(secret, f"member-{index}"))
        certificate = issue_certificate(
            owner,
            colony,
            keys.public_key,
            name=f"fs-{index}",
            roles=[Role.EXECUTOR],
            not_before=now - 60,
            not_after=now + 86400,
            serial=index + 1,
            executor_type="fs",
            capabilities=Capabilities(cpu_millicores=1000, mem_bytes=2**30, storage_bytes=2**34),
        )
        issued.append((keys, certificate))
    return LabColony(colony, owner, tuple(issued))


@asynccontextmanager
async def open_fs_lab(
    state_dir: Path,
    peers: int = 3,
    *,
    capacity_bytes: int = STORE_BYTES_DEFAULT,
    config: ServiceConfig | None = None,
    secret: str = "lab",
) -> AsyncIterator[list[ChunkService]]:
    """`peers` connected peers with chunk services, stores under `state_dir/peer-N`."""
    lab = lab_colony(secret, peers, int(time.time()))
    async with AsyncExitStack() as stack:
        services: list[ChunkService] = []
        for index in range(peers):
            peer = await stack.enter_async_context(Peer.open(lab.peer_config(index)))
            store = ChunkStore(state_dir / f"peer-{index}", capacity_bytes)
            services.append(ChunkService(peer, store, config=config))
        for i, a in enumerate(services):
            for b in services[i + 1 :]:
                await a.peer.connect(b.peer.listen_addrs[0], timeout=10)
        yield services
