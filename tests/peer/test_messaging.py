"""In-process tests of the messaging API: answers, one-way, deadlines, errors, bad frames."""

from __future__ import annotations

import pytest
import trio
from peerkit import Echo, Note, clock, member_config

from colonymesh.node.envelope import EnvelopeSealer
from colonymesh.node.identity import KeyPair, Signer
from colonymesh.node.messages import Ping
from colonymesh.node.peer.errors import (
    BadResponse,
    MessagingError,
    PeerUnreachable,
    RemoteError,
    RequestTimeout,
)
from colonymesh.node.peer.framing import encode_frame
from colonymesh.node.peer.gating import GatingConfig
from colonymesh.node.peer.messaging import (
    REQUEST_PROTOCOL,
    SEND_PROTOCOL,
    Incoming,
    MessagingConfig,
)
from colonymesh.node.peer.peer import Peer
from colonymesh.node.transport.errors import NegotiationFailed
from colonymesh.node.transport.varint import encode_uvarint
from support.colony import ColonyFixture


async def _echo(incoming: Incoming) -> Echo:
    return Echo("echo:" + incoming.body.text)


async def test_request_answer_and_one_way(lab: ColonyFixture) -> None:
    notes: list[tuple[str, str]] = []
    arrived = trio.Event()

    async def on_note(incoming: Incoming) -> None:
        notes.append((incoming.peer_id, incoming.body.text))
        arrived.set()

    async with Peer.open(member_config(lab, 0)) as a, Peer.open(member_config(lab, 1)) as b:
        b.on("test.echo", _echo)
        b.on("test.note", on_note)
        assert await a.connect(b.listen_addrs[0]) == b.peer_id
        assert a.connected_peers() == [b.peer_id]
        # b identifies a the moment it admits it, while a may still be judging b's
        # answer: the stream waits for a's verdict instead of being refused.
        with trio.fail_after(5):
            while b.connections.addresses.addresses(a.peer_id) != a.listen_addrs:
                await trio.sleep(0.01)
        assert await a.request(b.peer_id, Echo("hi"), timeout=5) == Echo("echo:hi")
        rtt = await a.ping(b.peer_id, timeout=5)
        assert 0 < rtt < 5
        await a.send(b.peer_id, Note("fire and forget"), timeout=5)
        with trio.fail_after(5):
            await arrived.wait()
        assert notes == [(a.peer_id, "fire and forget")]
        # b answers over the same connection (reused, not redialled).
        assert await b.request(a.peer_id, Ping(b"\x01" * 16), timeout=5) is not None
        assert b.connections.counters["dials"] == 0
        assert await a.connect(f"{b.listen_addrs[0]}/p2p/{b.peer_id}") == b.peer_id
        assert a.connections.counters["dials"] == 1  # named and connected: reused
        stats_a, stats_b = a.statistics(), b.statistics()
        assert stats_a["messaging"]["requests_answered"] == 2
        assert stats_b["messaging"]["messages_received"] == 1
        assert stats_b["gating"]["admitted_now"] == 1


async def test_dial_by_peer_id_from_address_book(lab: ColonyFixture) -> None:
    async with Peer.open(member_config(lab, 0)) as a, Peer.open(member_config(lab, 1)) as b:
        b.on("test.echo", _echo)
        with pytest.raises(PeerUnreachable, match="no known address"):
            await a.request(b.peer_id, Echo("x"), timeout=2)
        a.add_address(b.peer_id, b.listen_addrs[0])
        assert await a.request(b.peer_id, Echo("y"), timeout=5) == Echo("echo:y")
        assert await a.request(b.peer_id, Echo("z"), timeout=5) == Echo("echo:z")
        assert a.connections.counters["dials"] == 1
        assert a.connections.counters["reused"] >= 1


async def test_deadline_cancels_a_slow_request(lab: ColonyFixture) -> None:
    cancelled = trio.Event()

    async def stall(incoming: Incoming) -> Echo:
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()
        raise AssertionError("unreachable")

    b_config = member_config(lab, 1, messaging=MessagingConfig(handler_timeout_s=1.0))
    async with Peer.open(member_config(lab, 0)) as a, Peer.open(b_config) as b:
        b.on("test.echo", stall)
        await a.connect(b.listen_addrs[0])
        started = trio.current_time()
        with pytest.raises(RequestTimeout):
            await a.request(b.peer_id, Echo("slow"), timeout=0.3)
        assert trio.current_time() - started < 1.5
        # The remote handler is bounded by its own deadline.
        with trio.fail_after(5):
            await cancelled.wait()
        await trio.sleep(0.05)
        assert b.statistics()["messaging"]["handler_errors"] == 1
        assert a.statistics()["messaging"]["requests_failed"] == 1
        # The connection survives a timed-out request.
        assert await a.ping(b.peer_id, timeout=5) > 0


