"""A colony of real OS processes on loopback: ``node run`` servers and ``executor run`` executors.

:func:`make_cluster` creates a colony folder (owner key, colony.cbor,
members/*.cert) with the Python API, keys and certificates for the servers,
executors and a submitter, and a ``node.toml`` per node. Servers list each
other as bootstrap peers and name the founding servers in ``[colony]``;
executors bootstrap from the servers and find them by their role. Every
child runs in its own session (process group), so :meth:`Cluster.close`
and :meth:`Node.kill` take its threads and children down with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from colonymesh.node.certs import (
    Capabilities,
    Certificate,
    Role,
    create_colony,
    encode_record,
    issue_certificate,
)
from colonymesh.node.colonyfiles import COLONY_FILE, MEMBERS_DIR
from colonymesh.node.config import control_address_of
from colonymesh.node.control import ControlError, call
from colonymesh.node.identity import KeyPair, write_key_file
from support.cli import COMMAND

HERE = Path(__file__).parent
STARTUP_S = 30.0
EXECUTOR_STALE_S = 2.0  # the leader declares a silent executor lost after this long


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(item) for item in items) + "]"


@dataclass
class Node:
    name: str
    role: Role
    folder: Path
    keys: KeyPair
    certificate: Certificate
    port: int
    command: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    kills: list[float] = field(default_factory=list)  # wall times of SIGKILLs

    @property
    def peer_id(self) -> str:
        return self.keys.peer_id

    @property
    def address(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.port}/p2p/{self.peer_id}"

    @property
    def state(self) -> Path:
        return self.folder / "state"

    def start(self) -> None:
        log = open(self.folder / "node.log", "ab")  # noqa: SIM115 -- the child writes it
        self.process = subprocess.Popen(
            self.command,
            stdout=subprocess.DEVNULL,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env=self.env,
            start_new_session=True,  # its own process group, killed as one
        )
        log.close()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def status(self, timeout_s: float = 5.0) -> dict[str, Any]:
        return call(control_address_of(self.state), "status", timeout_s=timeout_s)

    def try_status(self) -> dict[str, Any] | None:
        if not self.alive():
            return None
        try:
            return self.status(timeout_s=2.0)
        except ControlError:
            return None

    def kill(self) -> None:
        """SIGKILL the whole process group (no clean shutdown)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.kills.append(time.time())

    def stop(self) -> int:
        """SIGTERM, and the exit code (a clean shutdown exits 0)."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        return int(self.process.returncode)

    def log(self) -> str:
        return (self.folder / "node.log").read_text(errors="replace")


@dataclass
class Cluster:
    root: Path
    colony_dir: Path
    records: Path
    servers: list[Node] = field(default_factory=list)
    executors: list[Node] = field(default_factory=list)
    submitter_keys: KeyPair = field(default_factory=KeyPair.generate)
    submitter_certificate: Certificate | None = None

    @property
    def nodes(self) -> list[Node]:
        return [*self.servers, *self.executors]

    def start(self, nodes: list[Node]) -> None:
        for node in nodes:
            node.start()
        for node in nodes:
            wait_for(
                f"{node.name} ready",
                lambda node=node: node.try_status() is not None or not node.alive(),  # type: ignore[misc]
                STARTUP_S,
            )
            if not node.alive():
                raise AssertionError(f"{node.name} exited:\n{node.log()[-4000:]}")

    def leader(self) -> Node | None:
        for node in self.servers:
            status = node.try_status()
            if status and status.get("ledger", {}).get("role") == "leader":
                return node
        return None

    def wait_leader(self, timeout_s: float = 20.0) -> Node:
        found: list[Node] = []

        def elected() -> bool:
            leader = self.leader()
            if leader is not None:
                found.append(leader)
            return leader is not None

        wait_for("a Raft leader", elected, timeout_s)
        return found[-1]

    def registered_executors(self) -> int:
        leader = self.leader()
        status = leader.try_status() if leader else None
        return -1 if status is None else int(status["ledger"]["executors"])

    def close(self) -> None:
        for node in self.nodes:
            node.kill()


def wait_for(what: str, predicate: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def make_cluster(
    root: Path, *, servers: int = 3, executors: int = 2, concurrency: int = 2
) -> Cluster:
    """Files for a colony of ``servers`` + ``executors`` real nodes (not started)."""
    now = int(time.time())
    owner = KeyPair.generate()
    colony = create_colony(owner, "roles", now - 60)
    colony_dir = root / "colony"
    (colony_dir / MEMBERS_DIR).mkdir(parents=True)
    (colony_dir / COLONY_FILE).write_bytes(encode_record(colony))
    write_key_file(colony_dir / "owner.key", owner)
    records = root / "records"
    records.mkdir()
    cluster = Cluster(root, colony_dir, records)
    serial = [0]

    def certify(keys: KeyPair, name: str, role: Role, executor_type: str = "") -> Certificate:
        serial[0] += 1
        certificate = issue_certificate(
            owner,
            colony,
            keys.public_key,
            name=name,
            roles=[role],
            not_before=now - 30,
            not_after=now + 86400,
            serial=serial[0],
            executor_type=executor_type,
            capabilities=Capabilities(cpu_millicores=4000, mem_bytes=8 * 2**30),
        )
        (colony_dir / MEMBERS_DIR / f"{name}.cert").write_bytes(encode_record(certificate))
        return certificate

    def node(name: str, role: Role, executor_type: str = "") -> Node:
        keys = KeyPair.generate()
        folder = root / name
        folder.mkdir()
        write_key_file(folder / "node.key", keys)
        certificate = certify(keys, name, role, executor_type)
        (folder / "node.cert").write_bytes(encode_record(certificate))
        return Node(name, role, folder, keys, certificate, free_port(), [], dict(os.environ))

    cluster.servers = [node(f"s{i + 1}", Role.SERVER) for i in range(servers)]
    cluster.executors = [node(f"e{i + 1}", Role.EXECUTOR, "python") for i in range(executors)]
    cluster.submitter_certificate = certify(cluster.submitter_keys, "submitter", Role.SUBMITTER)
    server_ids = [s.peer_id for s in cluster.servers]
    for server in cluster.servers:
        _write_config(
            server,
            bootstrap=[s.address for s in cluster.servers if s is not server],
            extra=[
                "[colony]",
                f"servers = {_toml_list(server_ids)}",
                "election_timeout_s = 0.5",
                f"executor_stale_s = {EXECUTOR_STALE_S}",
            ],
        )
        server.command = [*COMMAND, "node", "run", "--config", str(server.folder / "node.toml")]
    pythonpath = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH", "")]))
    for executor in cluster.executors:
        _write_config(executor, bootstrap=[s.address for s in cluster.servers], extra=[])
        executor.command = [
            *COMMAND,
            "executor",
            "run",
            "--config",
            str(executor.folder / "node.toml"),
            "--kind",
            "python",
            "--functions",
            "roletasks:functions",
            "--concurrency",
            str(concurrency),
        ]
        executor.env.update(
            PYTHONPATH=pythonpath,
            ROLES_RECORD_DIR=str(records),
            ROLES_EXECUTOR_ID=executor.peer_id,
        )
    return cluster


def _write_config(node: Node, *, bootstrap: list[str], extra: list[str]) -> None:
    lines = [
        "[node]",
        'key = "node.key"',
        'certificate = "node.cert"',
        'colony = "../colony"',
        f'listen = ["/ip4/127.0.0.1/tcp/{node.port}"]',
        f"bootstrap = {_toml_list(bootstrap)}",
        "[log]",
        'format = "json"',
        "[gating]",
        "presentation_timeout_s = 2.0",
        *extra,
    ]
    (node.folder / "node.toml").write_text("\n".join(lines) + "\n")


def read_runs(records: Path) -> dict[str, dict[str, Any]]:
    """Every run recorded by the executors, by nonce: process, executor, start, end (or None)."""
    runs: dict[str, dict[str, Any]] = {}
    for path in sorted(records.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if not line.endswith("}"):
                continue  # a line cut short by SIGKILL
            event = json.loads(line)
            run = runs.setdefault(
                event["nonce"],
                {
                    "process": event["process"],
                    "executor": event["executor"],
                    "start": None,
                    "end": None,
                },
            )
            run[event["event"]] = event["t"]
    return runs
