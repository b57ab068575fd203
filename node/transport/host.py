"""The transport host: listeners, dials, connections and the stream-protocol registry.

Owns every connection of one identity, in one nursery: TCP listeners whose
accept loops survive any peer's misbehaviour, dials with timeouts, the
upgrade of each connection (Noise, then the gate, then yamux), the handler
registry consulted for every inbound stream, and the two libp2p services
served by default — identify and ping.

Usage::

    async with Host.open(keys) as host:
        host.set_stream_handler("/echo/1.0.0", echo)
        addrs = await host.listen("127.0.0.1", 0)
        connection = await host.dial("127.0.0.1", port)
        stream = await connection.open_stream(["/echo/1.0.0"])
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

from colonymesh.node.identity import KeyPair, Signer, public_key_from_peer_id
from colonymesh.node.transport import identify, multiaddr, ping
from colonymesh.node.transport.config import TransportConfig
from colonymesh.node.transport.connection import Connection, StreamHandler
from colonymesh.node.transport.errors import ConnectionRefused, LocalProtocolError, TransportError
from colonymesh.node.transport.stream import MuxedStream
from colonymesh.node.transport.upgrade import Gate, upgrade

StreamFilter = Callable[[Connection, str], bool]

log = logging.getLogger("colonymesh.node.transport")

_ACCEPT_RETRY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
_UPGRADE_ERRORS = (
    TransportError,
    trio.TooSlowError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    OSError,
)


@dataclass(slots=True)
class HostStatistics:
    dialled: int = 0
    accepted: int = 0
    refused_by_gate: int = 0
    failed_upgrades: int = 0
    over_capacity: int = 0


def _peer_addr(raw: trio.SocketStream) -> str:
    try:
        host, port = raw.socket.getpeername()[:2]
        return multiaddr.tcp_address(host, port)
    except (OSError, ValueError):
        return "/unknown"


def _local_addr(raw: trio.SocketStream) -> str:
    try:
        host, port = raw.socket.getsockname()[:2]
        return multiaddr.tcp_address(host, port)
    except (OSError, ValueError):
        return "/unknown"


class Host:
    """Listens, dials and serves stream protocols for one identity."""

    def __init__(
        self,
        keys: KeyPair,
        nursery: trio.Nursery,
        *,
        config: TransportConfig | None = None,
        gate: Gate | None = None,
        stream_filter: StreamFilter | None = None,
    ) -> None:
        self.keys = keys
        self.public_key = keys.public_key
        self.peer_id = keys.peer_id
        self.config = config or TransportConfig()
        self._signer = Signer(keys)
        self._static_private = os.urandom(32)  # Noise static key of this process
        self._nursery = nursery
        self._gate = gate
        self._stream_filter = stream_filter
        self._handlers: dict[str, StreamHandler] = {}
        self._connections: dict[int, Connection] = {}
        self._listeners: list[trio.SocketListener] = []
        self.listen_addrs: list[str] = []
        self._handshakes = trio.Semaphore(self.config.handshakes_max)
        self.stats = HostStatistics()
        self.set_stream_handler(identify.PROTOCOL_ID, self._serve_identify)
        self.set_stream_handler(ping.PROTOCOL_ID, _serve_ping)

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        keys: KeyPair,
        *,
        config: TransportConfig | None = None,
        gate: Gate | None = None,
        stream_filter: StreamFilter | None = None,
    ) -> AsyncIterator[Host]:
        """A host whose connections, listeners and handlers all end with the block.

        ``gate`` decides right after each Noise handshake (the remote's key is
        proven) whether the connection may continue. ``stream_filter`` decides,
        per connection and protocol, which of our protocols the remote may open
        now (the rest are answered ``na``), e.g. only identify, ping and the
        certificate exchange until the remote presented its certificate.
        """
        async with trio.open_nursery() as nursery:
            host = cls(keys, nursery, config=config, gate=gate, stream_filter=stream_filter)
            try:
                yield host
            finally:
                await host.aclose()
                nursery.cancel_scope.cancel()

    async def aclose(self) -> None:
        for listener in self._listeners:
            await listener.aclose()
        self._listeners.clear()
        with trio.CancelScope(shield=True):
            for connection in list(self._connections.values()):
                await connection.aclose()

    # --- protocols ------------------------------------------------------------

    def set_stream_handler(self, protocol: str, handler: StreamHandler) -> None:
        if not protocol.startswith("/") or "\n" in protocol:
            raise LocalProtocolError(f"bad protocol id {protocol!r}")
        self._handlers[protocol] = handler

    def remove_stream_handler(self, protocol: str) -> None:
        self._handlers.pop(protocol, None)

    @property
    def protocols(self) -> list[str]:
        return list(self._handlers)

    def protocols_for(self, connection: Connection) -> list[str]:
        """The protocols ``connection``'s remote may open now (the stream filter's say)."""
        if self._stream_filter is None:
            return list(self._handlers)
        return [p for p in self._handlers if self._stream_filter(connection, p)]

    def _handler_for(self, protocol: str) -> StreamHandler | None:
        return self._handlers.get(protocol)

    @property
    def connections(self) -> list[Connection]:
        return [c for c in self._connections.values() if not c.is_closed]

    def connections_to(self, peer_id: str) -> list[Connection]:
        return [c for c in self.connections if c.remote_peer_id == peer_id]

    # --- listening ----------------------------------------------------------

    async def listen(self, host: str = "127.0.0.1", port: int = 0) -> list[str]:
        """Start accepting on ``host:port``; the multiaddrs now listened on."""
        listeners = await trio.open_tcp_listeners(port, host=host)
        added: list[str] = []
        for listener in listeners:
            self._listeners.append(listener)
            bound_host, bound_port = listener.socket.getsockname()[:2]
            added.append(multiaddr.tcp_address(bound_host, bound_port))
            self._nursery.start_soon(self._accept_loop, listener)
        self.listen_addrs.extend(added)
        return added

    async def _accept_loop(self, listener: trio.SocketListener) -> None:
        while True:
            await self._handshakes.acquire()
            try:
                raw = await listener.accept()
            except OSError as error:
                self._handshakes.release()
                if error.errno in _ACCEPT_RETRY_ERRNOS:
                    log.warning("accept failed (%s); retrying shortly", error)
                    await trio.sleep(0.1)
                    continue
                raise
            except trio.ClosedResourceError:
                self._handshakes.release()
                return
            self._nursery.start_soon(self._serve_inbound, raw)

    async def _serve_inbound(self, raw: trio.SocketStream) -> None:
        remote_addr = _peer_addr(raw)
        try:
            if len(self._connections) >= self.config.connections_max:
                self.stats.over_capacity += 1
                log.warning(
                    "refusing %s: %d connections already", remote_addr, len(self._connections)
                )
                await raw.aclose()
                return
            connection, unconsumed = await self._upgrade(raw, remote_addr, is_initiator=False)
        except _UPGRADE_ERRORS as error:
            self._count_failure(error)
            level = logging.INFO if isinstance(error, ConnectionRefused) else logging.WARNING
            log.log(
                level,
                "inbound connection from %s dropped: %s: %s",
                remote_addr,
                type(error).__name__,
                str(error) or f"no upgrade within {self.config.upgrade_timeout_s}s",
            )
            await raw.aclose()
            return
        finally:
            self._handshakes.release()
        self.stats.accepted += 1
        await self._run(connection, unconsumed)

    def _count_failure(self, error: BaseException) -> None:
        if isinstance(error, ConnectionRefused):
            self.stats.refused_by_gate += 1
        else:
            self.stats.failed_upgrades += 1

    async def _upgrade(
        self,
        raw: trio.SocketStream,
        remote_addr: str,
        *,
        is_initiator: bool,
        expected_public_key: bytes | None = None,
    ) -> tuple[Connection, bytes]:
        with trio.fail_after(self.config.upgrade_timeout_s):
            upgraded = await upgrade(
                raw,
                is_initiator=is_initiator,
                identity=self._signer,
                static_private=self._static_private,
                remote_addr=remote_addr,
                expected_public_key=expected_public_key,
                gate=self._gate,
            )

        def offered() -> list[str]:
            return self.protocols_for(connection)

        connection = Connection(
            raw,
            sender=upgraded.sender,
            receiver=upgraded.receiver,
            remote_public_key=upgraded.remote_public_key,
            is_initiator=is_initiator,
            config=self.config,
            protocols=offered,
            handler_for=self._handler_for,
            remote_addr=remote_addr,
            local_addr=_local_addr(raw),
        )
        return connection, upgraded.unconsumed_plaintext

    async def _run(
        self,
        connection: Connection,
        unconsumed: bytes,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        key = id(connection)
        self._connections[key] = connection
        try:
            await connection.run(unconsumed, task_status=task_status)
        finally:
            del self._connections[key]

    # --- dialling -------------------------------------------------------------

    async def dial(
        self, host: str, port: int, *, expected_public_key: bytes | None = None
    ) -> Connection:
        """Connect, secure and multiplex; ``PeerMismatch`` if another key answers."""
        with trio.fail_after(self.config.dial_timeout_s):
            raw = await trio.open_tcp_stream(host, port)
        remote_addr = _peer_addr(raw)
        try:
            connection, unconsumed = await self._upgrade(
                raw, remote_addr, is_initiator=True, expected_public_key=expected_public_key
            )
        except BaseException as error:
            if isinstance(error, _UPGRADE_ERRORS):
                self._count_failure(error)
            with trio.CancelScope(shield=True):
                await raw.aclose()
            raise
        self.stats.dialled += 1
        await self._nursery.start(self._run, connection, unconsumed)
        return connection

    async def dial_addr(self, address: str) -> Connection:
        """Dial a multiaddr ``/ip4/H/tcp/P[/p2p/ID]``; with a peer id, only that key is accepted."""
        host, port, peer = multiaddr.parse_tcp_address(address)
        expected = public_key_from_peer_id(peer) if peer is not None else None
        return await self.dial(host, port, expected_public_key=expected)

    # --- identify and ping ------------------------------------------------------

    def _identify_info(self, connection: Connection) -> identify.IdentifyInfo:
        return identify.IdentifyInfo(
            public_key=self.public_key,
            listen_addrs=tuple(self.listen_addrs),
            protocols=tuple(self.protocols_for(connection)),
            observed_addr=connection.remote_addr if connection.remote_addr != "/unknown" else None,
            protocol_version=identify.PROTOCOL_VERSION,
            agent_version=self.config.agent_version,
        )

    async def _serve_identify(self, stream: MuxedStream) -> None:
        await stream.send_all(identify.encode_identify(self._identify_info(stream.connection)))
        await stream.send_eof()

    async def identify(
        self, connection: Connection, timeout_s: float = 10.0
    ) -> identify.IdentifyInfo:
        """Ask the peer who it is; its key must be the one Noise proved."""
        with trio.fail_after(timeout_s):
            stream = await connection.open_stream([identify.PROTOCOL_ID])
            try:
                data = await stream.receive_until_eof(identify.MESSAGE_BYTES_MAX + 10)
            finally:
                await stream.aclose()
        return identify.decode_identify(data, expected_public_key=connection.remote_public_key)

    async def ping(self, connection: Connection, timeout_s: float = 10.0) -> float:
        """One libp2p ping; the round-trip time in seconds."""
        payload = os.urandom(ping.PING_BYTES)
        with trio.fail_after(timeout_s):
            stream = await connection.open_stream([ping.PROTOCOL_ID])
            try:
                started = trio.current_time()
                await stream.send_all(payload)
                answer = await stream.receive_exactly(ping.PING_BYTES)
                rtt = trio.current_time() - started
            finally:
                await stream.aclose()
        ping.check_pong(payload, answer)
        return rtt


async def _serve_ping(stream: MuxedStream) -> None:
    echo = ping.PingEcho()
    while True:
        data = await stream.receive_some(4 * ping.PING_BYTES)
        if not data:
            return
        whole = echo.receive_data(data)
        if whole:
            await stream.send_all(whole)


__all__: Sequence[str] = ["Host", "HostStatistics", "StreamFilter"]
