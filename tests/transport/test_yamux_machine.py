"""Two yamux cores through an in-memory link, driven by hypothesis: any interleaving of
opens, writes, partial deliveries, consumption, FINs, RSTs and pings keeps every stream's
bytes in order, never overruns a window and never makes either side blame the other."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from colonymesh.node.transport import yamux
from colonymesh.node.transport.errors import LocalProtocolError
from colonymesh.node.transport.yamux import YamuxConfig, YamuxSession

WINDOW = yamux.INITIAL_WINDOW_BYTES
SIDES = ("client", "server")
_PATTERN = bytes(range(251)) * (4 * WINDOW // 251 + 2)


class _Side:
    def __init__(self, is_client: bool) -> None:
        config = YamuxConfig(
            stream_window_bytes=WINDOW,
            session_window_bytes=4 * WINDOW,
            frame_payload_bytes_max=4000,
            streams_max=8,
            keepalive_interval_s=None,
        )
        self.session = YamuxSession(is_client=is_client, now=0.0, config=config)
        self.link = bytearray()  # bytes on the wire towards the other side
        self.sent: dict[int, bytearray] = {}  # what we wrote per stream
        self.received: dict[int, bytearray] = {}  # what arrived per stream (consumed or not)
        self.unconsumed: dict[int, int] = {}
        self.reset: set[int] = set()
        self.ended: set[int] = set()
        self.closed_for_writing: set[int] = set()


class YamuxPair(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.sides = {"client": _Side(True), "server": _Side(False)}
        self.now = 0.0

    def _other(self, name: str) -> str:
        return "server" if name == "client" else "client"

    def _pump(self, name: str) -> None:
        side = self.sides[name]
        side.link += side.session.data_to_send()

    def _live(self, name: str) -> list[int]:
        side = self.sides[name]
        return [
            sid
            for sid in sorted(side.sent)
            if sid not in side.reset and sid not in side.closed_for_writing
        ]

    @rule(name=st.sampled_from(SIDES))
    def open_stream(self, name: str) -> None:
        side = self.sides[name]
        if side.session.stream_count >= side.session.config.streams_max:
            return
        sid = side.session.open_stream()
        side.sent[sid] = bytearray()
        side.received[sid] = bytearray()
        side.unconsumed[sid] = 0
        self._pump(name)

    @rule(
        name=st.sampled_from(SIDES),
        pick=st.integers(0, 20),
        size=st.one_of(st.integers(1, 2000), st.integers(60_000, 200_000)),
    )
    def write(self, name: str, pick: int, size: int) -> None:
        live = self._live(name)
        if not live:
            return
        side = self.sides[name]
        sid = live[pick % len(live)]
        try:
            window = side.session.send_window(sid)
        except LocalProtocolError:  # reset by the peer meanwhile; the core forgot it
            return
        start = len(side.sent[sid]) % 251  # a position-dependent pattern: reordering shows
        payload = _PATTERN[start : start + size]
        taken = side.session.send_data(sid, payload)
        assert taken == min(size, window)
        side.sent[sid] += payload[:taken]
        self._pump(name)

    @rule(name=st.sampled_from(SIDES), amount=st.one_of(st.integers(1, 5000), st.just(1 << 30)))
    def deliver(self, name: str, amount: int) -> None:
        side, other_name = self.sides[name], self._other(name)
        other = self.sides[other_name]
        chunk = bytes(side.link[:amount])
        del side.link[:amount]
        if not chunk:
            return
        for event in other.session.receive_data(chunk, self.now):
            match event:
                case yamux.StreamOpened(sid):
                    other.sent.setdefault(sid, bytearray())
                    other.received.setdefault(sid, bytearray())
                    other.unconsumed.setdefault(sid, 0)
                case yamux.DataReceived(sid, data):
                    other.received[sid] += data
                    other.unconsumed[sid] += len(data)
                case yamux.StreamEnded(sid):
                    other.ended.add(sid)
                case yamux.StreamWasReset(sid):
                    other.reset.add(sid)
                case yamux.WindowIncreased() | yamux.GoAwayReceived() | yamux.PingAnswered():
                    pass
        self._pump(other_name)

    @rule(name=st.sampled_from(SIDES), pick=st.integers(0, 20))
    def bulk_round(self, name: str, pick: int) -> None:
        """Write a window's worth, deliver it, let the reader consume all of it, deliver back."""
        self.write(name, pick, 3 * WINDOW)
        self.deliver(name, 1 << 30)
        other = self._other(name)
        for sid in sorted(self.sides[other].unconsumed):
            self.consume(other, sorted(self.sides[other].unconsumed).index(sid), 1.0)
        self.deliver(other, 1 << 30)

    @rule(
        name=st.sampled_from(SIDES), pick=st.integers(0, 20), fraction=st.sampled_from([0.3, 1.0])
    )
    def consume(self, name: str, pick: int, fraction: float) -> None:
        side = self.sides[name]
        candidates = [sid for sid in sorted(side.unconsumed) if side.unconsumed[sid]]
        if not candidates:
            return
        sid = candidates[pick % len(candidates)]
        count = max(1, int(side.unconsumed[sid] * fraction))
        side.unconsumed[sid] -= count
        side.session.consumed(sid, count)
        self._pump(name)

    @rule(name=st.sampled_from(SIDES), pick=st.integers(0, 20))
    def close(self, name: str, pick: int) -> None:
        live = self._live(name)
        if live:
            sid = live[pick % len(live)]
            self.sides[name].session.close_stream(sid)
            self.sides[name].closed_for_writing.add(sid)
            self._pump(name)

    @precondition(lambda self: any(self._live(n) for n in SIDES))
    @rule(name=st.sampled_from(SIDES), pick=st.integers(0, 20))
    def reset(self, name: str, pick: int) -> None:
        live = self._live(name)
        if live:
            sid = live[pick % len(live)]
            self.sides[name].session.reset_stream(sid)
            self.sides[name].reset.add(sid)
            self._pump(name)

    @rule(name=st.sampled_from(SIDES))
    def ping(self, name: str) -> None:
        self.now += 0.001
        self.sides[name].session.ping(self.now)
        self._pump(name)

    @invariant()
    def bytes_arrive_in_order_and_within_windows(self) -> None:
        for name in SIDES:
            side, other = self.sides[name], self.sides[self._other(name)]
            for sid, received in side.received.items():
                if sid in side.reset or sid in other.reset:
                    continue
                sent = other.sent.get(sid, bytearray())
                assert received == sent[: len(received)]
                assert side.unconsumed[sid] <= WINDOW  # the window bounds the buffer


YamuxPair.TestCase.settings = settings(max_examples=60, stateful_step_count=60, deadline=None)
TestYamuxPair = YamuxPair.TestCase


class YamuxPairLonger(YamuxPair):
    pass


YamuxPairLonger.TestCase.settings = settings(
    max_examples=600, stateful_step_count=120, deadline=None
)
TestYamuxPairLonger = pytest.mark.slow(YamuxPairLonger.TestCase)
