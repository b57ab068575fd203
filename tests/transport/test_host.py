"""The trio driver over real loopback sockets: streams, flow control, errors, gating."""

import logging
import os
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from colonymesh.node.identity import KeyPair
from colonymesh.node.transport import multistream, noise, yamux
from colonymesh.node.transport.config import TransportConfig
from colonymesh.node.transport.connection import Connection
from colonymesh.node.transport.errors import ConnectionRefused, NegotiationFailed, PeerMismatch
from colonymesh.node.transport.host import Host
from colonymesh.node.transport.stream import MuxedStream, StreamReset
from colonymesh.node.transport.upgrade import SecuredPeer, upgrade

A = KeyPair.from_seed(b"\x0a" * 32)
B = KeyPair.from_seed(b"\x0b" * 32)
C = KeyPair.from_seed(b"\x0c" * 32)
ECHO = "/test/echo/1.0.0"


async def echo(stream: MuxedStream) -> None:
    while data := await stream.receive_some():
        await stream.send_all(data)


@asynccontextmanager
async def two_hosts(**config: object) -> AsyncIterator[tuple[Host, Host, int]]:
    cfg = TransportConfig(**config)  # type: ignore[arg-type]
    async with Host.open(A, config=cfg) as client, Host.open(B, config=cfg) as server:
        server.set_stream_handler(ECHO, echo)
        addrs = await server.listen("127.0.0.1", 0)
        yield client, server, int(addrs[0].rsplit("/", 1)[1])


async def test_echo_identify_and_ping() -> None:
    async with two_hosts() as (client, server, port):
        connection = await client.dial("127.0.0.1", port, expected_public_key=B.public_key)
        assert connection.remote_peer_id == B.peer_id
        stream = await connection.open_stream(["/nope/1.0.0", ECHO])
        assert stream.protocol == ECHO
        await stream.send_all(b"hello")
        assert await stream.receive_exactly(5) == b"hello"
        await stream.send_eof()
        assert await stream.receive_some() == b""
        info = await client.identify(connection)
        assert info.public_key == B.public_key
        assert ECHO in info.protocols and "/ipfs/ping/1.0.0" in info.protocols
        assert info.listen_addrs == tuple(server.listen_addrs)
        assert 0 < await client.ping(connection) < 1
        assert 0 < await connection.ping() < 1
        inbound = server.connections_to(A.peer_id)
        assert len(inbound) == 1 and inbound[0].remote_public_key == A.public_key


async def test_unknown_protocol_fails_negotiation_and_connection_survives() -> None:
    async with two_hosts() as (client, _server, port):
        connection = await client.dial("127.0.0.1", port)
        with pytest.raises(NegotiationFailed):
            await connection.open_stream(["/missing/1.0.0"])
        stream = await connection.open_stream([ECHO])
        await stream.send_all(b"ok")
        assert await stream.receive_exactly(2) == b"ok"


async def test_dialling_the_wrong_key_is_peer_mismatch() -> None:
    async with two_hosts() as (client, _server, port):
        with pytest.raises(PeerMismatch):
            await client.dial("127.0.0.1", port, expected_public_key=C.public_key)
        assert client.connections == []
        assert (
            await client.dial_addr(f"/ip4/127.0.0.1/tcp/{port}/p2p/{B.peer_id}")
        ).remote_peer_id == B.peer_id


async def test_many_concurrent_streams() -> None:
    async with two_hosts() as (client, _server, port):
        connection = await client.dial("127.0.0.1", port)
        results: dict[int, bytes] = {}

        async def one(index: int) -> None:
            stream = await connection.open_stream([ECHO])
            payload = os.urandom(1000 + index * 997)
            await stream.send_all(payload)
            await stream.send_eof()
            results[index] = await stream.receive_until_eof(1 << 20)
            assert results[index] == payload

        async with trio.open_nursery() as nursery:
            for index in range(60):
                nursery.start_soon(one, index)
        assert len(results) == 60


async def test_slow_reader_blocks_writer_without_loss_or_reset() -> None:
    window = yamux.INITIAL_WINDOW_BYTES
    release = trio.Event()
    received = bytearray()
    done = trio.Event()

    async def slow_sink(stream: MuxedStream) -> None:
        await release.wait()
        while data := await stream.receive_some(7000):
            received.extend(data)
            await trio.sleep(0)
        done.set()

    payload = os.urandom(12 * window)
    async with two_hosts(yamux=yamux.YamuxConfig(stream_window_bytes=window)) as (
        client,
        server,
        port,
    ):
        server.set_stream_handler("/sink/1", slow_sink)
        connection = await client.dial("127.0.0.1", port)
        stream = await connection.open_stream(["/sink/1"])
        sent = trio.Event()

        async def send() -> None:
            await stream.send_all(payload)
            await stream.send_eof()
            sent.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            await trio.sleep(0.3)
            assert not sent.is_set()  # parked on the window, not failed
            assert connection.mux.send_window(stream.stream_id) == 0
            release.set()
            with trio.fail_after(10):
                await done.wait()
        assert bytes(received) == payload


