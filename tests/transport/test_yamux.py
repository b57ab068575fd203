"""The yamux session core: streams, flow control, keepalive, GoAway, strict headers."""

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from colonymesh.node.transport import yamux
from colonymesh.node.transport.errors import (
    FrameTooLarge,
    LocalProtocolError,
    MalformedMessage,
    RemoteProtocolError,
    SessionClosed,
    StreamLimitReached,
)
from colonymesh.node.transport.yamux import (
    FLAG_ACK,
    FLAG_FIN,
    FLAG_RST,
    FLAG_SYN,
    DataReceived,
    FrameType,
    GoAwayReceived,
    PingAnswered,
    StreamEnded,
    StreamOpened,
    StreamWasReset,
    WindowIncreased,
    YamuxConfig,
    YamuxSession,
    encode_header,
)

WINDOW = yamux.INITIAL_WINDOW_BYTES


def sessions(**config: object) -> tuple[YamuxSession, YamuxSession]:
    cfg = YamuxConfig(**config)  # type: ignore[arg-type]
    return YamuxSession(is_client=True, now=0.0, config=cfg), YamuxSession(
        is_client=False, now=0.0, config=cfg
    )


def deliver(src: YamuxSession, dst: YamuxSession, now: float = 0.0) -> list[yamux.Event]:
    return dst.receive_data(src.data_to_send(), now)


def data_of(events: list[yamux.Event], stream_id: int) -> bytes:
    return b"".join(
        e.data for e in events if isinstance(e, DataReceived) and e.stream_id == stream_id
    )


def test_open_send_receive_and_half_close() -> None:
    client, server = sessions(stream_window_bytes=WINDOW)
    sid = client.open_stream()
    assert sid == 1 and client.open_stream() == 3
    client.send_data(sid, b"hello")
    events = deliver(client, server)
    assert events == [StreamOpened(1), StreamOpened(3), DataReceived(1, b"hello")]
    deliver(server, client)  # ACKs
    client.close_stream(sid)
    assert deliver(client, server) == [StreamEnded(1)]
    server.send_data(sid, b"reply")
    server.close_stream(sid)
    assert deliver(server, client) == [DataReceived(1, b"reply"), StreamEnded(1)]
    assert client.stream_count == 1  # stream 3 is still open; 1 is forgotten


def test_server_uses_even_ids() -> None:
    client, server = sessions()
    assert server.open_stream() == 2
    assert deliver(server, client) == [StreamOpened(2), WindowIncreased(2)]  # SYN carries credit


