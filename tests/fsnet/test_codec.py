"""The chunk-exchange codec and frames: strict, total, capped (hypothesis-fuzzed)."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from colonymesh.fs.cid import CODEC_DAG_PB, CODEC_RAW, Cid
from colonymesh.fs.exchange import messages
from colonymesh.fs.exchange.messages import (
    BLOCK_DATA_BYTES_MAX,
    CIDS_PER_MESSAGE_MAX,
    BlockMessage,
    Cancel,
    DontHave,
    ExchangeDecodeError,
    Haves,
    WantBlocks,
    WantHaves,
)
from colonymesh.node.errors import WireError
from colonymesh.node.fsnet.frames import FrameReader, frame_prefix, parse_prefix

cids = st.builds(
    lambda codec, data: Cid.of(codec, data),
    st.sampled_from([CODEC_RAW, CODEC_DAG_PB]),
    st.binary(max_size=16),
)
cid_lists = st.lists(cids, max_size=20).map(tuple)
list_messages = st.one_of(
    *(st.builds(cls, cid_lists) for cls in (WantBlocks, Cancel, DontHave, WantHaves, Haves))
)
any_message = st.one_of(list_messages, st.builds(BlockMessage, cids, st.binary(max_size=4096)))


@given(any_message)
def test_round_trip(message: messages.Message) -> None:
    data = messages.encode(message)
    assert messages.decode(data) == message
    if isinstance(message, BlockMessage):
        assert messages.block_header(message.cid) + message.data == data


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_decode_is_total(data: bytes) -> None:
    try:
        decoded = messages.decode(data)
    except ExchangeDecodeError:
        return
    assert messages.encode(decoded) == data  # one spelling per message


@settings(max_examples=300)
@given(any_message, st.data())
def test_mutations_decode_or_fail_cleanly(message: messages.Message, data: st.DataObject) -> None:
    raw = bytearray(messages.encode(message))
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    for candidate in (bytes(raw), bytes(raw[:cut])):
        try:
            decoded = messages.decode(candidate)
        except ExchangeDecodeError:
            continue
        assert messages.encode(decoded) == candidate


def test_caps() -> None:
    one = Cid.of(CODEC_RAW, b"x")
    with pytest.raises(ExchangeDecodeError):
        messages.encode(WantBlocks((one,) * (CIDS_PER_MESSAGE_MAX + 1)))
    with pytest.raises(ExchangeDecodeError):
        messages.encode(BlockMessage(one, bytes(BLOCK_DATA_BYTES_MAX + 1)))
    big = messages.block_header(one) + bytes(BLOCK_DATA_BYTES_MAX + 1)
    with pytest.raises(ExchangeDecodeError):
        messages.decode(big)
    # A count announcing more CIDs than allowed fails before any is parsed.
    with pytest.raises(ExchangeDecodeError, match="exceed"):
        messages.decode(bytes((messages.T_WANT_BLOCKS,)) + b"\x81\x10")
    with pytest.raises(ExchangeDecodeError):
        messages.decode(b"\x09")
    with pytest.raises(ExchangeDecodeError):
        messages.decode(b"")
    assert messages.decode(messages.encode(BlockMessage(one, b""))) == BlockMessage(one, b"")


@settings(max_examples=500)
@given(st.binary(max_size=12))
def test_frame_prefix_parser_is_total(data: bytes) -> None:
    try:
        parsed = parse_prefix(data, 1 << 20)
    except WireError:
        return
    if parsed is not None:
        length, head = parsed
        assert length <= 1 << 20
        assert frame_prefix(length) == data[:head]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.binary(max_size=3000), max_size=8), st.lists(st.integers(1, 700), min_size=1))
def test_frame_reader_reassembles_any_split(payloads: list[bytes], cuts: list[int]) -> None:
    wire = b"".join(frame_prefix(len(p)) + p for p in payloads)

    async def main() -> list[bytes]:
        send, receive = trio.testing.memory_stream_pair()
        out: list[bytes] = []
        async with trio.open_nursery() as nursery:

            async def writer() -> None:
                position, index = 0, 0
                while position < len(wire):
                    step = cuts[index % len(cuts)]
                    await send.send_all(wire[position : position + step])
                    position += step
                    index += 1
                await send.aclose()

            nursery.start_soon(writer)
            reader = FrameReader(receive)
            while (frame := await reader.read()) is not None:
                out.append(frame)
        return out

    assert trio.run(main) == payloads


async def test_frame_reader_refuses_oversize_and_truncation() -> None:
    send, receive = trio.testing.memory_stream_pair()
    await send.send_all(b"\xff\xff\xff\x7f")
    with pytest.raises(WireError):
        await FrameReader(receive, 1000).read()
    send, receive = trio.testing.memory_stream_pair()
    await send.send_all(frame_prefix(10) + b"abc")
    await send.aclose()
    with pytest.raises(WireError):
        await FrameReader(receive).read()