async def test_handler_error_resets_only_that_stream() -> None:
    async def broken(stream: MuxedStream) -> None:
        await stream.receive_some()
        raise ValueError("handler bug")

    async with two_hosts() as (client, server, port):
        server.set_stream_handler("/broken/1", broken)
        connection = await client.dial("127.0.0.1", port)
        stream = await connection.open_stream(["/broken/1"])
        await stream.send_all(b"x")
        with pytest.raises(StreamReset):
            await stream.receive_some()
        again = await connection.open_stream([ECHO])
        await again.send_all(b"still fine")
        assert await again.receive_exactly(10) == b"still fine"


async def test_cancelled_send_does_not_corrupt_the_connection() -> None:
    async with two_hosts() as (client, _server, port):
        connection = await client.dial("127.0.0.1", port)
        big = await connection.open_stream([ECHO])
        with trio.move_on_after(0.01):
            await big.send_all(b"z" * 20_000_000)  # echo fills both windows, then parks
        await big.reset()
        stream = await connection.open_stream([ECHO])
        await stream.send_all(b"after")
        assert await stream.receive_exactly(5) == b"after"


async def test_closing_the_connection_resets_blocked_streams() -> None:
    async with two_hosts() as (client, _server, port):
        connection = await client.dial("127.0.0.1", port)
        stream = await connection.open_stream([ECHO])

        async def close_soon() -> None:
            await trio.sleep(0.05)
            await connection.aclose()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(close_soon)
            with pytest.raises(StreamReset):
                await stream.receive_some()
        assert connection.is_closed
        with pytest.raises(trio.BrokenResourceError):
            await stream.send_all(b"x")


async def test_gate_sees_the_proven_key_and_can_refuse() -> None:
    seen: list[SecuredPeer] = []

    async def only_a(peer: SecuredPeer) -> bool:
        seen.append(peer)
        return peer.public_key == A.public_key

    async with Host.open(B, gate=only_a) as server, Host.open(A) as a, Host.open(C) as c:
        port = int((await server.listen())[0].rsplit("/", 1)[1])
        assert (await a.dial("127.0.0.1", port)).remote_peer_id == B.peer_id
        with pytest.raises((trio.BrokenResourceError, noise.HandshakeFailed, OSError)):
            await c.dial("127.0.0.1", port)
        await trio.sleep(0.05)
        assert [p.public_key for p in seen] == [A.public_key, C.public_key]
        assert not seen[0].is_initiator
        assert server.stats.refused_by_gate == 1 and server.stats.accepted == 1

        async def refuse_all(peer: SecuredPeer) -> bool:
            return False

    async with Host.open(C, gate=refuse_all) as dialler, Host.open(B) as target:
        port = int((await target.listen())[0].rsplit("/", 1)[1])
        with pytest.raises(ConnectionRefused):
            await dialler.dial("127.0.0.1", port)
        assert dialler.stats.refused_by_gate == 1


async def _raw_send(port: int, data: bytes, *, then_wait: bool = False) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    try:
        await stream.send_all(data)
        if not then_wait:
            return b""
        answer = b""
        with trio.move_on_after(2):
            while chunk := await stream.receive_some():
                answer += chunk
        return answer
    finally:
        await stream.aclose()