def test_writer_blocks_at_zero_window_and_resumes_on_consumption() -> None:
    client, server = sessions(stream_window_bytes=WINDOW)
    sid = client.open_stream()
    assert client.send_data(sid, b"x" * (WINDOW + 100)) == WINDOW
    assert client.send_data(sid, b"more") == 0  # blocked, not reset
    received = data_of(deliver(client, server), sid)
    assert len(received) == WINDOW
    assert deliver(server, client) == []  # the ACK, no credit yet
    server.consumed(sid, WINDOW // 2 - 1)
    assert not server.has_output  # below half the window: not worth a frame yet
    server.consumed(sid, 1)
    assert deliver(server, client) == [WindowIncreased(sid)]
    assert client.send_window(sid) == WINDOW // 2


def test_larger_window_is_announced_on_open() -> None:
    client, server = sessions(stream_window_bytes=4 * WINDOW)
    sid = client.open_stream()
    deliver(client, server)
    deliver(server, client)  # the ACK carries the extra credit
    assert client.send_window(sid) == 4 * WINDOW
    assert client.send_data(sid, b"y" * (5 * WINDOW)) == 4 * WINDOW
    assert len(data_of(deliver(client, server), sid)) == 4 * WINDOW


def test_window_overrun_is_a_protocol_error_with_go_away() -> None:
    client, server = sessions(stream_window_bytes=WINDOW)
    sid = client.open_stream()
    deliver(client, server)
    frame = encode_header(FrameType.DATA, 0, sid, WINDOW + 1)
    with pytest.raises(FrameTooLarge):
        server.receive_data(frame, 0.0)
    out = bytes(server.data_to_send())
    assert out.endswith(encode_header(FrameType.GO_AWAY, 0, 0, yamux.GoAwayCode.PROTOCOL_ERROR))


def test_cumulative_overrun_is_caught() -> None:
    client, server = sessions(stream_window_bytes=WINDOW)
    sid = client.open_stream()
    chunk = b"z" * (WINDOW // 2)
    wire = bytes(client.data_to_send())
    wire += encode_header(FrameType.DATA, 0, sid, len(chunk)) + chunk
    wire += encode_header(FrameType.DATA, 0, sid, len(chunk)) + chunk
    wire += encode_header(FrameType.DATA, 0, sid, 1) + b"!"
    with pytest.raises(RemoteProtocolError):
        server.receive_data(wire, 0.0)


def test_reset_both_ways() -> None:
    client, server = sessions()
    sid = client.open_stream()
    deliver(client, server)
    client.reset_stream(sid)
    assert deliver(client, server) == [StreamWasReset(sid)]
    with pytest.raises(LocalProtocolError):
        client.send_data(sid, b"x")
    assert server.stream_count == 0


def test_late_frames_for_closed_streams_are_ignored() -> None:
    client, server = sessions()
    sid = client.open_stream()
    deliver(client, server)
    server.reset_stream(sid)
    client.send_data(sid, b"in flight")  # sent before the RST arrived
    assert deliver(client, server) == []


def test_abandoned_stream_resets_on_more_data() -> None:
    client, server = sessions()
    sid = client.open_stream()
    deliver(client, server)
    deliver(server, client)  # the ACK
    server.abandon_stream(sid)
    assert deliver(server, client) == [StreamEnded(sid)]
    client.send_data(sid, b"unwanted")
    assert deliver(client, server) == []
    assert deliver(server, client) == [StreamWasReset(sid)]


def test_stream_cap_refuses_with_rst_not_error() -> None:
    client, server = sessions(streams_max=2)
    a, b = client.open_stream(), client.open_stream()
    with pytest.raises(StreamLimitReached):
        client.open_stream()
    deliver(client, server)
    extra = encode_header(FrameType.WINDOW_UPDATE, FLAG_SYN, 5, 0)
    assert server.receive_data(extra, 0.0) == []
    assert bytes(server.data_to_send()).endswith(
        encode_header(FrameType.WINDOW_UPDATE, FLAG_RST, 5, 0)
    )
    assert (a, b) == (1, 3)


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        (bytes([1]) + encode_header(FrameType.DATA, 0, 1, 0)[1:], MalformedMessage),  # version
        (bytes([0, 7]) + encode_header(FrameType.DATA, 0, 1, 0)[2:], MalformedMessage),  # type
        (encode_header(FrameType.DATA, 0x10, 1, 0), MalformedMessage),  # unknown flag
        (encode_header(FrameType.DATA, FLAG_SYN, 0, 0), MalformedMessage),  # stream 0
        (encode_header(FrameType.PING, FLAG_SYN, 3, 0), MalformedMessage),  # ping on a stream
        (encode_header(FrameType.WINDOW_UPDATE, FLAG_SYN | FLAG_ACK, 1, 0), MalformedMessage),
        (encode_header(FrameType.WINDOW_UPDATE, FLAG_SYN, 2, 0), RemoteProtocolError),  # our parity
        (encode_header(FrameType.WINDOW_UPDATE, 0, 9, 0), RemoteProtocolError),  # never opened
        (encode_header(FrameType.PING, FLAG_FIN, 0, 0), MalformedMessage),
    ],
)
def test_strict_header_validation(frame: bytes, error: type[Exception]) -> None:
    server = YamuxSession(is_client=False, now=0.0)
    with pytest.raises(error):
        server.receive_data(frame, 0.0)


def test_syn_reuse_and_window_overflow_are_errors() -> None:
    client, server = sessions()
    sid = client.open_stream()
    deliver(client, server)
    with pytest.raises(RemoteProtocolError):
        server.receive_data(encode_header(FrameType.WINDOW_UPDATE, FLAG_SYN, sid, 0), 0.0)
    client2, server2 = sessions()
    sid = client2.open_stream()
    deliver(client2, server2)
    with pytest.raises(RemoteProtocolError):
        client2.receive_data(encode_header(FrameType.WINDOW_UPDATE, 0, sid, (1 << 32) - 1), 0.0)


def test_ping_is_answered_and_timed() -> None:
    client, server = sessions()
    opaque = client.ping(now=1.0)
    deliver(client, server)  # server answers with ACK
    assert deliver(server, client, now=1.25) == [PingAnswered(opaque, 0.25)]


def test_keepalive_pings_and_times_out() -> None:
    client, server = sessions(keepalive_interval_s=10.0, keepalive_timeout_s=5.0)
    assert client.next_deadline() == 10.0
    client.handle_timer(10.0)
    assert client.next_deadline() == 15.0
    events = deliver(server, client, 10.1) if server.has_output else []
    assert events == []
    deliver(client, server, 10.1)
    answered = deliver(server, client, 10.2)
    assert len(answered) == 1 and isinstance(answered[0], PingAnswered)
    assert client.next_deadline() == 20.0
    client.handle_timer(20.0)
    with pytest.raises(yamux.KeepaliveTimeout):
        client.handle_timer(25.0)


