"""Answering DHT requests from local state: the server half of `DhtNode`.

A pure function of the request and the node's table and stores. Answers name at
most `k` closer peers and never the requester itself; an ADD_PROVIDER is taken
only from the provider itself and only from a colony member.
"""

from __future__ import annotations

from typing import assert_never

from colonymesh.node.dht.effects import Output, PeerMisbehaved, SendMessage
from colonymesh.node.dht.ids import id_from_bytes, key_id
from colonymesh.node.dht.messages import (
    AddProvider,
    AddProviderResult,
    FindNode,
    FindNodeResult,
    GetProviders,
    GetProvidersResult,
    GetValue,
    GetValueResult,
    PeerInfo,
    Ping,
    Pong,
    PutValue,
    PutValueResult,
    Request,
)
from colonymesh.node.dht.records import IsMember, ProviderStore, ValueStore
from colonymesh.node.dht.routing import RoutingTable


def answer_request(
    from_peer: PeerInfo,
    msg: Request,
    now: float,
    table: RoutingTable,
    values: ValueStore,
    providers: ProviderStore,
    is_member: IsMember,
    k: int,
) -> list[Output]:
    me = from_peer.public_key
    match msg:
        case Ping(request_id=rid):
            return [SendMessage(from_peer, Pong(rid))]
        case FindNode(request_id=rid, target=target):
            closer = table.closest(id_from_bytes(target), k, exclude=me)
            return [SendMessage(from_peer, FindNodeResult(rid, tuple(closer)))]
        case GetValue(request_id=rid, key=key):
            record = values.get(key, now)
            closer = table.closest(key_id(key), k, exclude=me)
            return [SendMessage(from_peer, GetValueResult(rid, record, tuple(closer)))]
        case PutValue(request_id=rid, record=record):
            why = values.put(record, now)
            reason = why.value if why is not None else ""
            return [SendMessage(from_peer, PutValueResult(rid, why is None, reason))]
        case AddProvider(request_id=rid, key=key, provider=provider):
            out: list[Output] = []
            ok = False
            if provider.public_key != me:
                out.append(PeerMisbehaved(me, "announced a provider other than itself"))
            elif is_member(me):
                ok = providers.add(key, PeerInfo(me, provider.addrs or from_peer.addrs), now)
            out.append(SendMessage(from_peer, AddProviderResult(rid, ok)))
            return out
        case GetProviders(request_id=rid, key=key):
            found = providers.get(key, now, k)
            closer = table.closest(key_id(key), k, exclude=me)
            return [SendMessage(from_peer, GetProvidersResult(rid, tuple(found), tuple(closer)))]
        case _:
            assert_never(msg)