async def test_remote_errors_are_typed(lab: ColonyFixture) -> None:
    async def broken(incoming: Incoming) -> Echo:
        raise ValueError("boom")

    async def silent(incoming: Incoming) -> None:
        return None

    async with Peer.open(member_config(lab, 0)) as a, Peer.open(member_config(lab, 1)) as b:
        await a.connect(b.listen_addrs[0])
        with pytest.raises(RemoteError) as caught:
            await a.request(b.peer_id, Echo("nobody"), timeout=5)
        assert caught.value.code == "no_handler"
        b.on("test.echo", broken)
        with pytest.raises(RemoteError) as caught:
            await a.request(b.peer_id, Echo("x"), timeout=5)
        assert caught.value.code == "handler_failed" and "boom" in caught.value.remote_message
        b.on("test.note", silent)
        with pytest.raises(RemoteError) as caught:
            await a.request(b.peer_id, Note("x"), timeout=5)
        assert caught.value.code == "no_answer"
        assert b.statistics()["messaging"]["handler_errors"] == 1
        assert a.connected_peers() == [b.peer_id]  # errors do not cost the connection


async def test_oversized_frames_are_refused_both_ways(lab: ColonyFixture) -> None:
    async with Peer.open(member_config(lab, 0)) as a, Peer.open(member_config(lab, 1)) as b:
        b.on("test.echo", _echo)
        await a.connect(b.listen_addrs[0])
        cap = a.config.messaging.frame_bytes_max
        with pytest.raises(MessagingError, match="exceeds the cap"):
            await a.request(b.peer_id, Echo("x" * (cap + 1)), timeout=5)
        # Forge an oversized announcement straight onto an admitted connection.
        connection = a.connections.connection_to(b.peer_id)
        assert connection is not None
        stream = await connection.open_stream([REQUEST_PROTOCOL])
        await stream.send_all(encode_uvarint(cap + 1))
        with trio.fail_after(5):
            await connection.wait_closed()
        assert b.statistics()["messaging"]["refused"] == {"FrameTooLarge": 1}
        # b keeps running and takes a new connection.
        await a.connect(b.listen_addrs[0])
        assert await a.request(b.peer_id, Echo("again"), timeout=5) == Echo("echo:again")


@pytest.mark.parametrize("forgery", ["garbage", "foreign_signer", "bad_signature", "replay"])
async def test_bad_envelopes_close_the_connection_and_are_counted(
    lab: ColonyFixture, forgery: str
) -> None:
    async with Peer.open(member_config(lab, 0)) as a, Peer.open(member_config(lab, 1)) as b:
        b.on("test.note", _echo)
        await a.connect(b.listen_addrs[0])
        connection = a.connections.connection_to(b.peer_id)
        assert connection is not None
        colony_id = lab.colony.colony_id
        good = a.messenger._sealer  # a's own numbering: a second sealer would skip ahead
        if forgery == "garbage":
            frame = b"\xff\x00 not cbor"
        elif forgery == "foreign_signer":  # a member of the colony, but not this connection
            frame = EnvelopeSealer(Signer(lab.members[2].keys), colony_id, clock()).seal(
                Note("x"), clock()
            )
        elif forgery == "bad_signature":
            frame = bytearray(good.seal(Note("x"), clock()))
            frame[-1] ^= 1
            frame = bytes(frame)
        else:
            frame = good.seal(Note("x"), clock())  # accepted once, then a replay
            first = await connection.open_stream([SEND_PROTOCOL])
            await first.send_all(encode_frame(frame, 1 << 20))
            await first.send_eof()
            await trio.sleep(0.2)
            assert not connection.is_closed
        stream = await connection.open_stream([SEND_PROTOCOL])
        await stream.send_all(encode_frame(frame, 1 << 20))
        await stream.send_eof()
        with trio.fail_after(5):
            await connection.wait_closed()
        refused = b.statistics()["messaging"]["refused"]
        expected = {
            "garbage": "MalformedFrame",
            "foreign_signer": "UnknownSender",
            "bad_signature": "BadSignature",
            "replay": "ReplayedEnvelope",
        }[forgery]
        assert refused == {expected: 1}
        await a.connect(b.listen_addrs[0])
        assert b.connected_peers() == [a.peer_id]


