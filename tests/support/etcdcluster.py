"""A real 3-member etcd cluster on loopback, with a partition we control, for tests.

Each member listens for peers on a private port; the others reach it only
through a small TCP proxy of ours (the URL it advertises). The proxy reads
the first HTTP request head of every peer connection to learn who dialed
(etcd's rafthttp names itself in ``X-Server-From``), so ``isolate(name)``
can cut exactly the connections to *and* from one member -- etcd's raft
streams carry messages both ways on a connection the reader dialed -- and
refuse new ones until ``heal()``. The member's client port stays open: a
test can still ask it questions, which is how a stale serializable read is
observed.

Clients talk to the v3 HTTP/JSON gateway (``/v3/kv/put``, ``/v3/kv/range``)
with ``urllib``: keys and values are base64 in JSON, int64 fields strings.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ETCD = "/usr/bin/etcd"
HEAD_BYTES_MAX = 64 * 1024


def etcd_available() -> bool:
    return shutil.which(ETCD) is not None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class EtcdError(Exception):
    """The request failed or timed out; its effect (for a put) is unknown."""


@dataclass
class _Link:
    dst: str  # the member the proxy fronts
    src_id: str | None  # the dialing member's id (hex), if it said
    sockets: tuple[socket.socket, socket.socket]


class PeerProxies:
    """One TCP proxy in front of each member's peer port; ``isolate``/``heal`` cut and restore."""

    def __init__(self, targets: dict[str, int]) -> None:
        self.targets = targets  # name -> the member's real peer port
        self.ports: dict[str, int] = {}
        self.ids: dict[str, str] = {}  # name -> member id (hex), filled once the cluster is up
        self.isolated: str | None = None
        self.refused = 0
        self._links: list[_Link] = []
        self._lock = threading.Lock()
        self._listeners: list[socket.socket] = []
        self._closed = False
        for name in targets:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", 0))
            listener.listen(64)
            self.ports[name] = listener.getsockname()[1]
            self._listeners.append(listener)
            threading.Thread(target=self._accept, args=(name, listener), daemon=True).start()

    def _cut(self, link: _Link) -> bool:
        iso = self.isolated
        if iso is None:
            return False
        return link.dst == iso or (link.src_id is not None and link.src_id == self.ids.get(iso))

    def isolate(self, name: str) -> None:
        with self._lock:
            self.isolated = name
            doomed = [link for link in self._links if self._cut(link)]
            self._links = [link for link in self._links if not self._cut(link)]
        for link in doomed:
            _close(link.sockets)

    def heal(self) -> None:
        with self._lock:
            self.isolated = None

    def close(self) -> None:
        self._closed = True
        for listener in self._listeners:
            listener.close()
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            _close(link.sockets)

    def _accept(self, name: str, listener: socket.socket) -> None:
        while not self._closed:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(name, conn), daemon=True).start()

    def _serve(self, name: str, conn: socket.socket) -> None:
        head = b""
        try:
            conn.settimeout(5.0)
            while b"\r\n\r\n" not in head and len(head) < HEAD_BYTES_MAX:
                chunk = conn.recv(65536)
                if not chunk:
                    conn.close()
                    return
                head += chunk
            conn.settimeout(None)
            upstream = socket.create_connection(("127.0.0.1", self.targets[name]), timeout=5.0)
            upstream.settimeout(None)
        except OSError:
            conn.close()
            return
        link = _Link(name, _sender_of(head), (conn, upstream))
        with self._lock:
            if self._cut(link):
                self.refused += 1
                _close(link.sockets)
                return
            self._links.append(link)
        try:
            upstream.sendall(head)
        except OSError:
            _close(link.sockets)
            return
        threading.Thread(target=_pump, args=(upstream, conn), daemon=True).start()
        _pump(conn, upstream)


def _sender_of(head: bytes) -> str | None:
    for line in head.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == b"x-server-from":
            return value.strip().decode("ascii", "replace").lower()
    return None


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            chunk = src.recv(65536)
            if not chunk:
                break
            dst.sendall(chunk)
    except OSError:
        pass
    _close((src, dst))


def _close(sockets: tuple[socket.socket, socket.socket]) -> None:
    for s in sockets:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        s.close()


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    process: subprocess.Popen[bytes] | None = None
    id_hex: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"


