"""A local colony of real processes for the executor tests: servers, ``executor run`` peers, a profile.

Like ``tests/roles/rolekit.py`` but with executors of any kind, each started
as a user would: ``colonymesh executor run --config node.toml --kind KIND
--executor-config executor.toml``. The submitter is a client profile folder
for the CLI's ``--profile``. Every child runs in its own process group and
is killed with it at the end.
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
    Gpu,
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
STARTUP_S = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(what: str, predicate: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Node:
    name: str
    folder: Path
    keys: KeyPair
    port: int
    command: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.port}/p2p/{self.keys.peer_id}"

    def start(self) -> None:
        with open(self.folder / "node.log", "ab") as log:
            self.process = subprocess.Popen(
                self.command,
                stdout=subprocess.DEVNULL,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def status(self) -> dict[str, Any] | None:
        if not self.alive():
            return None
        try:
            return call(control_address_of(self.folder / "state"), "status", timeout_s=2.0)
        except ControlError:
            return None

    def stop(self) -> int:
        """SIGTERM, and the exit status (a clean shutdown exits 0)."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        return int(self.process.returncode)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def log(self) -> str:
        return (self.folder / "node.log").read_text(errors="replace")


@dataclass
class LocalColony:
    root: Path
    owner: KeyPair
    server: Node
    profile: Path
    executors: dict[str, Node] = field(default_factory=dict)
    _serial: list[int] = field(default_factory=lambda: [10])

    def _certify(self, keys: KeyPair, name: str, role: Role, **extra: Any) -> Certificate:
        from colonymesh.node.colonyfiles import read_colony

        colony = read_colony(self.root / "colony")
        self._serial[0] += 1
        now = int(time.time())
        certificate = issue_certificate(
            self.owner, colony, keys.public_key, name=name, roles=[role],
            not_before=now - 60, not_after=now + 86400, serial=self._serial[0], **extra,
        )  # fmt: skip
        (self.root / "colony" / MEMBERS_DIR / f"{name}.cert").write_bytes(
            encode_record(certificate)
        )
        return certificate

    def add_executor(
        self,
        name: str,
        *,
        executor_type: str,
        kind: str,
        executor_toml: str,
        capabilities: Capabilities,
        location: str,
        env: dict[str, str] | None = None,
    ) -> Node:
        node = _node(self.root, name)
        certificate = self._certify(
            node.keys, name, Role.EXECUTOR, executor_type=executor_type,
            capabilities=capabilities, location=location,
        )  # fmt: skip
        (node.folder / "node.cert").write_bytes(encode_record(certificate))
        _write_config(node, [self.server.address])
        (node.folder / "executor.toml").write_text(executor_toml)
        node.command = [
            *COMMAND, "executor", "run", "--config", str(node.folder / "node.toml"),
            "--kind", kind, "--executor-config", str(node.folder / "executor.toml"),
            "--type", executor_type,
        ]  # fmt: skip
        node.env.update(env or {})
        self.executors[name] = node
        return node

    def start(self, nodes: list[Node]) -> None:
        for node in nodes:
            node.start()
        for node in nodes:
            wait_for(f"{node.name} ready", lambda n=node: n.status() is not None or not n.alive(), STARTUP_S)  # type: ignore[misc]  # fmt: skip
            if not node.alive():
                raise AssertionError(f"{node.name} exited:\n{node.log()[-4000:]}")

    def registered(self) -> int:
        status = self.server.status() or {}
        return int(status.get("ledger", {}).get("executors", -1))

    def close(self) -> None:
        for node in [*self.executors.values(), self.server]:
            node.kill()


def _node(root: Path, name: str) -> Node:
    keys = KeyPair.generate()
    folder = root / name
    folder.mkdir()
    write_key_file(folder / "node.key", keys)
    return Node(name, folder, keys, free_port())


def _write_config(node: Node, bootstrap: list[str], extra: list[str] | None = None) -> None:
    lines = [
        "[node]", 'key = "node.key"', 'certificate = "node.cert"', 'colony = "../colony"',
        f'listen = ["/ip4/127.0.0.1/tcp/{node.port}"]', f"bootstrap = {json.dumps(bootstrap)}",
        "[log]", 'format = "json"', "[gating]", "presentation_timeout_s = 2.0", *(extra or []),
    ]  # fmt: skip
    (node.folder / "node.toml").write_text("\n".join(lines) + "\n")


def make_colony(root: Path) -> LocalColony:
    """One server peer (a Raft group of one) and a submitter profile; add executors, then start."""
    owner = KeyPair.generate()
    colony = create_colony(owner, "lab", int(time.time()) - 120)
    (root / "colony" / MEMBERS_DIR).mkdir(parents=True)
    (root / "colony" / COLONY_FILE).write_bytes(encode_record(colony))
    server = _node(root, "s1")
    profile = root / "me"
    profile.mkdir()
    kit = LocalColony(root, owner, server, profile)
    certificate = kit._certify(server.keys, "s1", Role.SERVER)
    (server.folder / "node.cert").write_bytes(encode_record(certificate))
    _write_config(server, [], ["[colony]", f'servers = ["{server.keys.peer_id}"]'])
    server.command = [*COMMAND, "node", "run", "--config", str(server.folder / "node.toml")]
    me = KeyPair.generate()
    write_key_file(profile / "member.key", me)
    (profile / "member.cert").write_bytes(encode_record(kit._certify(me, "me", Role.SUBMITTER)))
    (profile / COLONY_FILE).write_bytes(encode_record(colony))
    (profile / "bootstrap").write_text(server.address + "\n")
    return kit


__all__ = ["Capabilities", "Gpu", "LocalColony", "make_colony", "wait_for"]
