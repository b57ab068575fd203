"""A node's colony roles, from its configuration: serve the ledger, run an executor.

``colonymesh node run`` and ``colonymesh executor run`` build on one
:class:`~colonymesh.node.peer.peer.Peer`; this module adds what the node's
certificate and ``node.toml`` ask for:

* **server** — the certificate holds the ``server`` role and the config has a
  ``[colony]`` section: a :class:`LedgerServer` runs in the node's nursery,
  its Raft log under ``STATE_DIR/ledger``. The founding voters are
  ``[colony] servers``; other server-role peers with the same ``[colony]``
  section start as spares that the leader adds when a voter dies
  (:mod:`colonymesh.node.colony.membership`). Every replica must build the same
  genesis ledger, so its inputs come only from files all servers share: the
  colony descriptor and the founding servers' certificates (listed in
  ``server_certificates``, or found in the colony folder's ``members/``).
  The genesis time is the colony's creation time, moved forward to the
  newest founding certificate's ``not_before`` so that every founding
  certificate is valid at genesis (a server whose certificate is not yet
  valid in ledger time could not sign the first tick, and time would never
  advance). The first start pins these inputs in ``ledger/genesis.cbor``.
* **executor** — an :class:`ExecutorService` serving a kind (``python``: a
  :class:`PythonFunctions` registry imported from ``MODULE:ATTR``).

Members that are not servers find the ledger through ``[colony] servers`` or,
without it, among their admitted connections whose certificate holds the
``server`` role (as the SDK does).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from pathlib import Path

import trio

from colonymesh.consensus import RaftConfig
from colonymesh.executors.base import ExecutorKind
from colonymesh.executors.python import PythonFunctions
from colonymesh.node import wire
from colonymesh.node.certs import (
    Certificate,
    Colony,
    Role,
    decode_record,
    encode_record,
    verify_colony,
)
from colonymesh.node.colony.server import LedgerServer, ServerConfig
from colonymesh.node.colonyfiles import MEMBERS_DIR, read_record, write_atomically
from colonymesh.node.config import ColonySettings
from colonymesh.node.errors import ColonymeshError, InputError
from colonymesh.node.peer.peer import Peer

log = logging.getLogger("colonymesh.node.colony")

LEDGER_DIR = "ledger"
GENESIS_FILE = "genesis.cbor"
GENESIS_BYTES_MAX = 1024 * 1024


class RoleError(InputError):
    """A role cannot start with this configuration; the message says what to fix."""


def founding_certificates(
    settings: ColonySettings, colony_folder: Path, colony: Colony
) -> tuple[Certificate, ...]:
    """One certificate per founding server, from the config's list or ``members/``."""
    colony = verify_colony(colony)
    paths = list(settings.server_certificates)
    if not paths:
        members = colony_folder / MEMBERS_DIR
        paths = sorted(members.glob("*.cert")) if members.is_dir() else []
    chosen: dict[str, Certificate] = {}
    for path in paths:
        certificate = read_record(path, Certificate)
        if certificate.colony_id != colony.colony_id or certificate.peer_id not in settings.servers:
            continue
        if not certificate.has_role(Role.SERVER):
            raise RoleError(f"{path}: {certificate.name} is listed as a server but lacks the role")
        held = chosen.get(certificate.peer_id)
        # Several certificates of one server (renewals): every replica picks the same one.
        if held is None or (held.serial, held.not_before) < (
            certificate.serial,
            certificate.not_before,
        ):
            chosen[certificate.peer_id] = certificate
    missing = [peer_id for peer_id in settings.servers if peer_id not in chosen]
    if missing:
        where = (
            "[colony] server_certificates"
            if settings.server_certificates
            else str(colony_folder / MEMBERS_DIR)
        )
        raise RoleError(f"no certificate for server {', '.join(missing)} in {where}")
    return tuple(chosen[peer_id] for peer_id in settings.servers)


def genesis_ms(colony: Colony, certificates: Sequence[Certificate]) -> int:
    """The ledger's first time: every founding certificate is valid then (see module docs)."""
    return 1000 * max([colony.created, *(c.not_before for c in certificates)])


def server_config(
    settings: ColonySettings, state_dir: Path, colony_folder: Path, colony: Colony
) -> ServerConfig:
    ledger_dir = state_dir / LEDGER_DIR
    certificates, genesis = pinned_genesis(ledger_dir, settings, colony_folder, colony)
    return ServerConfig(
        state_dir=ledger_dir,
        founding_servers=settings.servers,
        genesis_ms=genesis,
        founding_certificates=certificates,
        raft=RaftConfig(
            election_timeout_s=settings.election_timeout_s,
            heartbeat_interval_s=settings.heartbeat_interval_s,
        ),
        tick_interval_s=settings.tick_interval_s,
        executor_stale_s=settings.executor_stale_s,
    )


