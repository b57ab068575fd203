"""The Python SDK: join a colony from any program, submit work, serve functions.

    async with colonymesh.connect(key="me.key", certificate="me.cert",
                                  colony="lab/", bootstrap=["/ip4/10.0.0.5/tcp/4001/p2p/12D3Koo..."]) as colony:
        process = await colony.submit({"funcname": "square", "args": [7],
                                       "conditions": {"executortype": "python"}})
        await process.wait()
        print(process.state, process.output)

A program without trio uses :func:`connect_sync`, which runs the same
session on a thread of its own. An executor serves decorated functions::

    functions = colonymesh.PythonFunctions()

    @functions.function
    def square(x: int) -> int:
        return x * x

    async with colonymesh.connect(...) as colony:
        await colony.serve(functions, name="edge-1")   # runs until cancelled

The session is a real peer: it dials the bootstrap addresses, proves its
certificate, and finds the colony's server peers among the admitted peers by
the ``server`` role in their certificates (or uses ``servers`` if given).
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import trio

from colonymesh.executors.base import ExecutorKind
from colonymesh.fs.store import ChunkStore
from colonymesh.node.certs import Certificate, Membership, Role
from colonymesh.node.colony.client import ColonyClient, ColonyUnavailable
from colonymesh.node.colony.files import ColonyFiles
from colonymesh.node.colony.worker import ExecutorService
from colonymesh.node.colonyfiles import load_membership, read_record
from colonymesh.node.errors import ColonymeshError
from colonymesh.node.fsnet.service import ChunkService
from colonymesh.node.identity import KeyPair, read_key_file
from colonymesh.node.ledger.commands import Cancel
from colonymesh.node.peer.peer import Peer, PeerConfig

T = TypeVar("T")
FINAL_STATES = ("success", "failed", "cancelled")
FS_CAPACITY_BYTES = 2 * 2**30
SETTLE_S = 1.0  # after the first server is admitted, how long to wait for the other bootstrap peers


@dataclass
class Process:
    """A submitted process; ``refresh()`` or ``wait()`` update the view."""

    id: str
    session: ColonySession
    view: dict[str, Any] = field(default_factory=dict)

    @property
    def state(self) -> str:
        return str(self.view.get("state", "unknown"))

    @property
    def output(self) -> list[Any]:
        return list(self.view.get("output", []))

    @property
    def errors(self) -> list[str]:
        return list(self.view.get("errors", []))

    async def refresh(self) -> Process:
        self.view = await self.session.client.process(self.id) or self.view
        return self

    async def wait(self, timeout_s: float | None = None) -> Process:
        """Until SUCCESS, FAILED or CANCELLED (ColonyOS's SDK waits for SUCCESS only)."""
        self.view = await self.session.client.wait(self.id, timeout_s)
        return self

    async def cancel(self) -> None:
        await self.session.client.run(Cancel(self.id))


class ColonySession:
    def __init__(self, peer: Peer, client: ColonyClient) -> None:
        self.peer = peer
        self.client = client
        self._files: ColonyFiles | None = None

    def files(
        self, store_dir: Path | str, *, capacity_bytes: int = FS_CAPACITY_BYTES
    ) -> ColonyFiles:
        """Labelled files (put, get, ls, sync, snapshots) over a chunk store at ``store_dir``.

        The session's peer serves that store to the colony while it is open:
        the bytes a ``put`` adds can be fetched from here (or from peers that
        fetched them) while this member runs; the labels live in the ledger.
        """
        if self._files is None:
            store = ChunkStore(Path(store_dir), capacity_bytes)
            self._files = ColonyFiles(self.client, ChunkService(self.peer, store))
        return self._files

    async def submit(self, spec: dict[str, Any] | str) -> Process:
        return Process(await self.client.submit(spec), self)

    async def submit_workflow(self, workflow: dict[str, Any] | str) -> str:
        return await self.client.submit_workflow(workflow)

    async def wait_workflow(
        self, workflow_id: str, timeout_s: float | None = None
    ) -> dict[str, Any]:
        return await self.client.wait_workflow(workflow_id, timeout_s)

    async def process(self, process_id: str) -> Process:
        view = await self.client.process(process_id)
        if view is None:
            raise ColonymeshError(f"no process {process_id}")
        return Process(process_id, self, view)

    async def status(self) -> dict[str, Any]:
        return await self.client.status()

    # crons and generators, in ColonyOS's words (the ledger fires them; see crons.py)

    async def add_cron(
        self,
        name: str,
        workflow: dict[str, Any] | str,
        *,
        cron: str = "",
        interval_s: int = 0,
        wait_for_previous: bool = False,
    ) -> str:
        """Run ``workflow`` on a six-field cron expression (with seconds) or every ``interval_s``."""
        return await self.client.add_cron(
            name,
            workflow,
            cron_expression=cron,
            interval_s=interval_s,
            wait_for_previous=wait_for_previous,
        )

    async def crons(self) -> list[dict[str, Any]]:
        return await self.client.crons()

    async def cron(self, cron: str) -> dict[str, Any]:
        """One cron by id or name."""
        found = await self.client.crons(cron)
        if not found:
            raise ColonymeshError(f"no cron {cron}")
        return found[0]

    async def run_cron(self, cron: str) -> str:
        return await self.client.run_cron(cron)

    async def remove_cron(self, cron: str) -> None:
        await self.client.remove_cron(cron)

    async def add_generator(
        self, name: str, workflow: dict[str, Any] | str, *, trigger: int, timeout_s: int = 0
    ) -> str:
        """Run ``workflow`` per ``trigger`` packed args (or after ``timeout_s``) as its roots' args."""
        return await self.client.add_generator(name, workflow, trigger=trigger, timeout_s=timeout_s)

    async def pack_generator(self, generator: str, arg: str) -> None:
        await self.client.pack_generator(generator, arg)

    async def generators(self) -> list[dict[str, Any]]:
        return await self.client.generators()

    async def generator(self, generator: str) -> dict[str, Any]:
        found = await self.client.generators(generator)
        if not found:
            raise ColonymeshError(f"no generator {generator}")
        return found[0]

    async def remove_generator(self, generator: str) -> None:
        await self.client.remove_generator(generator)

    async def serve(self, kind: ExecutorKind, *, name: str, concurrency: int = 1) -> None:
        """Run this member as an executor of ``kind`` until cancelled."""
        await ExecutorService(self.client, kind, name=name, concurrency=concurrency).run()


def _load(
    key: Path | str | KeyPair,
    certificate: Path | str | Certificate,
    colony: Path | str | Membership,
) -> tuple[KeyPair, Certificate, Membership]:
    keys = key if isinstance(key, KeyPair) else read_key_file(Path(key))
    cert = (
        certificate
        if isinstance(certificate, Certificate)
        else read_record(Path(certificate), Certificate)
    )
    membership = colony if isinstance(colony, Membership) else load_membership(Path(colony))
    membership.check(cert, time.time())
    return keys, cert, membership


def _admitted_servers(peer: Peer) -> list[str]:
    return sorted(
        {
            connection.remote_peer_id
            for connection in peer.gatekeeper.admitted_connections()
            if (cert := peer.gatekeeper.certificate_of(connection)) is not None
            and cert.has_role(Role.SERVER)
        }
    )


async def _find_servers(peer: Peer, expected: int, timeout_s: float) -> list[str]:
    """Server peers among the admitted connections; after the first, wait briefly for the rest.

    Bootstrap peers that are all plain members are fine: the list is empty and the
    client finds the leader by asking them (its signed announcement, relayed)."""
    with trio.move_on_after(timeout_s):
        while not peer.connected_peers():
            await trio.sleep(0.02)
        with trio.move_on_after(SETTLE_S):
            while len(_admitted_servers(peer)) < expected:
                await trio.sleep(0.02)
        return _admitted_servers(peer)
    raise ColonyUnavailable(f"no bootstrap peer admitted us after {timeout_s:g} s")


@asynccontextmanager
async def connect(
    *,
    key: Path | str | KeyPair,
    certificate: Path | str | Certificate,
    colony: Path | str | Membership,
    bootstrap: Sequence[str] = (),
    servers: Sequence[str] = (),
    listen: Sequence[str] = (),
    timeout_s: float = 15.0,
) -> AsyncIterator[ColonySession]:
    """Join the colony as the member ``certificate`` names; see the module docs."""
    keys, cert, membership = _load(key, certificate, colony)
    config = PeerConfig(keys, membership, cert, listen=tuple(listen), bootstrap=tuple(bootstrap))
    async with Peer.open(config) as peer:
        found = list(servers) or await _find_servers(peer, len(bootstrap), timeout_s)
        client = ColonyClient(peer, found, timeout_s=timeout_s)
        await client.admit_self()
        yield ColonySession(peer, client)


class SyncColony:
    """:func:`connect` for programs without trio: the session runs on its own thread."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._token: trio.lowlevel.TrioToken | None = None
        self._session: ColonySession | None = None
        self._stop: trio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="colonymesh-sdk", daemon=True)

    def __enter__(self) -> SyncColony:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None and self._stop is not None:
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join()

    def _main(self) -> None:
        async def session() -> None:
            try:
                async with connect(**self._options) as opened:
                    self._session, self._token, self._stop = (
                        opened,
                        trio.lowlevel.current_trio_token(),
                        trio.Event(),
                    )
                    self._ready.set()
                    await self._stop.wait()
            except BaseException as error:
                self._error = error
                self._ready.set()

        trio.run(session)

    def _call(self, function: Callable[[ColonySession], Awaitable[T]]) -> T:
        if self._session is None or self._token is None:
            raise ColonymeshError("the colony session is not open")
        session = self._session
        return trio.from_thread.run(function, session, trio_token=self._token)

    def submit(self, spec: dict[str, Any] | str) -> Process:
        return self._call(lambda s: s.submit(spec))

    def wait(self, process: Process, timeout_s: float | None = None) -> Process:
        return self._call(lambda s: process.wait(timeout_s))

    def submit_workflow(self, workflow: dict[str, Any] | str) -> str:
        return self._call(lambda s: s.submit_workflow(workflow))

    def wait_workflow(self, workflow_id: str, timeout_s: float | None = None) -> dict[str, Any]:
        return self._call(lambda s: s.wait_workflow(workflow_id, timeout_s))

    def status(self) -> dict[str, Any]:
        return self._call(lambda s: s.status())

    def fs_put(self, store_dir: Path | str, path: Path | str, label: str) -> dict[str, Any]:
        """``ColonySession.files(store_dir).put(path, label)``, blocking."""
        return self._call(lambda s: s.files(store_dir).put(path, label))

    def fs_get(self, store_dir: Path | str, label: str, name: str, dest: Path | str) -> Any:
        return self._call(lambda s: s.files(store_dir).get(label, name, dest))

    def fs_ls(self, store_dir: Path | str, label: str = "/") -> dict[str, Any]:
        return self._call(lambda s: s.files(store_dir).ls(label))

    def add_cron(self, name: str, workflow: dict[str, Any] | str, **schedule: Any) -> str:
        return self._call(lambda s: s.add_cron(name, workflow, **schedule))

    def crons(self) -> list[dict[str, Any]]:
        return self._call(lambda s: s.crons())

    def add_generator(
        self, name: str, workflow: dict[str, Any] | str, *, trigger: int, timeout_s: int = 0
    ) -> str:
        return self._call(
            lambda s: s.add_generator(name, workflow, trigger=trigger, timeout_s=timeout_s)
        )

    def pack_generator(self, generator: str, arg: str) -> None:
        self._call(lambda s: s.pack_generator(generator, arg))

    def generators(self) -> list[dict[str, Any]]:
        return self._call(lambda s: s.generators())


def connect_sync(**options: Any) -> SyncColony:
    """``with colonymesh.connect_sync(key=..., certificate=..., colony=..., bootstrap=[...]) as colony:``"""
    return SyncColony(**options)
