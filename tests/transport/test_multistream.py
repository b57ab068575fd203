"""multistream-select 1.0 cores talking to each other and to hand-written peers."""

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from colonymesh.node.transport import multistream as ms
from colonymesh.node.transport.errors import (
    FrameTooLarge,
    LocalProtocolError,
    MalformedMessage,
    NegotiationFailed,
    RemoteProtocolError,
)
from colonymesh.node.transport.varint import encode_uvarint


def negotiate(dialer: ms.Negotiation, listener: ms.Negotiation) -> tuple[str, str]:
    results: dict[str, str] = {}
    for _ in range(20):
        out = dialer.data_to_send()
        if out and not listener.done:
            agreed = listener.receive_data(out)
            if agreed:
                results["listener"] = agreed.protocol
        back = listener.data_to_send()
        if back and not dialer.done:
            agreed = dialer.receive_data(back)
            if agreed:
                results["dialer"] = agreed.protocol
        if dialer.done and listener.done:
            return results["dialer"], results["listener"]
    raise AssertionError("negotiation did not finish")


def test_first_supported_proposal_wins_after_na() -> None:
    dialer = ms.Negotiation(ms.Role.DIALER, ["/a/1", "/b/1", "/c/1"])
    listener = ms.Negotiation(ms.Role.LISTENER, ["/c/1", "/b/1"])
    assert negotiate(dialer, listener) == ("/b/1", "/b/1")


def test_wire_format_is_varint_line() -> None:
    dialer = ms.Negotiation(ms.Role.DIALER, ["/noise"])
    assert dialer.data_to_send() == b"\x13/multistream/1.0.0\n\x07/noise\n"


def test_no_common_protocol_fails_typed() -> None:
    dialer = ms.Negotiation(ms.Role.DIALER, ["/a/1"])
    listener = ms.Negotiation(ms.Role.LISTENER, ["/b/1"])
    listener.receive_data(dialer.data_to_send())
    with pytest.raises(NegotiationFailed):
        dialer.receive_data(listener.data_to_send())


def test_unconsumed_bytes_are_handed_on() -> None:
    dialer = ms.Negotiation(ms.Role.DIALER, ["/x/1"])
    listener = ms.Negotiation(ms.Role.LISTENER, ["/x/1"])
    agreed = listener.receive_data(dialer.data_to_send() + b"early data")
    assert agreed is not None and agreed.unconsumed == b"early data"


def test_ls_lists_protocols() -> None:
    listener = ms.Negotiation(ms.Role.LISTENER, ["/a/1", "/b/2"])
    listener.data_to_send()
    assert listener.receive_data(ms.encode_message(ms.HEADER) + ms.encode_message("ls")) is None
    body = b"".join(ms.encode_message(p) for p in ["/a/1", "/b/2"]) + b"\n"
    assert listener.data_to_send() == encode_uvarint(len(body)) + body


def test_byte_at_a_time_delivery() -> None:
    dialer = ms.Negotiation(ms.Role.DIALER, ["/x/1"])
    listener = ms.Negotiation(ms.Role.LISTENER, ["/x/1"])
    wire = dialer.data_to_send()
    results = [listener.receive_data(wire[i : i + 1]) for i in range(len(wire))]
    assert [r.protocol for r in results if r] == ["/x/1"]


def test_remote_errors() -> None:
    listener = ms.Negotiation(ms.Role.LISTENER, ["/x/1"])
    with pytest.raises(RemoteProtocolError):
        listener.receive_data(ms.encode_message("/not-multistream"))
    listener = ms.Negotiation(ms.Role.LISTENER, ["/x/1"])
    with pytest.raises(MalformedMessage):
        listener.receive_data(b"\x03abc")  # no newline
    listener = ms.Negotiation(ms.Role.LISTENER, ["/x/1"])
    with pytest.raises(FrameTooLarge):
        listener.receive_data(encode_uvarint(100_000))
    listener = ms.Negotiation(ms.Role.LISTENER, ["/x/1"])
    spam = ms.encode_message(ms.HEADER) + ms.encode_message("/nope") * (ms.PROPOSALS_MAX + 1)
    with pytest.raises(RemoteProtocolError):
        listener.receive_data(spam)


def test_local_errors() -> None:
    with pytest.raises(LocalProtocolError):
        ms.Negotiation(ms.Role.DIALER, [])
    with pytest.raises(LocalProtocolError):
        ms.Negotiation(ms.Role.DIALER, ["no-slash"])
    listener = ms.Negotiation(ms.Role.LISTENER, ["/x/1"])
    listener.receive_data(ms.Negotiation(ms.Role.DIALER, ["/x/1"]).data_to_send())
    with pytest.raises(LocalProtocolError):
        listener.receive_data(b"more")


@given(st.binary(max_size=300))
def test_listener_fuzz_only_typed_errors(data: bytes) -> None:
    listener = ms.Negotiation(ms.Role.LISTENER, ["/x/1"])
    with contextlib.suppress(RemoteProtocolError):
        listener.receive_data(data)