def test_go_away_stops_new_streams() -> None:
    client, server = sessions()
    server.go_away()
    assert deliver(server, client) == [GoAwayReceived(0)]
    with pytest.raises(SessionClosed):
        client.open_stream()
    with pytest.raises(SessionClosed):
        server.open_stream()


def test_fin_with_data_then_data_after_fin_is_error() -> None:
    client, server = sessions()
    sid = client.open_stream()
    deliver(client, server)
    frame = encode_header(FrameType.DATA, FLAG_FIN, sid, 3) + b"end"
    assert server.receive_data(frame, 0.0) == [DataReceived(sid, b"end"), StreamEnded(sid)]
    with pytest.raises(RemoteProtocolError):
        server.receive_data(encode_header(FrameType.DATA, 0, sid, 1) + b"x", 0.0)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.binary(min_size=0, max_size=5000), min_size=1, max_size=20),
    st.lists(st.integers(min_value=1, max_value=3000), min_size=1, max_size=50),
)
def test_any_wire_chunking_delivers_every_byte_in_order(
    payloads: list[bytes], cuts: list[int]
) -> None:
    client, server = sessions(frame_payload_bytes_max=1000)
    sid = client.open_stream()
    for payload in payloads:
        assert client.send_data(sid, payload) == len(payload)
    client.close_stream(sid)
    wire = bytes(client.data_to_send())
    events: list[yamux.Event] = []
    position = 0
    for cut in cuts * (len(wire) // max(1, sum(cuts)) + 1):
        if position >= len(wire):
            break
        events += server.receive_data(wire[position : position + cut], 0.0)
        position += cut
    events += server.receive_data(wire[position:], 0.0)
    assert data_of(events, sid) == b"".join(payloads)
    assert events[-1] == StreamEnded(sid)


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_fuzz_only_typed_errors(data: bytes) -> None:
    server = YamuxSession(is_client=False, now=0.0)
    with contextlib.suppress(RemoteProtocolError):
        server.receive_data(data, 0.0)


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 15), st.integers(0, 6), st.integers(0, 70000)),
        max_size=8,
    )
)
def test_fuzz_valid_headers_only_typed_errors(frames: list[tuple[int, int, int, int]]) -> None:
    server = YamuxSession(is_client=False, now=0.0)
    wire = b"".join(
        encode_header(FrameType(t), f, s, n if t != 0 else min(n, 64))
        + (b"d" * min(n, 64) if t == 0 else b"")
        for t, f, s, n in frames
    )
    with contextlib.suppress(RemoteProtocolError):
        server.receive_data(wire, 0.0)


def test_session_window_budget_bounds_buffered_memory() -> None:
    client, server = sessions(stream_window_bytes=4 * WINDOW, session_window_bytes=9 * WINDOW)
    ids = [client.open_stream() for _ in range(3)]
    deliver(client, server)
    deliver(server, client)  # ACKs: the server grants 4x to two streams, then the budget is spent
    assert [client.send_window(i) for i in ids] == [4 * WINDOW, 4 * WINDOW, WINDOW]
    server.reset_stream(ids[0])  # a closed stream returns its share of the budget
    deliver(server, client)
    fourth = client.open_stream()
    deliver(client, server)
    deliver(server, client)
    assert client.send_window(fourth) == 4 * WINDOW


def test_provoked_answers_are_counted_for_backpressure() -> None:
    server = YamuxSession(is_client=False, now=0.0)
    flood = encode_header(FrameType.PING, FLAG_SYN, 0, 7) * 100
    server.receive_data(flood, 0.0)
    assert server.provoked_output_bytes == 100 * yamux.HEADER_BYTES
    server.data_to_send()
    assert server.provoked_output_bytes == 0


def test_payloads_never_alias_mutable_input() -> None:
    client, server = sessions()
    sid = client.open_stream()
    client.send_data(sid, b"payload")
    wire = bytearray(client.data_to_send())
    events = server.receive_data(wire, 0.0)
    wire[:] = b"\x00" * len(wire)  # the driver reuses its buffers
    assert data_of(events, sid) == b"payload"
    client.send_data(sid, b"second")
    immutable = bytes(client.data_to_send())
    assert data_of(server.receive_data(immutable, 0.0), sid) == b"second"