@dataclass
class EtcdCluster:
    """Three etcd members behind :class:`PeerProxies`; ``close()`` kills them."""

    root: Path
    members: list[Member] = field(default_factory=list)
    proxies: PeerProxies | None = None

    @classmethod
    def start(cls, root: Path, size: int = 3, timeout_s: float = 20.0) -> EtcdCluster:
        cluster = cls(root)
        try:
            cluster._start(size, timeout_s)
        except BaseException:
            cluster.close()
            raise
        return cluster

    def _start(self, size: int, timeout_s: float) -> None:
        names = [f"m{i}" for i in range(size)]
        self.members = [Member(name, free_port(), free_port(), self.root / name) for name in names]
        self.proxies = PeerProxies({m.name: m.peer_port for m in self.members})
        initial = ",".join(
            f"{m.name}=http://127.0.0.1:{self.proxies.ports[m.name]}" for m in self.members
        )
        for m in self.members:
            argv = [
                ETCD,
                "--name", m.name,
                "--data-dir", str(m.data_dir),
                "--listen-client-urls", m.url,
                "--advertise-client-urls", m.url,
                "--listen-peer-urls", f"http://127.0.0.1:{m.peer_port}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.proxies.ports[m.name]}",
                "--initial-cluster", initial,
                "--initial-cluster-state", "new",
                "--initial-cluster-token", f"tok-{self.root.name}",
                "--heartbeat-interval", "50",
                "--election-timeout", "500",
                "--logger", "zap",
                "--log-outputs", str(self.root / f"{m.name}.log"),
            ]  # fmt: skip
            m.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        for m in self.members:
            while True:
                try:
                    status = self.status(m)
                    if status.get("leader"):
                        m.id_hex = format(int(status["header"]["member_id"]), "x")
                        break
                except EtcdError:
                    pass
                if m.process is not None and m.process.poll() is not None:
                    raise RuntimeError(f"etcd {m.name} exited: {self.log_tail(m)}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"etcd {m.name} not ready: {self.log_tail(m)}")
                time.sleep(0.05)
        self.proxies.ids = {m.name: m.id_hex for m in self.members}

    def partition(self) -> PeerProxies:
        if self.proxies is None:
            raise RuntimeError("the cluster is not started")
        return self.proxies

    def log_tail(self, m: Member) -> str:
        path = self.root / f"{m.name}.log"
        return path.read_text()[-2000:] if path.exists() else "(no log)"

    def close(self) -> None:
        for m in self.members:
            if m.process is not None and m.process.poll() is None:
                m.process.kill()
                m.process.wait(timeout=10)
        if self.proxies is not None:
            self.proxies.close()

    # --- the v3 JSON gateway -------------------------------------------------

    def call(self, m: Member, path: str, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        request = urllib.request.Request(
            m.url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                answer: dict[str, Any] = json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError) as error:
            raise EtcdError(f"{m.name}{path}: {error}") from error
        if "error" in answer or "code" in answer:
            raise EtcdError(f"{m.name}{path}: {answer}")
        return answer

    def status(self, m: Member, timeout_s: float = 1.0) -> dict[str, Any]:
        return self.call(m, "/v3/maintenance/status", {}, timeout_s)

    def leader(self, timeout_s: float = 10.0, among: list[Member] | None = None) -> Member:
        """The member every asked member agrees leads."""
        deadline = time.monotonic() + timeout_s
        asked = among or self.members
        while time.monotonic() < deadline:
            try:
                leaders = {format(int(self.status(m)["leader"]), "x") for m in asked}
            except (EtcdError, KeyError):
                leaders = set()
            if len(leaders) == 1:
                (lead,) = leaders
                for m in asked:
                    if m.id_hex == lead:
                        return m
            time.sleep(0.05)
        raise TimeoutError("no agreed etcd leader")

    def put(self, m: Member, key: str, value: str, timeout_s: float = 1.0) -> None:
        self.call(m, "/v3/kv/put", {"key": _b64(key), "value": _b64(value)}, timeout_s)

    def get(
        self, m: Member, key: str, *, serializable: bool = False, timeout_s: float = 1.0
    ) -> str | None:
        body: dict[str, Any] = {"key": _b64(key)}
        if serializable:
            body["serializable"] = True
        answer = self.call(m, "/v3/kv/range", body, timeout_s)
        kvs = answer.get("kvs") or []
        if not kvs:
            return None
        return base64.b64decode(kvs[0].get("value", "")).decode()
