"""``colonymesh dht get|put|providers|find|peers``: look into the colony's DHT.

Each command opens a short-lived peer from a client profile (``--profile`` or
``$COLONYMESH_PROFILE``), joins the DHT through the profile's bootstrap
addresses, runs one operation and leaves. No running node of our own is needed,
and the answers are the network's, not one node's cache: ``get`` is a full
quorum lookup with signature and membership checks, ``providers`` a provider
lookup. ``peers`` prints the routing table this client built by joining (its
bootstrap lookup plus a self-lookup): the members the DHT hands out as reachable
around it, bucket by bucket.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from colonymesh.node.cli.output import add_json_flag, emit
from colonymesh.node.cli.profile import add_profile_option
from colonymesh.node.errors import ColonymeshError, InputError

if TYPE_CHECKING:
    from colonymesh.node.dht.driver import DhtService

JOIN_TIMEOUT_S = 15.0


def register(commands: Any) -> None:
    dht = commands.add_parser("dht", help="look up values, providers and peers in the colony's DHT")
    sub = dht.add_subparsers(dest="dht_command", metavar="SUBCOMMAND", required=True)

    def common(parser: Any, with_key: bool = True) -> None:
        if with_key:
            parser.add_argument("key", help="the record key (text; with --hex, hexadecimal)")
            parser.add_argument("--hex", action="store_true", help="KEY is hexadecimal bytes")
        parser.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
        add_profile_option(parser)
        add_json_flag(parser)

    get = sub.add_parser("get", help="the newest signed value stored under KEY")
    common(get)
    get.set_defaults(handler=_get)
    put = sub.add_parser("put", help="sign VALUE and store it under KEY at the k closest peers")
    common(put)
    put.add_argument("value", help="the value (text)")
    put.set_defaults(handler=_put)
    providers = sub.add_parser("providers", help="the peers that announced they provide KEY")
    common(providers)
    providers.set_defaults(handler=_providers)
    find = sub.add_parser("find", help="look up a peer by its peer id")
    find.add_argument("peer_id")
    common(find, with_key=False)
    find.set_defaults(handler=_find)
    peers = sub.add_parser("peers", help="the routing table a member builds by joining")
    common(peers, with_key=False)
    peers.set_defaults(handler=_peers)


def _key(args: argparse.Namespace) -> bytes:
    if not args.hex:
        return str(args.key).encode()
    try:
        return bytes.fromhex(args.key)
    except ValueError:
        raise InputError(f"not hexadecimal: {args.key!r}") from None


def _show(data: bytes) -> str:
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return data.hex()
    return text if text.isprintable() else data.hex()


def _with_dht(args: argparse.Namespace, operation: Callable[[DhtService], Awaitable[Any]]) -> Any:
    """Run `operation` on a DHT service of a short-lived peer from the client profile."""
    import trio

    from colonymesh.node.cli.profile import load_profile
    from colonymesh.node.colonyfiles import load_membership
    from colonymesh.node.dht.driver import DhtService, DhtServiceConfig
    from colonymesh.node.peer.peer import Peer, PeerConfig

    profile = load_profile(args)
    config = PeerConfig(
        keys=profile.keys,
        membership=load_membership(profile.directory),
        certificate=profile.certificate,
        bootstrap=profile.bootstrap,
        listen=(),  # a client: answers come back on its own connections
    )

    async def main() -> Any:
        async with Peer.open(config) as peer, trio.open_nursery() as nursery:
            dht: DhtService = await nursery.start(
                DhtService(peer, DhtServiceConfig(self_lookup_first_s=3600.0, client=True)).run
            )
            with trio.move_on_after(JOIN_TIMEOUT_S):
                await dht.wait_joined()
            if len(dht.core.table) == 0:
                raise ColonymeshError(
                    f"could not join the DHT through {', '.join(profile.bootstrap)}"
                )
            with trio.move_on_after(args.timeout):
                result = await operation(dht)
                nursery.cancel_scope.cancel()
                return result
            raise ColonymeshError(f"no answer from the DHT in {args.timeout} s")

    return trio.run(main)


def _get(args: argparse.Namespace) -> int:
    from colonymesh.node.identity import peer_id_of

    key = _key(args)
    record = _with_dht(args, lambda dht: dht.get_value(key))
    if record is None:
        emit(args, {"key": key.hex(), "found": False}, [f"no value under {_show(key)}"])
        return 1
    document = {
        "key": key.hex(),
        "found": True,
        "value": _show(record.value),
        "value_hex": record.value.hex(),
        "publisher": peer_id_of(record.publisher),
        "seq": record.seq,
    }
    emit(
        args,
        document,
        [
            f"{_show(key)} = {_show(record.value)}",
            f"  publisher {document['publisher']}, seq {record.seq}",
        ],
    )
    return 0


def _put(args: argparse.Namespace) -> int:
    key, value = _key(args), str(args.value).encode()
    stored = _with_dht(args, lambda dht: dht.put_value(key, value))
    document = {"key": key.hex(), "stored": stored.stored, "attempted": stored.attempted}
    emit(args, document, [f"stored at {stored.stored} of {stored.attempted} closest peers"])
    return 0 if stored.stored > 0 else 1


def _providers(args: argparse.Namespace) -> int:
    from colonymesh.node.identity import peer_id_of

    key = _key(args)
    found = _with_dht(args, lambda dht: dht.get_providers(key))
    rows = [{"peer_id": peer_id_of(p.public_key), "addrs": list(p.addrs)} for p in found]
    lines = [f"{len(rows)} provider(s) of {_show(key)}"]
    lines += [f"  {row['peer_id']}  {' '.join(row['addrs'])}" for row in rows]
    emit(args, {"key": key.hex(), "providers": rows}, lines)
    return 0


def _find(args: argparse.Namespace) -> int:
    from colonymesh.node.identity import public_key_from_peer_id

    try:
        public_key = public_key_from_peer_id(args.peer_id)
    except (ColonymeshError, ValueError) as error:
        raise InputError(f"not a peer id: {args.peer_id}: {error}") from None
    info = _with_dht(args, lambda dht: dht.find_peer(public_key))
    if info is None:
        emit(args, {"peer_id": args.peer_id, "found": False}, [f"{args.peer_id}: not found"])
        return 1
    emit(
        args,
        {"peer_id": args.peer_id, "found": True, "addrs": list(info.addrs)},
        [f"{args.peer_id}  {' '.join(info.addrs)}"],
    )
    return 0


def _peers(args: argparse.Namespace) -> int:
    from colonymesh.node.dht.ids import id_to_bytes

    async def table(dht: DhtService) -> list[dict[str, Any]]:
        await dht.find_node(id_to_bytes(dht.core.table.self_id))
        return dht.routing_table()

    rows = _with_dht(args, table)
    lines = [f"{len(rows)} contact(s)"]
    lines += [f"  bucket {r['bucket']:3d}  {r['peer_id']}  {' '.join(r['addrs'])}" for r in rows]
    emit(args, {"contacts": rows}, lines)
    return 0
