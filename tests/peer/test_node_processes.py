"""Real OS processes: ``colonymesh node run`` nodes on loopback, gated to one colony.

One cluster per module: node A listens; B bootstraps from A and they exchange
signed pings; four more nodes — no certificate, expired, revoked, another
colony's — bootstrap from A and are refused, each counted under its cause in
A's status. Junk at A's port does not take it down; a revocation written to
A's colony folder cuts B; SIGTERM stops every node with exit 0 and removes its
control socket. Every node has its own copy of the colony folder, as separate
machines would.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from colonymesh.node.certs import (
    Certificate,
    Role,
    create_colony,
    decode_record,
    encode_record,
    issue_certificate,
    revoke,
)
from colonymesh.node.colonyfiles import (
    COLONY_FILE,
    MEMBERS_DIR,
    read_colony,
    read_revocations,
    write_revocations,
)
from colonymesh.node.config import control_address_of
from colonymesh.node.control import ControlError, call
from colonymesh.node.identity import KeyPair, write_key_file
from support.cli import COMMAND, run

STARTUP_S = 20.0


@dataclass
class Node:
    name: str
    folder: Path
    process: subprocess.Popen[bytes]
    peer_id: str

    @property
    def state(self) -> Path:
        return self.folder / "state"

    def status(self) -> dict[str, Any]:
        """Through the control channel directly (the CLI's own path is tested once, below)."""
        return call(control_address_of(self.state), "status", timeout_s=10)

    def log(self) -> str:
        return (self.folder / "node.log").read_text(errors="replace")


def _wait_for(what: str, predicate: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Lab:
    root: Path
    owner: KeyPair
    colony_bytes: bytes
    nodes: list[Node]

    def certify(
        self, keys: KeyPair, name: str, serial: int, *, expired: bool = False
    ) -> Certificate:
        colony = read_colony(self.root / "colony")
        now = int(time.time())
        window = (now - 7200, now - 3600) if expired else (now - 60, now + 3600)
        return issue_certificate(
            self.owner,
            colony,
            keys.public_key,
            name=name,
            roles=(Role.SERVER,),
            not_before=window[0],
            not_after=window[1],
            serial=serial,
        )

    def start(
        self,
        name: str,
        *,
        certificate: Certificate | None,
        keys: KeyPair | None = None,
        bootstrap: list[str] | None = None,
        colony_bytes: bytes | None = None,
    ) -> Node:
        folder = self.root / name
        (folder / "colony" / MEMBERS_DIR).mkdir(parents=True)
        (folder / "colony" / COLONY_FILE).write_bytes(colony_bytes or self.colony_bytes)
        keys = keys or KeyPair.generate()
        write_key_file(folder / "node.key", keys)
        lines = [
            "[node]",
            'key = "node.key"',
            'colony = "colony"',
            'listen = ["/ip4/127.0.0.1/tcp/0"]',
            f"bootstrap = [{', '.join(repr(b).replace(chr(39), chr(34)) for b in bootstrap or [])}]",
        ]
        if certificate is not None:
            (folder / "node.cert").write_bytes(encode_record(certificate))
            lines.append('certificate = "node.cert"')
        lines += ["[gating]", "presentation_timeout_s = 1.0", "sweep_interval_s = 0.1"]
        (folder / "node.toml").write_text("\n".join(lines) + "\n")
        log = open(folder / "node.log", "wb")  # noqa: SIM115 -- the child writes it
        process = subprocess.Popen(
            [
                *COMMAND,
                "node",
                "run",
                "--config",
                str(folder / "node.toml"),
                "--log-format",
                "json",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        node = Node(name, folder, process, keys.peer_id)
        self.nodes.append(node)
        return node


def _ready(*nodes: Node) -> None:
    for node in nodes:
        _wait_for(
            f"{node.name}'s control socket",
            lambda node=node: (
                (node.state / "control.sock").exists()  # type: ignore[misc]
                or node.process.poll() is not None
            ),
            STARTUP_S,
        )
        assert node.process.poll() is None, node.log()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("nodes")
    owner = KeyPair.generate()
    colony = create_colony(owner, "lab", int(time.time()) - 3600)
    (root / "colony").mkdir()
    (root / "colony" / COLONY_FILE).write_bytes(encode_record(colony))
    lab = Lab(root, owner, encode_record(colony), [])
    try:
        yield lab
    finally:
        for node in lab.nodes:
            if node.process.poll() is None:
                node.process.kill()
                node.process.wait()


@pytest.fixture(scope="module")
def pair(lab: Lab) -> tuple[Node, Node]:
    a_keys, b_keys = KeyPair.generate(), KeyPair.generate()
    a = lab.start("a", certificate=lab.certify(a_keys, "a", 1), keys=a_keys)
    _ready(a)
    address = a.status()["listen_addrs"][0]
    b = lab.start(
        "b",
        certificate=lab.certify(b_keys, "b", 2),
        keys=b_keys,
        bootstrap=[f"{address}/p2p/{a.peer_id}"],
    )
    _ready(b)
    _wait_for("a and b connected", lambda: a.status()["connected_peers"] == [b.peer_id])
    return a, b


def test_two_nodes_connect_and_exchange_signed_messages(pair: tuple[Node, Node]) -> None:
    a, b = pair
    assert b.status()["connected_peers"] == [a.peer_id]
    text = run("node", "status", "--state-dir", a.state)
    assert text.code == 0 and a.peer_id in text.stdout and b.peer_id in text.stdout
    result = run("node", "ping", a.peer_id, "--count", "3", "--state-dir", b.state, "--json")
    assert result.code == 0, result.stderr
    assert len(result.json()["rtt_ms"]) == 3 and all(r > 0 for r in result.json()["rtt_ms"])
    assert a.status()["messaging"]["requests_received"] >= 3
    # And the other way, over the same connection.
    result = run("node", "ping", b.peer_id, "--state-dir", a.state, "--json")
    assert result.code == 0, result.stderr
    peers = run("node", "peers", "--state-dir", a.state, "--json").json()["peers"]
    assert [(p["peer_id"], p["name"], p["roles"]) for p in peers] == [(b.peer_id, "b", ["server"])]


def test_strangers_are_refused_and_counted_by_cause(lab: Lab, pair: tuple[Node, Node]) -> None:
    a, _ = pair
    target = f"{a.status()['listen_addrs'][0]}/p2p/{a.peer_id}"
    revoked_keys, expired_keys = KeyPair.generate(), KeyPair.generate()
    revoked_cert = lab.certify(revoked_keys, "gone", 10)
    write_revocations(a.folder / "colony", [revoke(lab.owner, revoked_cert, now=int(time.time()))])
    _wait_for("a applied the revocation", lambda: a.status()["membership"]["revoked"] == 1)

    other_owner = KeyPair.generate()
    other = create_colony(other_owner, "elsewhere", int(time.time()) - 3600)
    foreign_keys = KeyPair.generate()
    foreign_cert = issue_certificate(
        other_owner,
        other,
        foreign_keys.public_key,
        name="foreign",
        roles=(Role.SERVER,),
        not_before=int(time.time()) - 60,
        not_after=int(time.time()) + 3600,
        serial=1,
    )
    strangers = [
        lab.start("nocert", certificate=None, bootstrap=[target]),
        lab.start(
            "expired",
            certificate=lab.certify(expired_keys, "old", 11, expired=True),
            keys=expired_keys,
            bootstrap=[target],
        ),
        lab.start("revoked", certificate=revoked_cert, keys=revoked_keys, bootstrap=[target]),
        lab.start(
            "foreign",
            certificate=foreign_cert,
            keys=foreign_keys,
            bootstrap=[target],
            colony_bytes=encode_record(other),
        ),
    ]
    _ready(*strangers)
    causes = ("no_certificate", "expired", "revoked", "foreign_colony")

    def all_counted() -> bool:
        refused = a.status()["gating"]["refused"]
        return all(refused[cause] >= 1 for cause in causes)

    _wait_for("every cause counted", all_counted, 30)
    status = a.status()
    assert status["gating"]["refused"]["key_mismatch"] == 0
    assert status["connected_peers"] == [pair[1].peer_id]
    for stranger in strangers:
        assert stranger.status()["connected_peers"] == []
        assert stranger.process.poll() is None  # refused, not crashed


def test_junk_at_the_port_does_not_take_the_node_down(pair: tuple[Node, Node]) -> None:
    a, b = pair
    host, port = "127.0.0.1", int(a.status()["listen_addrs"][0].rsplit("/", 1)[1])
    junk = [
        os.urandom(4096),
        b"\x13/multistream/1.0.0\n\x07/noise\n",  # stops right after the security proposal
        b"\x13/multistream/1.0.0\n\x07/noise\n\x00\x20" + os.urandom(16),  # a cut Noise message
        b"\xff" * 64,
        b"",
    ]
    for payload in junk * 4:
        with socket.create_connection((host, port), timeout=5) as connection:
            if payload:
                connection.sendall(payload)
            connection.shutdown(socket.SHUT_WR)
    # the node judges each connection on its own time: wait for the verdicts
    _wait_for("the junk refused", lambda: a.status()["transport"]["failed_upgrades"] >= 1, 15)
    assert a.status()["connected_peers"] == [b.peer_id]
    assert run("node", "ping", b.peer_id, "--state-dir", a.state).code == 0


def test_revocation_learned_later_cuts_the_member(lab: Lab, pair: tuple[Node, Node]) -> None:
    a, b = pair
    assert a.status()["connected_peers"] == [b.peer_id]
    b_cert = decode_record(Certificate, (b.folder / "node.cert").read_bytes())
    colony = read_colony(a.folder / "colony")
    existing = read_revocations(a.folder / "colony", colony)
    write_revocations(
        a.folder / "colony", [*existing, revoke(lab.owner, b_cert, now=int(time.time()))]
    )
    _wait_for("a cut b", lambda: a.status()["connected_peers"] == [], 15)
    # Per connection: the DHT and gossip links may hold a second one to b.
    assert a.status()["gating"]["cut_later"]["revoked"] >= 1
    _wait_for("b lost a", lambda: b.status()["connected_peers"] == [], 15)


def test_sigterm_stops_every_node_cleanly(lab: Lab, pair: tuple[Node, Node]) -> None:
    for node in lab.nodes:
        assert node.process.poll() is None, node.log()
        node.process.send_signal(signal.SIGTERM)
    for node in lab.nodes:
        assert node.process.wait(timeout=20) == 0, node.log()
        assert not (node.state / "control.sock").exists()
        assert '"node stopped"' in node.log()
        records = [json.loads(line) for line in node.log().splitlines()]  # all structured
        assert {"ts", "level", "logger", "message"} <= set(records[0])
    result = run("node", "status", "--state-dir", lab.nodes[0].state)
    assert result.code != 0 and "no node is running" in result.stderr


def test_startup_errors_are_one_line(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text('[node]\nkey = "missing.key"\ncolony = "colony"\n')
    result = run("node", "run", "--config", config, timeout=30)
    assert result.code == 1 and result.stderr.count("\n") == 1
    assert "missing.key: no such key file" in result.stderr
    config.write_text('[node]\nkey = "k"\ncolony = "c"\n[gating]\npeers_max = "many"\n')
    result = run("node", "run", "--config", config, timeout=30)
    assert result.code == 1
    assert f"{config}: [gating] peers_max: expected int" in result.stderr
    result = run("node", "status", "--state-dir", tmp_path / "nothing")
    assert result.code == 1 and "no node is running here" in result.stderr


def test_restart_after_sigkill_reclaims_the_stale_control_socket(tmp_path: Path) -> None:
    owner = KeyPair.generate()
    colony = create_colony(owner, "lab", int(time.time()) - 3600)
    lab = Lab(tmp_path, owner, encode_record(colony), [])
    (tmp_path / "colony").mkdir()
    (tmp_path / "colony" / COLONY_FILE).write_bytes(lab.colony_bytes)
    keys = KeyPair.generate()
    node = lab.start("n", certificate=lab.certify(keys, "n", 1), keys=keys)
    try:
        _ready(node)
        node.process.kill()
        node.process.wait()
        assert (node.state / "control.sock").exists()  # left behind by the killed node
        restarted = subprocess.Popen(
            [*COMMAND, "node", "run", "--config", str(node.folder / "node.toml")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        node.process = restarted
        _wait_for("the restarted node answers", lambda: _answers(node), STARTUP_S)
        assert node.status()["peer_id"] == keys.peer_id
        restarted.send_signal(signal.SIGTERM)
        assert restarted.wait(timeout=20) == 0
    finally:
        if node.process.poll() is None:
            node.process.kill()
            node.process.wait()


def _answers(node: Node) -> bool:
    try:
        node.status()
    except ControlError:
        return False
    return True
