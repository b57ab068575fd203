"""The server directory: only a server's own, newer announcement moves it (pure checks)."""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from colonymesh.node.certs import (
    Capabilities,
    Certificate,
    Membership,
    Role,
    create_colony,
    encode_record,
    issue_certificate,
)
from colonymesh.node.colony.discovery import ServerDirectory, ServerGroup, split_addr
from colonymesh.node.envelope import seal_frame
from colonymesh.node.identity import KeyPair, Signer

NOW = int(time.time())
OWNER = KeyPair.generate()
COLONY = create_colony(OWNER, "discovery", NOW - 60)


def member(role: Role, serial: int) -> tuple[KeyPair, Certificate]:
    keys = KeyPair.generate()
    certificate = issue_certificate(
        OWNER,
        COLONY,
        keys.public_key,
        name=f"m{serial}",
        roles=[role],
        not_before=NOW - 30,
        not_after=NOW + 3600,
        serial=serial,
        capabilities=Capabilities(),
    )
    return keys, certificate


SERVER, SERVER_CERT = member(Role.SERVER, 1)
OTHER, OTHER_CERT = member(Role.SERVER, 2)
EXECUTOR, EXECUTOR_CERT = member(Role.EXECUTOR, 3)


def frame(keys: KeyPair, group: ServerGroup, *, seq: int = 1, colony_id: bytes = b"") -> bytes:
    return seal_frame(
        Signer(keys),
        colony_id or COLONY.colony_id,
        group,
        seq=seq,
        timestamp_ms=(NOW + seq) * 1000,
    )


def group(keys: KeyPair, term: int) -> ServerGroup:
    addr = f"/ip4/127.0.0.1/tcp/4001/p2p/{keys.peer_id}"
    return ServerGroup(term, keys.peer_id, (keys.peer_id, OTHER.peer_id), (addr,))


def directory() -> ServerDirectory:
    membership = Membership(COLONY)
    membership.admit(SERVER_CERT, NOW)
    membership.admit(EXECUTOR_CERT, NOW)
    return ServerDirectory(membership)


def test_a_servers_announcement_is_kept_and_newer_terms_win() -> None:
    d = directory()
    assert d.observe(frame(SERVER, group(SERVER, 3)), now=NOW)
    assert d.leader == SERVER.peer_id and d.servers() == [SERVER.peer_id, OTHER.peer_id]
    assert d.addresses() == [(SERVER.peer_id, f"/ip4/127.0.0.1/tcp/4001/p2p/{SERVER.peer_id}")]
    # an older term, even sealed later, loses; the unknown server brings its certificate
    assert not d.observe(frame(OTHER, group(OTHER, 2), seq=5), encode_record(OTHER_CERT), NOW)
    assert d.leader == SERVER.peer_id and d.stats.stale == 1
    assert d.observe(frame(OTHER, group(OTHER, 4), seq=6), encode_record(OTHER_CERT), NOW)
    assert d.leader == OTHER.peer_id and d.version == 2


def test_forged_or_foreign_announcements_change_nothing() -> None:
    d = directory()
    assert not d.observe(frame(EXECUTOR, group(EXECUTOR, 9)), now=NOW)  # no server role
    assert not d.observe(frame(SERVER, group(EXECUTOR, 9)), now=NOW)  # names someone else
    assert not d.observe(frame(OTHER, group(OTHER, 9)), now=NOW)  # unknown, no certificate
    assert not d.observe(frame(SERVER, group(SERVER, 9), colony_id=b"x" * 32), now=NOW)
    tampered = bytearray(frame(SERVER, group(SERVER, 9)))
    tampered[-1] ^= 1
    assert not d.observe(bytes(tampered), now=NOW)
    assert d.group is None and d.stats.refused == 5


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512), st.binary(max_size=64))
def test_garbage_is_refused_not_raised(data: bytes, certificate: bytes) -> None:
    d = directory()
    assert not d.observe(data, certificate, NOW)
    assert d.group is None


def test_split_addr() -> None:
    assert split_addr("/ip4/1.2.3.4/tcp/1/p2p/abc") == ("abc", "/ip4/1.2.3.4/tcp/1/p2p/abc")
    assert split_addr("/ip4/1.2.3.4/tcp/1") is None
    assert split_addr("/p2p/") is None
