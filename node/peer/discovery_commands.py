"""The control-channel commands of a node's discovery layer: routing table, lookups, notices.

A node running a :class:`DhtService` and a :class:`GossipService` adds
``discovery_commands(dht, gossip)`` to its control server; ``colonymesh node
peers|find|announce|notices`` call them. Operator notices are gossip on their
own topic (:data:`NOTICES_TOPIC`): signed by the announcing member, spread to
every live node, the last :data:`NOTICES_KEPT` kept per node — a colony-wide
``wall`` and, as a side effect, a way to see gossip reach every node.
Bad arguments are :class:`InputError` (one line back to the CLI, the node
unharmed).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from colonymesh.node.dht.driver import DhtService, DhtStatistics
from colonymesh.node.errors import ColonymeshError, InputError
from colonymesh.node.gossip.driver import GossipService
from colonymesh.node.gossip.effects import Delivered
from colonymesh.node.identity import peer_id_of, public_key_from_peer_id

Command = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]

NOTICES_TOPIC = "colony.notices"
NOTICES_KEPT = 100
NOTICE_BYTES_MAX = 4096


def _text(args: dict[str, Any], key: str, limit: int) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value:
        raise InputError(f"{key} must be non-empty text")
    if len(value.encode()) > limit:
        raise InputError(f"{key} is longer than {limit} bytes")
    return value


def _public_key(args: dict[str, Any]) -> bytes:
    text = _text(args, "peer_id", 128)
    try:
        return public_key_from_peer_id(text)
    except (ColonymeshError, ValueError) as error:
        raise InputError(f"not a peer id: {text}: {error}") from None


def discovery_commands(dht: DhtService, gossip: GossipService) -> dict[str, Command]:
    notices: deque[dict[str, Any]] = deque(maxlen=NOTICES_KEPT)

    def on_notice(delivered: Delivered) -> None:
        notices.append(
            {
                "msg_id": delivered.msg_id.hex(),
                "from": peer_id_of(delivered.publisher),
                "text": delivered.data.decode("utf-8", "replace"),
            }
        )

    gossip.subscribe(NOTICES_TOPIC, on_notice)

    async def table(args: dict[str, Any]) -> dict[str, Any]:
        stats: DhtStatistics = dht.stats
        return {
            "contacts": dht.routing_table(),
            "gossip_neighbours": gossip.neighbours(),
            "lookups": stats.lookups,
        }

    async def find(args: dict[str, Any]) -> dict[str, Any]:
        public_key = _public_key(args)
        info = await dht.find_peer(public_key)
        return {
            "peer_id": peer_id_of(public_key),
            "found": info is not None,
            "addrs": [] if info is None else list(info.addrs),
        }

    async def announce(args: dict[str, Any]) -> dict[str, Any]:
        text = _text(args, "text", NOTICE_BYTES_MAX)
        msg_id = await gossip.publish(NOTICES_TOPIC, text.encode())
        return {"msg_id": msg_id.hex()}

    async def notices_of(args: dict[str, Any]) -> dict[str, Any]:
        reach: dict[str, int | None] = {}
        wanted = args.get("msg_id")
        if wanted is not None:
            try:
                reach[wanted] = gossip.delivery_count(bytes.fromhex(str(wanted)))
            except ValueError:
                raise InputError(f"msg_id must be hex, got {wanted!r}") from None
        return {"notices": list(notices), "delivered_to": reach}

    return {
        "dht.table": table,
        "dht.find": find,
        "gossip.announce": announce,
        "gossip.notices": notices_of,
    }
