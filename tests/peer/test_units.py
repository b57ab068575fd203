"""Pure pieces of the peer driver: frame decoding, back-off, address book, node.toml, control."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from colonymesh.node.config import load_config, parse_config
from colonymesh.node.control import ControlError, ControlServer, call
from colonymesh.node.errors import FrameTooLarge, InputError, MalformedFrame
from colonymesh.node.identity import KeyPair
from colonymesh.node.peer.connections import AddressBook, Backoff, ConnectionsConfig
from colonymesh.node.peer.framing import encode_frame, split_frame

CAP = 1000


@given(st.lists(st.binary(max_size=CAP), max_size=5), st.integers(1, 50))
def test_frames_split_back_whatever_the_chunking(payloads: list[bytes], step: int) -> None:
    stream = b"".join(encode_frame(p, CAP) for p in payloads)
    got: list[bytes] = []
    buffer = b""
    for offset in range(0, len(stream), step):
        buffer += stream[offset : offset + step]
        while (split := split_frame(buffer, CAP)) is not None:
            frame, buffer = split
            got.append(frame)
    assert got == payloads and buffer == b""


@given(st.binary(max_size=64))
def test_junk_gives_a_typed_error_or_waits(data: bytes) -> None:
    try:
        result = split_frame(data, CAP)
    except (FrameTooLarge, MalformedFrame):
        return
    if result is not None:
        frame, rest = result
        assert len(frame) <= CAP and data.endswith(frame + rest)


def test_frame_caps() -> None:
    with pytest.raises(FrameTooLarge):
        encode_frame(b"x" * (CAP + 1), CAP)
    with pytest.raises(FrameTooLarge):  # refused on the prefix, before any body arrives
        split_frame(b"\xe9\x07", CAP)  # 1001
    with pytest.raises(MalformedFrame):
        split_frame(b"\x80\x00", CAP)  # non-minimal varint
    assert split_frame(b"\x05abc", CAP) is None


def test_backoff_doubles_with_jitter_caps_and_resets() -> None:
    config = ConnectionsConfig(backoff_initial_s=1.0, backoff_max_s=8.0, backoff_jitter=0.2)
    backoff = Backoff(config, random.Random(7))
    delays = [backoff.failed("p", 100.0) - 100.0 for _ in range(6)]
    for delay, base in zip(delays, [1, 2, 4, 8, 8, 8], strict=True):
        assert base * 0.8 <= delay <= base * 1.2
    assert len({round(d, 6) for d in delays[3:]}) > 1  # jittered, not lock-step
    assert backoff.failures("p") == 6
    backoff.succeeded("p")
    assert backoff.ready_at("p") == float("-inf") and backoff.failures("p") == 0
    same = Backoff(config, random.Random(7))
    assert [same.failed("p", 100.0) - 100.0 for _ in range(6)] == delays  # seeded: replayable


def test_address_book_is_bounded_and_newest_first() -> None:
    book = AddressBook(per_peer_max=2, peers_max=2)
    peer = KeyPair.generate().peer_id
    for port in (1, 2, 3):
        book.add(peer, f"/ip4/10.0.0.1/tcp/{port}")
    assert book.addresses(peer) == ["/ip4/10.0.0.1/tcp/3", "/ip4/10.0.0.1/tcp/2"]
    book.add(peer, "/ip4/0.0.0.0/tcp/5")  # wildcard: not dialable
    book.add(peer, "/ip4/10.0.0.1/tcp/9/p2p/" + KeyPair.generate().peer_id)  # someone else's
    book.add(peer, "not a multiaddr")
    assert len(book.addresses(peer)) == 2
    others = [KeyPair.generate().peer_id for _ in range(2)]
    for other in others:
        book.add(other, "/ip4/10.0.0.2/tcp/1")
    assert book.addresses(peer) == [] and len(book) == 2


def _parse(text: str) -> Any:
    return parse_config(Path("/etc/colonymesh/node.toml"), text)


def test_config_defaults_and_relative_paths() -> None:
    config = _parse('[node]\nkey = "k.key"\ncolony = "/srv/colony"\n')
    assert config.key == Path("/etc/colonymesh/k.key")
    assert config.colony == Path("/srv/colony")
    assert config.certificate is None and config.bootstrap == ()
    assert config.state_dir == Path("/etc/colonymesh/state")
    assert config.control_address == "ipc:///etc/colonymesh/state/control.sock"
    assert config.gating.allow_strangers_identify_ping is False
    assert config.gating.strangers_grace_s == 5.0
    assert (config.log_level, config.log_format) == ("info", "text")


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[node]\ncolony = "c"\n', "[node] key: required"),
        ('[node]\nkey = "k"\n', "[node] colony: required"),
        ('[node]\nkey = "k"\ncolony = "c"\nlisten = "x"\n', "[node] listen: expected a list"),
        ('[node]\nkey = "k"\ncolony = "c"\nbootstrap = ["/dns4/x"]\n', "[node] bootstrap:"),
        ('[node]\nkey = "k"\ncolony = "c"\nlisen = []\n', "[node] lisen: unknown key"),
        ('[node]\nkey = "k"\ncolony = "c"\n[log]\nformat = "xml"\n', "[log] format: expected one"),
        (
            '[node]\nkey = "k"\ncolony = "c"\n[gating]\npresentation_timeout_s = -1\n',
            "[gating] presentation_timeout_s: must be positive",
        ),
        (
            '[node]\nkey = "k"\ncolony = "c"\n[gating]\nallow_strangers_identify_ping = 1\n',
            "[gating] allow_strangers_identify_ping: expected bool",
        ),
        ('[nodes]\nkey = "k"\n', "unknown section [nodes]"),
        ("[node\n", "not valid TOML"),
    ],
)
def test_config_errors_name_the_file_and_key(text: str, named: str) -> None:
    with pytest.raises(InputError) as caught:
        _parse(text)
    assert str(caught.value).startswith("/etc/colonymesh/node.toml: ")
    assert named in str(caught.value)


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such config file"):
        load_config(tmp_path / "node.toml")


async def test_control_channel_round_trip_and_cleanup(tmp_path: Path) -> None:
    address = f"ipc://{tmp_path / 'control.sock'}"

    async def echo(args: dict[str, Any]) -> dict[str, Any]:
        return {"echo": args}

    async def broken(args: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("bug")

    server = ControlServer(address, {"echo": echo, "broken": broken})
    results: list[Any] = []

    def client() -> None:
        results.append(call(address, "echo", {"x": 1}))
        for command in ("broken", "nope"):
            try:
                call(address, command)
            except ControlError as error:
                results.append(str(error))

    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        assert (tmp_path / "control.sock").exists()
        await trio.to_thread.run_sync(client)
        nursery.cancel_scope.cancel()
    assert results[0] == {"echo": {"x": 1}}
    assert "internal error: RuntimeError: bug" in results[1]
    assert "unknown command 'nope'" in results[2]
    assert not (tmp_path / "control.sock").exists()
    with pytest.raises(ControlError, match="no node is running"):
        call(address, "echo")
