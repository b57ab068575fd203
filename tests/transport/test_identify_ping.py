"""identify and ping cores; and that every core stays free of I/O."""

import ast
import contextlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from colonymesh.node.identity import KeyPair
from colonymesh.node.transport import identify, ping
from colonymesh.node.transport.errors import MalformedMessage, RemoteProtocolError

KEY = KeyPair.from_seed(b"\x07" * 32).public_key
INFO = identify.IdentifyInfo(
    public_key=KEY,
    listen_addrs=("/ip4/127.0.0.1/tcp/4001",),
    protocols=("/ipfs/id/1.0.0", "/ipfs/ping/1.0.0"),
    observed_addr="/ip4/10.0.0.2/tcp/5555",
    protocol_version="ipfs/0.1.0",
    agent_version="colonymesh/test",
)


def test_identify_round_trip() -> None:
    assert identify.decode_identify(identify.encode_identify(INFO), expected_public_key=KEY) == INFO


def test_identify_rejects_other_key_and_bad_prefix() -> None:
    encoded = identify.encode_identify(INFO)
    with pytest.raises(RemoteProtocolError):
        identify.decode_identify(encoded, expected_public_key=b"\x01" * 32)
    with pytest.raises(MalformedMessage):
        identify.decode_identify(encoded + b"x")
    with pytest.raises(MalformedMessage):
        identify.decode_identify(encoded[:-1])


def test_identify_drops_unparseable_addresses() -> None:
    from colonymesh.node.transport import protobuf
    from colonymesh.node.transport.varint import length_prefixed

    body = protobuf.encode_message(
        [(2, b"\xff\xff\x03junk"), (2, bytes.fromhex("047f000001060fa1"))]
    )
    info = identify.decode_identify(length_prefixed(body))
    assert info.listen_addrs == ("/ip4/127.0.0.1/tcp/4001",)


@given(st.binary(max_size=300))
def test_identify_fuzz_only_typed_errors(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        identify.decode_identify(data)


def test_ping_echo_and_check() -> None:
    echo = ping.PingEcho()
    payload = bytes(range(32))
    assert echo.receive_data(payload[:10]) == b""
    assert not echo.ended_cleanly
    assert echo.receive_data(payload[10:] + payload[:5]) == payload
    assert echo.receive_data(payload[5:]) == payload
    assert echo.ended_cleanly
    ping.check_pong(payload, payload)
    with pytest.raises(RemoteProtocolError):
        ping.check_pong(payload, payload[::-1])


CORES = [
    "varint",
    "protobuf",
    "multiaddr",
    "multistream",
    "noise",
    "yamux",
    "identify",
    "ping",
    "errors",
]
FORBIDDEN = {
    "trio",
    "socket",
    "time",
    "random",
    "os",
    "threading",
    "asyncio",
    "select",
    "selectors",
}


@pytest.mark.parametrize("name", CORES)
def test_cores_import_no_io(name: str) -> None:
    import colonymesh.node.transport as package

    source = (Path(package.__file__).parent / f"{name}.py").read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots = {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots = {(node.module or "").split(".")[0]}
        else:
            continue
        assert not roots & FORBIDDEN, f"{name}.py imports {roots & FORBIDDEN}"