def pinned_genesis(
    ledger_dir: Path, settings: ColonySettings, colony_folder: Path, colony: Colony
) -> tuple[tuple[Certificate, ...], int]:
    """The genesis inputs, chosen at the first start and kept in ``GENESIS_FILE`` after.

    The Raft log replays onto the genesis ledger at every start, so the
    genesis must never change under it: a renewed server certificate added to
    ``members/`` later must not alter what an existing replica starts from.
    """
    path = ledger_dir / GENESIS_FILE
    if path.exists():
        try:
            plain = wire.decode(path.read_bytes(), frame_bytes_max=GENESIS_BYTES_MAX)
            genesis, records = plain
            certificates = tuple(decode_record(Certificate, record) for record in records)
        except (ColonymeshError, ValueError, TypeError) as error:
            raise RoleError(f"{path}: corrupt genesis record: {error}") from None
        if tuple(c.peer_id for c in certificates) != settings.servers or not isinstance(
            genesis, int
        ):
            raise RoleError(
                f"{path}: this ledger was founded by other servers than [colony] servers; "
                "the founding servers cannot change (membership change is not supported yet)"
            )
        return certificates, genesis
    certificates = founding_certificates(settings, colony_folder, colony)
    genesis = genesis_ms(colony, certificates)
    ledger_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(path, wire.encode([genesis, [encode_record(c) for c in certificates]]))
    return certificates, genesis


def serves_ledger(peer: Peer, settings: ColonySettings | None) -> bool:
    """Whether this node serves the ledger: a founding or spare server (it holds the role)."""
    certificate = peer.certificate
    if settings is None or certificate is None or not certificate.has_role(Role.SERVER):
        return False
    if peer.peer_id not in settings.servers:
        # A spare: it replicates nothing until the leader adds it to the group
        # (node/colony/membership.py), then serves like a founding server.
        log.info(
            "node %s holds the server role but is not in [colony] servers: serving the "
            "ledger as a spare server",
            peer.peer_id,
        )
    return True


async def start_server(peer: Peer, config: ServerConfig, nursery: trio.Nursery) -> LedgerServer:
    server = LedgerServer(peer, config, nursery)
    await nursery.start(server.run)
    log.info(
        "serving the ledger: %d founding servers, raft log in %s",
        len(config.founding_servers),
        config.state_dir,
    )
    return server


def admitted_servers(peer: Peer) -> list[str]:
    """Peer ids of admitted connections whose certificate holds the server role."""
    return sorted(
        {
            connection.remote_peer_id
            for connection in peer.gatekeeper.admitted_connections()
            if (cert := peer.gatekeeper.certificate_of(connection)) is not None
            and cert.has_role(Role.SERVER)
        }
    )


async def find_servers(
    peer: Peer, settings: ColonySettings | None, timeout_s: float, settle_s: float = 1.0
) -> list[str]:
    """The ledger's servers: from the config, else among admitted connections."""
    if settings is not None:
        return list(settings.servers)
    with trio.move_on_after(timeout_s):
        while not admitted_servers(peer):
            await trio.sleep(0.05)
        with trio.move_on_after(settle_s):  # the other bootstrap servers admit us shortly after
            while len(admitted_servers(peer)) < len(peer.config.bootstrap):
                await trio.sleep(0.05)
        return admitted_servers(peer)
    raise RoleError(
        f"no server peer among the admitted peers after {timeout_s:g} s "
        "(check [node] bootstrap, or list them in [colony] servers)"
    )


def _load_attribute(reference: str) -> tuple[str, str, object]:
    """The object at ``MODULE:ATTR`` (module name, attribute name, object)."""
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise RoleError(
            f"--functions {reference!r}: expected MODULE:ATTR, e.g. mypkg.tasks:functions"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise RoleError(
            f"--functions {reference!r}: cannot import {module_name}: {error}"
        ) from None
    except Exception as error:  # the user's module failed while importing
        raise RoleError(
            f"--functions {reference!r}: importing {module_name} failed: "
            f"{type(error).__name__}: {error}"
        ) from None
    return module_name, attribute, getattr(module, attribute, None)


def load_functions(reference: str) -> PythonFunctions:
    """The :class:`PythonFunctions` registry at ``MODULE:ATTR``."""
    module_name, attribute, registry = _load_attribute(reference)
    if not isinstance(registry, PythonFunctions):
        raise RoleError(
            f"--functions {reference!r}: {module_name}.{attribute} is "
            f"{type(registry).__name__}, not a colonymesh PythonFunctions registry"
        )
    if not registry.functions():
        raise RoleError(f"--functions {reference!r}: the registry has no functions")
    return registry


def executor_kind(kind: str, functions: str) -> ExecutorKind:
    """The kind named by ``--functions`` alone; the others are built from ``--executor-config``."""
    if kind == "python":
        if not functions:
            raise RoleError("a python executor needs --functions MODULE:ATTR")
        return load_functions(functions)
    if kind == "process":
        if not functions:
            raise RoleError("a process executor needs --functions MODULE:ATTR (a ProcessConfig)")
        return load_process_kind(functions)
    raise RoleError(
        f"executor kind {kind!r} is not served by --functions alone: expected python or "
        f"process (the other kinds take --executor-config FILE with a [{kind}] section)"
    )


def load_process_kind(reference: str) -> ExecutorKind:
    """Local processes as configured by the :class:`ProcessConfig` at ``MODULE:ATTR``."""
    from colonymesh.executors.process import ProcessConfig, ProcessExecutor

    module_name, attribute, config = _load_attribute(reference)
    if not isinstance(config, ProcessConfig):
        raise RoleError(
            f"--functions {reference!r}: {module_name}.{attribute} is "
            f"{type(config).__name__}, not a colonymesh.executors.process.ProcessConfig"
        )
    try:
        return ProcessExecutor(config)
    except ValueError as error:
        raise RoleError(f"--functions {reference!r}: {error}") from None


__all__ = [
    "RoleError",
    "admitted_servers",
    "executor_kind",
    "find_servers",
    "founding_certificates",
    "genesis_ms",
    "load_functions",
    "serves_ledger",
    "pinned_genesis",
    "server_config",
    "start_server",
]
