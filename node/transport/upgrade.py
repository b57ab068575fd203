"""Turning a raw TCP stream into a secured, multiplexed one.

multistream-select ``/noise`` in plaintext, the Noise XX handshake, the
connection gate, then multistream-select ``/yamux/1.0.0`` inside Noise —
libp2p's upgrade sequence. Every byte read past a step is handed to the
next one, so pipelining peers (which send their proposal together with
their handshake message) work. The caller bounds the whole upgrade with a
timeout; a peer that stalls, truncates or sends garbage gets a typed error.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from colonymesh.node.identity import peer_id_of
from colonymesh.node.transport import multistream, noise, yamux
from colonymesh.node.transport.errors import ConnectionRefused, HandshakeFailed, NegotiationFailed

_READ_BYTES = 65536 + 2


@dataclass(frozen=True, slots=True)
class SecuredPeer:
    """Who is on the other end, proven by the Noise handshake: what a gate decides on."""

    public_key: bytes  # Ed25519
    peer_id: str
    remote_addr: str
    is_initiator: bool  # True when we dialled


Gate = Callable[[SecuredPeer], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class Upgraded:
    remote_public_key: bytes
    sender: noise.NoiseSender
    receiver: noise.NoiseReceiver
    unconsumed_plaintext: bytes


async def _receive(raw: trio.abc.Stream, what: str) -> bytes:
    data = await raw.receive_some(_READ_BYTES)
    if not data:
        raise HandshakeFailed(f"connection closed during {what}")
    return bytes(data)


async def _select_plain(raw: trio.abc.Stream, role: multistream.Role, protocol: str) -> bytes:
    negotiation = multistream.Negotiation(role, [protocol])
    await raw.send_all(negotiation.data_to_send())
    while True:
        agreed = negotiation.receive_data(await _receive(raw, "security negotiation"))
        out = negotiation.data_to_send()
        if out:
            await raw.send_all(out)
        if agreed is not None:
            return agreed.unconsumed


async def _handshake(
    raw: trio.abc.Stream,
    handshake: noise.NoiseHandshake,
    unconsumed: bytes,
) -> noise.HandshakeCompleted:
    out = handshake.data_to_send()
    if out:
        await raw.send_all(out)
    completed = handshake.receive_data(unconsumed) if unconsumed else None
    while True:
        out = handshake.data_to_send()
        if out:
            await raw.send_all(out)
        if completed is not None:
            return completed
        completed = handshake.receive_data(await _receive(raw, "the Noise handshake"))


async def _select_secured(
    raw: trio.abc.Stream,
    completed: noise.HandshakeCompleted,
    role: multistream.Role,
) -> bytes:
    negotiation = multistream.Negotiation(role, [yamux.PROTOCOL_ID])
    sender, receiver = completed.sender, completed.receiver
    await raw.send_all(sender.seal(negotiation.data_to_send()))
    pending = receiver.receive_data(completed.unconsumed) if completed.unconsumed else []
    while True:
        for index, plaintext in enumerate(pending):
            agreed = negotiation.receive_data(plaintext)
            out = negotiation.data_to_send()
            if out:
                await raw.send_all(sender.seal(out))
            if agreed is not None:
                return agreed.unconsumed + b"".join(pending[index + 1 :])
        pending = receiver.receive_data(await _receive(raw, "muxer negotiation"))


async def upgrade(
    raw: trio.abc.Stream,
    *,
    is_initiator: bool,
    identity: noise.IdentitySigner,
    static_private: bytes,
    remote_addr: str,
    expected_public_key: bytes | None = None,
    gate: Gate | None = None,
) -> Upgraded:
    """Secure and multiplex ``raw``; the caller owns the timeout and closing on error."""
    role = multistream.Role.DIALER if is_initiator else multistream.Role.LISTENER
    try:
        unconsumed = await _select_plain(raw, role, noise.PROTOCOL_ID)
    except NegotiationFailed:
        raise HandshakeFailed("peer does not speak /noise") from None
    handshake = noise.NoiseHandshake(
        noise.Role.INITIATOR if is_initiator else noise.Role.RESPONDER,
        identity,
        static_private,
        os.urandom(32),  # a fresh ephemeral key per connection
        expected_identity_key=expected_public_key,
    )
    completed = await _handshake(raw, handshake, unconsumed)
    if gate is not None:
        peer = SecuredPeer(
            completed.remote_identity_key,
            peer_id_of(completed.remote_identity_key),
            remote_addr,
            is_initiator,
        )
        if not await gate(peer):
            raise ConnectionRefused(f"gate refused {peer.peer_id} at {remote_addr}")
    rest = await _select_secured(raw, completed, role)
    return Upgraded(completed.remote_identity_key, completed.sender, completed.receiver, rest)
