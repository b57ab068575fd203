"""``node.toml``: the node binary's configuration, with defaults and file-and-key errors.

Example (every key but ``key`` and ``colony`` is optional)::

    [node]
    key = "node.key"                 # secret key file (0600)
    certificate = "node.cert"        # this member's certificate (absent: a stranger)
    colony = "colony"                # colony folder (colony.cbor, revocations.cbor) or colony.cbor
    state_dir = "state"              # control socket, pid file
    listen = ["/ip4/127.0.0.1/tcp/4001"]
    bootstrap = ["/ip4/10.0.0.2/tcp/4001/p2p/12D3KooW..."]

    [log]
    level = "info"                   # debug, info, warning, error
    format = "text"                  # or "json": one object per line

    [gating]
    presentation_timeout_s = 3.0
    allow_strangers_identify_ping = false
    strangers_grace_s = 5.0
    peers_max = 256

    [messaging]
    frame_bytes_max = 1048576
    request_timeout_s = 10.0

    [control]
    address = "ipc://STATE_DIR/control.sock"

    [discovery]                      # LAN discovery (libp2p mDNS), for boxes on one network
    mdns = false
    mdns_interface = "0.0.0.0"       # the LAN interface's IPv4 address; 0.0.0.0: the kernel's

    [colony]                         # the colony's server peers (the Raft voters)
    servers = ["12D3KooW...", "12D3KooW...", "12D3KooW..."]
    server_certificates = []         # default: their certificates in the colony's members/
    election_timeout_s = 0.5
    heartbeat_interval_s = 0.05
    tick_interval_s = 0.5
    executor_stale_s = 10.0          # an executor silent this long is declared lost

    [executor]                       # what ``colonymesh executor run`` serves
    kind = "python"
    functions = "mypkg.tasks:functions"
    name = "edge-1"                  # default: the certificate's name
    concurrency = 1
    type = "python"                  # optional: must match the certificate's executor type
    executor_config = "executor.toml"  # the kind's settings ([python], [process], [slurm],
                                     # [kubernetes]); --executor-config overrides it

A node whose certificate holds the ``server`` role and whose config has a
``[colony]`` section serves the ledger: it is one of ``servers`` (the
founding Raft voters, fixed for now). Any other member uses ``servers`` to
find the ledger, or, without it, the admitted peers holding the server role.

Relative paths are relative to the folder of the config file. Roles come
from the certificate, not from here: a node cannot grant itself a role.
Any defect raises :class:`InputError` naming the file and the key.
"""

from __future__ import annotations

import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from colonymesh.node.errors import ColonymeshError, InputError
from colonymesh.node.peer.connections import ConnectionsConfig
from colonymesh.node.peer.gating import GatingConfig
from colonymesh.node.peer.messaging import MessagingConfig
from colonymesh.node.transport import multiaddr

CONFIG_BYTES_MAX = 1024 * 1024
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
CONTROL_SOCKET = "control.sock"
T = TypeVar("T")

_SECTIONS: dict[str, tuple[str, ...]] = {
    "node": ("key", "certificate", "colony", "state_dir", "listen", "bootstrap"),
    "log": ("level", "format"),
    "gating": (
        "presentation_timeout_s",
        "allow_strangers_identify_ping",
        "strangers_grace_s",
        "peers_max",
        "sweep_interval_s",
    ),
    "messaging": ("frame_bytes_max", "request_timeout_s", "handler_timeout_s"),
    "control": ("address",),
    "colony": (
        "servers",
        "server_certificates",
        "election_timeout_s",
        "heartbeat_interval_s",
        "tick_interval_s",
        "executor_stale_s",
    ),
    "executor": ("kind", "functions", "name", "concurrency", "type", "executor_config"),
    "discovery": ("mdns", "mdns_interface", "mdns_port"),
}
EXECUTOR_KINDS = ("python", "process", "slurm", "kubernetes")


