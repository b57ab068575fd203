"""``colonymesh node run|status|init|ping|peers``: the node binary and its local control.

``node run --config node.toml`` runs one peer until SIGINT or SIGTERM, then
shuts down cleanly (exit 0, control socket removed). A node whose
certificate holds the ``server`` role and whose config names the colony's
servers in ``[colony]`` also serves the ledger (``docs/running.md``);
``node status`` then shows its Raft role, term, leader and commit index. Logs go to stderr,
readable or one JSON object per line (``--log-format json``). The other
commands talk to a running node over its control channel
(:mod:`colonymesh.node.control`), found from ``--state-dir``, ``--config``
or ``--control``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import sys
from pathlib import Path
from typing import Any

from colonymesh.node.cli.output import add_json_flag, emit
from colonymesh.node.errors import InputError

log = logging.getLogger("colonymesh.node")


def register(commands: Any) -> None:
    node = commands.add_parser("node", help="run a colony node and talk to a running one")
    sub = node.add_subparsers(dest="node_command", metavar="ACTION", required=True)

    run = sub.add_parser("run", help="run a node until SIGINT/SIGTERM")
    run.add_argument("--config", "-c", type=Path, required=True, help="the node.toml")
    run.add_argument("--log-format", choices=("text", "json"), help="override [log] format")
    run.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    run.set_defaults(handler=_run)

    status = sub.add_parser("status", help="peer id, addresses, peers, uptime, gating counters")
    _add_target(status)
    add_json_flag(status)
    status.set_defaults(handler=_status)

    peers = sub.add_parser(
        "peers", help="connections (with certificate names), routing table, gossip neighbours"
    )
    _add_target(peers)
    add_json_flag(peers)
    peers.set_defaults(handler=_peers)

    ping = sub.add_parser("ping", help="send a signed colony.ping to a peer through the node")
    ping.add_argument("peer_id", help="the peer to ping")
    ping.add_argument("--count", type=int, default=1)
    ping.add_argument("--timeout", type=float, default=5.0, help="seconds per ping")
    _add_target(ping)
    add_json_flag(ping)
    ping.set_defaults(handler=_ping)

    find = sub.add_parser("find", help="look a peer up in the DHT through the node")
    find.add_argument("peer_id", help="the peer to look up")
    find.add_argument("--timeout", type=float, default=10.0, help="seconds for the lookup")
    _add_target(find)
    add_json_flag(find)
    find.set_defaults(handler=_find)

    announce = sub.add_parser("announce", help="gossip a signed notice to every node")
    announce.add_argument("text", help="the notice (at most 4 KiB)")
    _add_target(announce)
    add_json_flag(announce)
    announce.set_defaults(handler=_announce)

    notices = sub.add_parser("notices", help="the notices this node received by gossip")
    notices.add_argument("--msg-id", help="also say how many peers delivered this message")
    _add_target(notices)
    add_json_flag(notices)
    notices.set_defaults(handler=_notices)

    connect = sub.add_parser("connect", help="dial a multiaddr and run the membership exchange")
    connect.add_argument("address", help="/ip4/H/tcp/P[/p2p/ID]")
    _add_target(connect)
    add_json_flag(connect)
    connect.set_defaults(handler=_connect)

    init = sub.add_parser("init", help="write a node.toml with the defaults")
    init.add_argument("--out", "-o", type=Path, required=True, help="config file to write")
    init.add_argument("--key", required=True, help="the node's secret key file")
    init.add_argument("--colony", required=True, help="the colony folder (or colony.cbor)")
    init.add_argument("--certificate", help="this node's certificate")
    init.add_argument("--listen", default="/ip4/127.0.0.1/tcp/4001")
    init.add_argument("--bootstrap", action="append", default=[], help="repeatable")
    init.add_argument(
        "--server",
        action="append",
        default=[],
        help="peer id of a founding server peer, repeatable: writes [colony] servers",
    )
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    add_json_flag(init)
    init.set_defaults(handler=_init)


def _add_target(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--state-dir", type=Path, help="the node's state folder")
    group.add_argument("--config", "-c", type=Path, help="the node's node.toml")
    group.add_argument(
        "--control", help="control address, e.g. ipc:///var/lib/colonymesh/control.sock"
    )
    parser.add_argument("--timeout-control", type=float, default=5.0, help=argparse.SUPPRESS)


def _control_address(args: argparse.Namespace) -> str:
    from colonymesh.node.config import control_address_of, load_config

    if args.control:
        return str(args.control)
    if args.config:
        return load_config(args.config).control_address
    return control_address_of(args.state_dir or Path("state"))


def _call(
    args: argparse.Namespace,
    command: str,
    arguments: dict[str, Any] | None = None,
    *,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    from colonymesh.node.control import call

    return call(
        _control_address(args), command, arguments, timeout_s=timeout_s or args.timeout_control
    )


# --- run ------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message (and exc when there is one)."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            document["exc"] = self.formatException(record.exc_info)
        return json.dumps(document, sort_keys=True)


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger("colonymesh")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def _run(args: argparse.Namespace) -> int:
    import trio

    from colonymesh.node.config import load_config
    from colonymesh.node.peer.daemon import run_node

    config = load_config(args.config)
    setup_logging(args.log_level or config.log_level, args.log_format or config.log_format)
    return trio.run(run_node, config)


# --- talking to a running node ----------------------------------------------------


def _status(args: argparse.Namespace) -> int:
    status = _call(args, "status")
    gating = status.get("gating", {})
    refused = {k: v for k, v in gating.get("refused", {}).items() if v}
    lines = [
        f"peer id:      {status.get('peer_id')}",
        f"colony:       {status.get('colony')} ({str(status.get('colony_id', ''))[:16]}…)",
        f"member:       {status.get('name') or '(no certificate)'}"
        f" roles: {','.join(status.get('roles', [])) or '-'}",
        f"listening:    {' '.join(status.get('listen_addrs', []))}",
        f"uptime:       {status.get('uptime_s', 0):.1f} s (pid {status.get('pid')})",
        f"peers:        {len(status.get('connected_peers', []))}",
        *[f"  {peer}" for peer in status.get("connected_peers", [])],
        f"admitted:     {gating.get('admitted_total', 0)} total, {gating.get('admitted_now', 0)} now",
        "refused:      "
        + (", ".join(f"{cause} {count}" for cause, count in sorted(refused.items())) or "none"),
    ]
    ledger = status.get("ledger")
    if ledger:
        lines.append(
            f"ledger:       raft {ledger['role']} term {ledger['term']} commit {ledger['commit']}"
            f" leader {ledger['leader'] or '(none)'}"
        )
    executor = status.get("executor")
    if executor:
        stats = executor.get("stats", {})
        lines.append(
            f"executor:     {executor['name']} ({executor['type']}) running "
            f"{len(executor['running'])}, claimed {stats.get('claimed', 0)}, "
            f"succeeded {stats.get('succeeded', 0)}, failed {stats.get('failed', 0)}"
            + (f"; {executor['error']}" if executor.get("error") else "")
        )
    emit(args, status, lines)
    return 0


def _peers(args: argparse.Namespace) -> int:
    result = _call(args, "peers")
    table = _call(args, "dht.table")
    result["routing_table"] = table["contacts"]
    result["gossip_neighbours"] = table["gossip_neighbours"]
    lines = [f"connections ({len(result.get('peers', []))}):"]
    lines += [
        f"  {p['peer_id']}  {p['name']}  {','.join(p['roles'])}  {p['remote_addr']}"
        for p in result.get("peers", [])
    ] or ["  none"]
    lines.append(f"routing table ({len(table['contacts'])} contacts):")
    lines += [
        f"  bucket {c['bucket']:3d}  {c['peer_id']}  {' '.join(c['addrs'])}"
        for c in table["contacts"]
    ]
    lines.append(f"gossip neighbours: {len(table['gossip_neighbours'])}")
    emit(args, result, lines)
    return 0


def _find(args: argparse.Namespace) -> int:
    result = _call(
        args,
        "dht.find",
        {"peer_id": args.peer_id},
        timeout_s=args.timeout + args.timeout_control,
    )
    found = f"{args.peer_id}  {' '.join(result['addrs'])}"
    emit(args, result, [found if result["found"] else f"{args.peer_id}: not found"])
    return 0 if result["found"] else 1


def _announce(args: argparse.Namespace) -> int:
    result = _call(args, "gossip.announce", {"text": args.text})
    emit(args, result, [f"announced (message {result['msg_id'][:16]})"])
    return 0


def _notices(args: argparse.Namespace) -> int:
    arguments = {} if args.msg_id is None else {"msg_id": args.msg_id}
    result = _call(args, "gossip.notices", arguments)
    lines = [f"{n['from'][:16]}…  {n['text']}" for n in result["notices"]] or ["no notices"]
    for msg_id, count in result["delivered_to"].items():
        lines.append(f"message {msg_id[:16]} delivered to {count} peer(s) so far")
    emit(args, result, lines)
    return 0


def _ping(args: argparse.Namespace) -> int:
    rtts: list[float] = []
    for _ in range(max(1, args.count)):
        result = _call(
            args,
            "ping",
            {"peer_id": args.peer_id, "timeout_s": args.timeout},
            timeout_s=args.timeout + args.timeout_control,
        )
        rtts.append(float(result["rtt_ms"]))
    document = {"peer_id": args.peer_id, "rtt_ms": rtts}
    emit(args, document, [f"signed ping to {args.peer_id}: {rtt:.3f} ms" for rtt in rtts])
    return 0


def _connect(args: argparse.Namespace) -> int:
    result = _call(args, "connect", {"address": args.address}, timeout_s=15.0)
    emit(args, result, [f"admitted {result['peer_id']} at {args.address}"])
    return 0


def _init(args: argparse.Namespace) -> int:
    from colonymesh.node.config import default_config_text, parse_config

    text = default_config_text(
        args.key, args.colony, args.certificate, args.listen, args.bootstrap, args.server
    )
    parse_config(args.out, text)  # what we write must load
    if args.out.exists() and not args.force:
        raise InputError(f"{args.out}: already exists (use --force to overwrite)")
    args.out.write_text(text)
    emit(
        args,
        {"config": str(args.out)},
        [f"wrote {args.out}; run: colonymesh node run --config {args.out}"],
    )
    return 0


__all__ = ["JsonFormatter", "register", "setup_logging"]
