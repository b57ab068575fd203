"""``colonymesh node run`` processes for tests: a folder per node (key, certificate,
colony record, node.toml), as separate machines would have, and control-channel calls."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from colonymesh.node.certs import Colony, Role, encode_record, issue_certificate
from colonymesh.node.colonyfiles import COLONY_FILE, MEMBERS_DIR
from colonymesh.node.config import control_address_of
from colonymesh.node.control import ControlError, call
from colonymesh.node.identity import KeyPair, write_key_file
from support.cli import COMMAND


@dataclass
class NodeProcess:
    folder: Path
    process: subprocess.Popen[bytes]
    peer_id: str

    def call(self, command: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        return call(control_address_of(self.folder / "state"), command, arguments, timeout_s=30)

    def log(self) -> str:
        return (self.folder / "node.log").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def wait_for(what: str, predicate: Callable[[], bool], timeout_s: float) -> None:
    """Poll ``predicate`` (a node not listening yet counts as False) until it holds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except ControlError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def start_node(
    folder: Path,
    colony: Colony,
    owner: KeyPair,
    serial: int,
    *,
    bootstrap: str | None = None,
    listen: str = "/ip4/127.0.0.1/tcp/0",
    extra_toml: str = "",
    prefix: tuple[str, ...] = (),
) -> NodeProcess:
    """Write a member's folder under ``folder`` and start ``node run`` there
    (``prefix``: e.g. ``ip netns exec NS`` to start it in a network namespace)."""
    (folder / "colony" / MEMBERS_DIR).mkdir(parents=True)
    (folder / "colony" / COLONY_FILE).write_bytes(encode_record(colony))
    keys = KeyPair.generate()
    write_key_file(folder / "node.key", keys)
    now = int(time.time())
    certificate = issue_certificate(
        owner,
        colony,
        keys.public_key,
        name=folder.name,
        roles=(Role.EXECUTOR,),
        not_before=now - 60,
        not_after=now + 3600,
        serial=serial,
    )
    (folder / "node.cert").write_bytes(encode_record(certificate))
    boot = "" if bootstrap is None else f'"{bootstrap}"'
    (folder / "node.toml").write_text(
        "[node]\n"
        'key = "node.key"\n'
        'colony = "colony"\n'
        'certificate = "node.cert"\n'
        f'listen = ["{listen}"]\n'
        f"bootstrap = [{boot}]\n" + extra_toml
    )
    with open(folder / "node.log", "wb") as log:
        process = subprocess.Popen(
            [
                *prefix,
                *COMMAND,
                "node",
                "run",
                "--config",
                str(folder / "node.toml"),
                "--log-level",
                "info",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
    return NodeProcess(folder, process, keys.peer_id)