@dataclass(frozen=True, slots=True)
class ColonySettings:
    """``[colony]``: the founding server peers and the Raft timing they share."""

    servers: tuple[str, ...] = ()
    server_certificates: tuple[Path, ...] = ()
    election_timeout_s: float = 0.5
    heartbeat_interval_s: float = 0.05
    tick_interval_s: float = 0.5
    executor_stale_s: float = 10.0


@dataclass(frozen=True, slots=True)
class ExecutorSettings:
    """``[executor]``: what ``colonymesh executor run`` serves (flags override)."""

    kind: str = "python"
    functions: str = ""
    name: str = ""
    concurrency: int = 1
    executor_type: str = ""  # if set, must match the certificate's executor type
    executor_config: Path | None = None  # the kind's settings file (--executor-config wins)


@dataclass(frozen=True, slots=True)
class NodeConfig:
    path: Path
    key: Path
    colony: Path
    certificate: Path | None = None
    state_dir: Path = Path("state")
    listen: tuple[str, ...] = ("/ip4/127.0.0.1/tcp/4001",)
    bootstrap: tuple[str, ...] = ()
    log_level: str = "info"
    log_format: str = "text"
    gating: GatingConfig = field(default_factory=GatingConfig)
    messaging: MessagingConfig = field(default_factory=MessagingConfig)
    connections: ConnectionsConfig = field(default_factory=ConnectionsConfig)
    control: str = ""
    colony_settings: ColonySettings | None = None  # None: no [colony] section
    executor: ExecutorSettings = field(default_factory=ExecutorSettings)
    mdns: bool = False  # [discovery] LAN discovery for boxes without a bootstrap address
    mdns_interface: str = "0.0.0.0"
    mdns_port: int = 5353

    @property
    def control_address(self) -> str:
        return self.control or control_address_of(self.state_dir)


def control_address_of(state_dir: Path) -> str:
    return f"ipc://{state_dir.resolve() / CONTROL_SOCKET}"