async def test_colony_protocols_are_not_offered_before_presentation(lab: ColonyFixture) -> None:
    from colonymesh.node.peer.gating import PROTOCOL_ID as MEMBERSHIP
    from colonymesh.node.peer.gating import GatingConfig
    from colonymesh.node.transport.host import Host

    gating = GatingConfig(
        presentation_timeout_s=1.0, allow_strangers_identify_ping=True, strangers_grace_s=1.0
    )
    async with (
        Peer.open(member_config(lab, 1, gating=gating)) as b,
        Host.open(lab.members[0].keys) as raw,
    ):
        connection = await raw.dial_addr(b.listen_addrs[0])
        with pytest.raises(NegotiationFailed):
            await connection.open_stream([REQUEST_PROTOCOL])
        with pytest.raises(NegotiationFailed):
            await connection.open_stream([SEND_PROTOCOL])
        # identify (allowed to strangers here) lists only what a stranger may open.
        info = await raw.identify(connection)
        assert REQUEST_PROTOCOL not in info.protocols and MEMBERSHIP in info.protocols
        # Without a presentation the connection is cut after the grace period.
        with trio.fail_after(5):
            await connection.wait_closed()
        assert b.statistics()["gating"]["refused"]["no_certificate"] == 1
        # An admitted peer is offered everything.
        async with Peer.open(member_config(lab, 0)) as a:
            await a.connect(b.listen_addrs[0])
            admitted = a.connections.connection_to(b.peer_id)
            assert admitted is not None
            info = await a.host.identify(admitted)
            assert REQUEST_PROTOCOL in info.protocols and SEND_PROTOCOL in info.protocols


async def test_send_to_unknown_peer_is_unreachable(lab: ColonyFixture) -> None:
    async with Peer.open(member_config(lab, 0)) as a:
        with pytest.raises(PeerUnreachable):
            await a.send(KeyPair.generate().peer_id, Note("x"), timeout=1)


@pytest.mark.parametrize(
    ("answer", "cause"),
    [(b"\x00\xff not an envelope", "MalformedFrame"), (b"\x07", "response_frame")],
)
async def test_a_bad_answer_is_a_typed_error_and_costs_the_connection(
    lab: ColonyFixture, answer: bytes, cause: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Peer.open(member_config(lab, 0)) as a, Peer.open(member_config(lab, 1)) as b:

        async def broken_dispatch(incoming: Incoming) -> bytes:
            return answer

        monkeypatch.setattr(b.messenger, "_dispatch", broken_dispatch)
        await a.connect(b.listen_addrs[0])
        with pytest.raises(BadResponse):
            await a.request(b.peer_id, Echo("x"), timeout=5)
        assert a.statistics()["messaging"]["refused"] == {cause: 1}
        with trio.fail_after(5):
            while a.connected_peers():
                await trio.sleep(0.02)


async def test_simultaneous_dials_leave_one_connection_both_sides_agree_on(
    lab: ColonyFixture,
) -> None:
    fast = GatingConfig(presentation_timeout_s=1.0, sweep_interval_s=0.1, duplicate_grace_s=1.0)
    a_config = member_config(lab, 0, gating=fast)
    b_config = member_config(lab, 1, gating=fast)
    async with Peer.open(a_config) as a, Peer.open(b_config) as b:
        a.on("test.echo", _echo)
        b.on("test.echo", _echo)
        async with trio.open_nursery() as nursery:  # both dial at once
            nursery.start_soon(a.connect, b.listen_addrs[0])
            nursery.start_soon(b.connect, a.listen_addrs[0])
        lower = min(a.peer_id, b.peer_id)
        with trio.fail_after(5):
            while len(a.host.connections_to(b.peer_id)) + len(b.host.connections_to(a.peer_id)) > 2:
                await trio.sleep(0.02)
        for me, other in ((a, b), (b, a)):
            (kept,) = me.host.connections_to(other.peer_id)
            dialer = me.peer_id if kept.is_initiator else other.peer_id
            assert dialer == lower
        retired = a.statistics()["gating"]["duplicates_retired"]
        retired += b.statistics()["gating"]["duplicates_retired"]
        assert retired >= 1
        # Traffic flows both ways on the survivor, with no new dial.
        dials = a.connections.counters["dials"] + b.connections.counters["dials"]
        assert await a.request(b.peer_id, Echo("x"), timeout=5) == Echo("echo:x")
        assert await b.request(a.peer_id, Echo("y"), timeout=5) == Echo("echo:y")
        assert a.connections.counters["dials"] + b.connections.counters["dials"] == dials