async def test_garbage_and_truncated_handshakes_do_not_stop_the_listener(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="colonymesh.node.transport")
    noise_offer = multistream.encode_message(multistream.HEADER) + multistream.encode_message(
        "/noise"
    )
    first = noise.NoiseHandshake(
        noise.Role.INITIATOR, C, os.urandom(32), os.urandom(32)
    ).data_to_send()
    async with two_hosts(upgrade_timeout_s=1.0) as (client, server, port):
        await _raw_send(port, random.Random(5).randbytes(5000), then_wait=True)  # random bytes
        await _raw_send(port, b"\x13/multistream/1.0.0\n\x07/noi")  # truncated negotiation
        await _raw_send(port, noise_offer + first[:20])  # truncated handshake, then EOF
        await _raw_send(port, noise_offer + b"\x00\x05hello", then_wait=True)  # short e
        await _raw_send(port, noise_offer + b"\xff\xff" + os.urandom(70000), then_wait=True)
        # and a silent one, kept open, that the 1 s upgrade timeout must cut (waited
        # for: on a loaded machine the timer may fire late, but it must fire)
        silent = await trio.open_tcp_stream("127.0.0.1", port)
        await silent.send_all(noise_offer)
        with trio.fail_after(15):
            while not any("TooSlowError" in r.getMessage() for r in caplog.records):
                await trio.sleep(0.05)
        await silent.aclose()
        assert server.stats.failed_upgrades >= 5
        connection = await client.dial("127.0.0.1", port)  # still serving
        stream = await connection.open_stream([ECHO])
        await stream.send_all(b"alive")
        assert await stream.receive_exactly(5) == b"alive"
    messages = [r.getMessage() for r in caplog.records]
    assert any("FrameTooLarge" in m or "MalformedMessage" in m for m in messages)
    assert any("HandshakeFailed" in m for m in messages)
    assert any("TooSlowError: no upgrade within 1.0s" in m for m in messages)


async def test_garbage_after_the_handshake_closes_only_that_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="colonymesh.node.transport")
    async with two_hosts() as (client, server, port):
        good = await client.dial("127.0.0.1", port)
        raw = await trio.open_tcp_stream("127.0.0.1", port)
        upgraded = await upgrade(
            raw, is_initiator=True, identity=C, static_private=os.urandom(32), remote_addr="test"
        )
        bad_frame = yamux.encode_header(yamux.FrameType.DATA, yamux.FLAG_SYN, 2, 0)  # wrong parity
        await raw.send_all(upgraded.sender.seal(bad_frame))
        leftover = b""
        with trio.move_on_after(2):
            while chunk := await raw.receive_some():
                leftover += chunk
        plaintext = b"".join(upgraded.receiver.receive_data(leftover))
        go_away = yamux.encode_header(
            yamux.FrameType.GO_AWAY, 0, 0, yamux.GoAwayCode.PROTOCOL_ERROR
        )
        assert go_away in plaintext  # told why, then closed
        await raw.aclose()
        stream = await good.open_stream([ECHO])
        await stream.send_all(b"fine")
        assert await stream.receive_exactly(4) == b"fine"
        assert len(server.connections) == 1
    assert any(
        r.levelno == logging.WARNING and "RemoteProtocolError" in r.getMessage()
        for r in caplog.records
    )


async def test_dial_times_out_on_a_silent_listener() -> None:
    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    config = TransportConfig(upgrade_timeout_s=0.3)
    async with Host.open(A, config=config) as client, trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, silent, 0)
        port = listeners[0].socket.getsockname()[1]
        with trio.fail_after(5), pytest.raises(trio.TooSlowError):
            await client.dial("127.0.0.1", port)
        assert client.stats.failed_upgrades == 1 and client.connections == []
        nursery.cancel_scope.cancel()


async def test_stream_filter_offers_protocols_per_connection() -> None:
    admitted: set[str] = set()

    def only_basics_until_admitted(connection: Connection, protocol: str) -> bool:
        return connection.remote_peer_id in admitted or protocol.startswith("/ipfs/")

    async with (
        Host.open(B, stream_filter=only_basics_until_admitted) as server,
        Host.open(A) as client,
    ):
        server.set_stream_handler(ECHO, echo)
        port = int((await server.listen())[0].rsplit("/", 1)[1])
        connection = await client.dial("127.0.0.1", port)
        assert await client.ping(connection) > 0  # libp2p basics are open to strangers
        with pytest.raises(NegotiationFailed):
            await connection.open_stream([ECHO])
        info = await client.identify(connection)
        assert ECHO not in info.protocols  # not even advertised yet
        admitted.add(A.peer_id)
        stream = await connection.open_stream([ECHO])
        await stream.send_all(b"in")
        assert await stream.receive_exactly(2) == b"in"


async def test_no_nagle_on_either_side() -> None:
    import socket

    async with two_hosts() as (client, server, port):
        connection = await client.dial("127.0.0.1", port)
        await trio.sleep(0.05)
        for conn in [connection, *server.connections]:
            assert conn._raw.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


async def test_connection_cap_refuses_extra_inbound_connections() -> None:
    async with two_hosts(connections_max=1) as (client, server, port):
        first = await client.dial("127.0.0.1", port)
        with pytest.raises((trio.BrokenResourceError, noise.HandshakeFailed, OSError)):
            await client.dial("127.0.0.1", port)
        assert server.stats.over_capacity == 1
        stream = await first.open_stream([ECHO])  # the admitted one is unaffected
        await stream.send_all(b"ok")
        assert await stream.receive_exactly(2) == b"ok"