class _Reader:
    """Typed access to one table, errors naming ``file: [section] key``."""

    def __init__(self, path: Path, section: str, table: dict[str, Any]) -> None:
        self.path = path
        self.section = section
        self.table = table

    def fail(self, key: str, message: str) -> InputError:
        return InputError(f"{self.path}: [{self.section}] {key}: {message}")

    def get(self, key: str, kind: type[T], default: T) -> T:
        value = self.table.get(key, default)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(key, f"expected {kind.__name__}, got {type(value).__name__}")
        return value

    def positive(self, key: str, kind: type[T], default: T) -> T:
        value = self.get(key, kind, default)
        if value <= 0:  # type: ignore[operator]
            raise self.fail(key, "must be positive")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.get(key, str, default).lower()
        if value not in choices:
            raise self.fail(key, f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    def path_of(self, key: str, default: str | None) -> Path | None:
        value = self.table.get(key, default)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise self.fail(key, "expected a path")
        return self.resolve(value)

    def resolve(self, value: str) -> Path:
        candidate = Path(value).expanduser()
        return candidate if candidate.is_absolute() else self.path.parent / candidate

    def addresses(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.table.get(key, list(default))
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self.fail(key, "expected a list of multiaddrs")
        for item in value:
            try:
                multiaddr.parse_tcp_address(item)
            except (ColonymeshError, ValueError) as error:
                raise self.fail(
                    key, f"{item!r} is not a /ip4|ip6/H/tcp/P multiaddr ({error})"
                ) from None
        return tuple(value)

    def texts(self, key: str) -> tuple[str, ...]:
        value = self.table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(i, str) and i for i in value):
            raise self.fail(key, "expected a list of non-empty strings")
        return tuple(value)


def _colony_settings(reader: _Reader, present: bool) -> ColonySettings | None:
    if not present:
        return None
    defaults = ColonySettings()
    servers = reader.texts("servers")
    if not servers:
        raise reader.fail("servers", "required: the peer ids of the colony's founding servers")
    if len(set(servers)) != len(servers):
        raise reader.fail("servers", "lists a peer id twice")
    certificates = tuple(reader.resolve(name) for name in reader.texts("server_certificates"))
    election = reader.positive("election_timeout_s", float, defaults.election_timeout_s)
    heartbeat = reader.positive("heartbeat_interval_s", float, defaults.heartbeat_interval_s)
    if heartbeat >= election:
        raise reader.fail("heartbeat_interval_s", "must be shorter than election_timeout_s")
    return ColonySettings(
        servers=servers,
        server_certificates=certificates,
        election_timeout_s=election,
        heartbeat_interval_s=heartbeat,
        tick_interval_s=reader.positive("tick_interval_s", float, defaults.tick_interval_s),
        executor_stale_s=reader.positive("executor_stale_s", float, defaults.executor_stale_s),
    )


def _executor_settings(reader: _Reader) -> ExecutorSettings:
    defaults = ExecutorSettings()
    return ExecutorSettings(
        kind=reader.choice("kind", EXECUTOR_KINDS, defaults.kind),
        functions=reader.get("functions", str, defaults.functions),
        name=reader.get("name", str, defaults.name),
        concurrency=reader.positive("concurrency", int, defaults.concurrency),
        executor_type=reader.get("type", str, defaults.executor_type),
        executor_config=reader.path_of("executor_config", None),
    )


def parse_config(path: Path, text: str) -> NodeConfig:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise InputError(f"{path}: not valid TOML: {error}") from None
    for section, table in document.items():
        if section not in _SECTIONS:
            raise InputError(f"{path}: unknown section [{section}]")
        if not isinstance(table, dict):
            raise InputError(f"{path}: {section} must be a [table]")
        for key in table:
            if key not in _SECTIONS[section]:
                raise InputError(f"{path}: [{section}] {key}: unknown key")
    node, log, gating, messaging, control, colony_section, executor, discovery = (
        _Reader(path, name, document.get(name, {}))
        for name in (
            "node",
            "log",
            "gating",
            "messaging",
            "control",
            "colony",
            "executor",
            "discovery",
        )
    )
    mdns_interface = discovery.get("mdns_interface", str, "0.0.0.0")
    try:
        socket.inet_aton(mdns_interface)
    except OSError:
        raise discovery.fail("mdns_interface", "expected an IPv4 address") from None
    key = node.path_of("key", None)
    colony = node.path_of("colony", None)
    if key is None:
        raise node.fail("key", "required (the node's secret key file)")
    if colony is None:
        raise node.fail("colony", "required (the colony folder or its colony.cbor)")
    state_dir = node.path_of("state_dir", "state")
    address = control.get("address", str, "")
    if address and not address.startswith(("ipc://", "tcp://")):
        raise control.fail("address", "expected ipc://PATH or tcp://HOST:PORT")
    defaults = GatingConfig()
    messaging_defaults = MessagingConfig()
    return NodeConfig(
        path=path,
        key=key,
        colony=colony,
        certificate=node.path_of("certificate", None),
        state_dir=state_dir or path.parent / "state",
        listen=node.addresses("listen", ("/ip4/127.0.0.1/tcp/4001",)),
        bootstrap=node.addresses("bootstrap", ()),
        mdns=discovery.get("mdns", bool, False),
        mdns_interface=mdns_interface,
        mdns_port=discovery.positive("mdns_port", int, 5353),
        log_level=log.choice("level", LOG_LEVELS, "info"),
        log_format=log.choice("format", LOG_FORMATS, "text"),
        gating=GatingConfig(
            presentation_timeout_s=gating.positive(
                "presentation_timeout_s", float, defaults.presentation_timeout_s
            ),
            allow_strangers_identify_ping=gating.get(
                "allow_strangers_identify_ping", bool, defaults.allow_strangers_identify_ping
            ),
            strangers_grace_s=gating.positive(
                "strangers_grace_s", float, defaults.strangers_grace_s
            ),
            sweep_interval_s=gating.positive("sweep_interval_s", float, defaults.sweep_interval_s),
            peers_max=gating.positive("peers_max", int, defaults.peers_max),
        ),
        messaging=MessagingConfig(
            frame_bytes_max=messaging.positive(
                "frame_bytes_max", int, messaging_defaults.frame_bytes_max
            ),
            request_timeout_s=messaging.positive(
                "request_timeout_s", float, messaging_defaults.request_timeout_s
            ),
            handler_timeout_s=messaging.positive(
                "handler_timeout_s", float, messaging_defaults.handler_timeout_s
            ),
        ),
        connections=ConnectionsConfig(
            peers_max=gating.positive("peers_max", int, defaults.peers_max)
        ),
        control=address,
        colony_settings=_colony_settings(colony_section, "colony" in document),
        executor=_executor_settings(executor),
    )


def load_config(path: Path) -> NodeConfig:
    try:
        with open(path, "rb") as handle:
            raw = handle.read(CONFIG_BYTES_MAX + 1)
    except FileNotFoundError:
        raise InputError(f"{path}: no such config file") from None
    except OSError as error:
        raise InputError(f"{path}: cannot read config: {error.strerror}") from None
    if len(raw) > CONFIG_BYTES_MAX:
        raise InputError(f"{path}: too large for a config file")
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    return parse_config(path, text)


def default_config_text(
    key: str,
    colony: str,
    certificate: str | None,
    listen: str,
    bootstrap: list[str],
    servers: list[str] | None = None,
) -> str:
    """A commented node.toml with the defaults, for ``colonymesh node init``."""
    lines = [
        "# colonymesh node configuration (colonymesh node run --config THIS_FILE)",
        "# Relative paths are relative to this file's folder.",
        "[node]",
        f"key = {_toml_string(key)}",
        (
            f"certificate = {_toml_string(certificate)}"
            if certificate
            else '# certificate = "node.cert"  # without one, no colony admits this node'
        ),
        f"colony = {_toml_string(colony)}",
        'state_dir = "state"',
        f"listen = [{_toml_string(listen)}]",
        f"bootstrap = [{', '.join(_toml_string(b) for b in bootstrap)}]",
        "",
        "[log]",
        'level = "info"',
        'format = "text"  # "json": one object per line',
        "",
        "[gating]",
        "presentation_timeout_s = 3.0",
        "allow_strangers_identify_ping = false",
        "strangers_grace_s = 5.0",
        "peers_max = 256",
        "",
        "# The colony's server peers (founding Raft voters; 3 or 5). A node whose",
        "# certificate holds the server role serves the ledger when this section is",
        "# present; other members use it to find the ledger (without it: the admitted",
        "# peers holding the server role). Server certificates default to the",
        "# colony folder's members/*.cert.",
        *(
            [
                "[colony]",
                f"servers = [{', '.join(_toml_string(s) for s in servers)}]",
            ]
            if servers
            else ["# [colony]", '# servers = ["12D3KooW...", "12D3KooW...", "12D3KooW..."]']
        ),
        "# server_certificates = []",
        "# election_timeout_s = 0.5",
        "# heartbeat_interval_s = 0.05",
        "# tick_interval_s = 0.5",
        "# executor_stale_s = 10.0  # the leader declares an executor silent this long lost",
        "",
        "# LAN discovery (libp2p mDNS) for boxes on one network without a bootstrap",
        "# address; found peers are dialled and then gated like any other.",
        "# [discovery]",
        "# mdns = true",
        '# mdns_interface = "192.168.1.10"  # the LAN interface\'s IPv4 address',
        "",
        "# What `colonymesh executor run --config THIS_FILE` serves (flags override).",
        "# [executor]",
        '# kind = "python"                     # python, process, slurm or kubernetes',
        '# functions = "mypkg.tasks:functions"  # MODULE:ATTR, a PythonFunctions registry',
        '# name = "edge-1"                      # default: the certificate\'s name',
        "# concurrency = 1",
        '# executor_config = "executor.toml"    # the kind\'s settings (--executor-config wins)',
        "",
    ]
    return "\n".join(lines)


def _toml_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
