"""The sans-I/O chunk exchange: sessions against several servers through an in-test pump."""

from __future__ import annotations

import ast
import random
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))

from exchange_pump import Provider, Pump, make_file, new_session

import colonymesh.fs.exchange
from colonymesh.fs.cid import CODEC_RAW, Cid
from colonymesh.fs.errors import FsUsageError
from colonymesh.fs.exchange.messages import (
    BlockMessage,
    Cancel,
    DontHave,
    Haves,
    WantBlocks,
    WantHaves,
)
from colonymesh.fs.exchange.server import ExchangeProtocolError, ExchangeServer
from colonymesh.fs.exchange.session import (
    ExchangeSession,
    FindProviders,
    LoadLocal,
    PeerId,
    PeerState,
    SendWantList,
    SessionConfig,
    SessionFinished,
)
from colonymesh.fs.reader import read_file

FORBIDDEN = {"os", "io", "time", "random", "socket", "threading", "asyncio", "trio", "pathlib"}


def test_exchange_core_is_sans_io() -> None:
    folder = Path(colonymesh.fs.exchange.__file__).parent
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name == "random" and path.name == "session.py":
                    continue  # only for the injected random.Random's type
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"
                if name.startswith("colonymesh"):
                    assert name.startswith("colonymesh.fs"), f"{path.name} imports {name}"


def _file_bytes(local: dict[Cid, bytes], root: Cid) -> bytes:
    return b"".join(read_file(local.__getitem__, root))


def test_fetches_a_multilevel_file_from_three_peers_in_parallel() -> None:
    root, blocks = make_file(100_000, seed=1)
    store = {b.cid: b.data for b in blocks}
    providers = {f"p{i}": Provider(dict(store)) for i in range(3)}
    pump = Pump(
        new_session(root, 1, SessionConfig(per_peer_inflight_max=4)), providers, random.Random(1)
    )
    done = pump.run()
    assert done.ok and not done.missing
    assert pump.local == store
    assert done.blocks_fetched == len(store)
    # Spread: every provider served a fair share.
    assert sorted(pump.received_from) == ["p0", "p1", "p2"]
    assert min(pump.received_from.values()) >= len(store) // 6
    expected = random.Random(1).randbytes(100_000)
    assert _file_bytes(pump.local, root) == expected


def test_local_blocks_are_not_fetched() -> None:
    root, blocks = make_file(50_000, seed=2)
    store = {b.cid: b.data for b in blocks}
    local = {b.cid: b.data for b in blocks[: len(blocks) // 2]}
    pump = Pump(
        new_session(root, 2), {"p": Provider(dict(store))}, random.Random(2), local=dict(local)
    )
    done = pump.run()
    assert done.ok
    assert done.blocks_fetched == len(store) - len(local)
    assert pump.local == store


def test_a_lying_provider_is_marked_bad_and_the_file_still_arrives() -> None:
    root, blocks = make_file(60_000, seed=3)
    store = {b.cid: b.data for b in blocks}
    providers = {"liar": Provider(dict(store), liar=True), "honest": Provider(dict(store))}
    pump = Pump(new_session(root, 3), providers, random.Random(3))
    done = pump.run()
    assert done.ok
    assert pump.local == store
    assert [m.peer for m in pump.misbehaved] == ["liar"]
    assert pump.session.peer_states()[PeerId("liar")] is PeerState.BAD
    assert "liar" not in pump.received_from


def test_only_liars_means_failure_not_bad_bytes() -> None:
    root, blocks = make_file(20_000, seed=4)
    store = {b.cid: b.data for b in blocks}
    pump = Pump(new_session(root, 4), {"liar": Provider(dict(store), liar=True)}, random.Random(4))
    done = pump.run()
    assert not done.ok
    assert root in done.missing
    assert pump.local == {}


def test_a_provider_vanishing_mid_transfer_is_replaced_after_its_timeout() -> None:
    root, blocks = make_file(200_000, seed=5)
    store = {b.cid: b.data for b in blocks}
    providers = {"gone": Provider(dict(store), vanish_at=0.05), "stays": Provider(dict(store))}
    config = SessionConfig(per_peer_inflight_max=8, peer_timeout_s=1.0)
    pump = Pump(new_session(root, 5, config), providers, random.Random(5))
    done = pump.run()
    assert done.ok
    assert pump.local == store
    assert pump.session.peer_states()[PeerId("gone")] is PeerState.STALLED
    assert pump.now >= 1.0  # it took the timeout to notice


def test_removed_peer_is_replaced_at_once() -> None:
    root, blocks = make_file(30_000, seed=6)
    store = {b.cid: b.data for b in blocks}
    session = new_session(root, 6, SessionConfig(per_peer_inflight_max=2))
    effects = session.start(0.0)
    assert effects == [LoadLocal((root,))]
    effects = session.on_local(root, None, 0.0)
    assert effects == [FindProviders(root)]
    effects = session.on_providers(root, [PeerId("a")], 0.0)
    assert effects == [SendWantList(PeerId("a"), (root,), ())]
    effects = session.add_peer(PeerId("b"), 0.1)
    assert effects == []  # nothing else pending yet
    effects = session.remove_peer(PeerId("a"), 0.2)
    assert effects == [SendWantList(PeerId("b"), (root,), ())]
    effects = session.on_block(PeerId("b"), root, store[root], 0.3)
    assert effects[0].__class__.__name__ == "BlockReceived"
    assert isinstance(effects[1], LoadLocal)


def test_dont_have_moves_the_want_and_exhaustion_searches_then_fails() -> None:
    root, blocks = make_file(10_000, seed=7)
    store = {b.cid: b.data for b in blocks}
    providers = {"empty": Provider({}), "full": Provider(dict(store))}
    pump = Pump(new_session(root, 7), providers, random.Random(7))
    done = pump.run()
    assert done.ok
    assert pump.received_from == {"full": len(store)}
    # Nobody has it: one search, then failure naming the root.
    pump = Pump(new_session(root, 7), {"empty": Provider({})}, random.Random(7))
    done = pump.run()
    assert not done.ok and done.missing == (root,)


def test_block_from_another_peer_cancels_the_outstanding_want() -> None:
    root, blocks = make_file(1000, seed=8)  # one raw leaf
    assert root.codec == CODEC_RAW
    session = new_session(root, 8)
    session.start(0.0)
    session.on_local(root, None, 0.0)
    effects = session.on_providers(root, [PeerId("a")], 0.0)
    assert effects == [SendWantList(PeerId("a"), (root,), ())]
    session.add_peer(PeerId("b"), 0.0)
    effects = session.on_block(PeerId("b"), root, blocks[0].data, 0.1)
    assert SendWantList(PeerId("a"), (), (root,)) in effects
    assert effects[-1].__class__.__name__ == "SessionFinished"


def test_bounds_and_usage_errors() -> None:
    with pytest.raises(FsUsageError):
        SessionConfig(per_peer_inflight_max=0)
    with pytest.raises(FsUsageError):
        ExchangeSession([], random.Random(0), SessionConfig())
    root, _ = make_file(10, seed=9)
    session = new_session(root, 9)
    session.start(0.0)
    with pytest.raises(FsUsageError):
        session.start(0.0)
    with pytest.raises(FsUsageError):
        session.on_local(root, b"not it", 0.0)


def test_session_block_cap_fails_cleanly() -> None:
    root, blocks = make_file(40_000, seed=10)
    store = {b.cid: b.data for b in blocks}
    pump = Pump(
        new_session(root, 10, SessionConfig(blocks_max=5)),
        {"p": Provider(store)},
        random.Random(10),
    )
    done = pump.run()
    assert not done.ok and "more than 5" in done.error


def test_server_answers_in_order_caps_and_cancels() -> None:
    _root, blocks = make_file(20_000, seed=11)
    store = {b.cid: b.data for b in blocks}
    server = ExchangeServer(lambda c: c in store, wants_per_peer_max=3)
    cids = [b.cid for b in blocks]
    assert server.on_message("r", WantBlocks(tuple(cids[:5]))) == [DontHave(tuple(cids[3:5]))]
    assert server.on_message("r", Cancel((cids[1],))) == []
    assert server.next_want("r") == cids[0]
    assert server.next_want("r") == cids[2]
    assert server.next_want("r") is None
    assert server.answer("r", cids[0], store[cids[0]]) == BlockMessage(cids[0], store[cids[0]])
    assert server.answer("r", cids[0], None) == DontHave((cids[0],))
    missing = Cid.of(CODEC_RAW, b"nobody")
    assert server.on_message("r", WantHaves((cids[0], missing))) == [
        Haves((cids[0],)),
        DontHave((missing,)),
    ]
    with pytest.raises(ExchangeProtocolError):
        server.on_message("r", BlockMessage(cids[0], b""))
    assert server.stats.cancelled == 1


FAULTS = {
    "seed": st.integers(0, 2**32),
    "size": st.integers(0, 120_000),
    "providers": st.integers(1, 4),
    "liars": st.integers(0, 2),
    "vanish": st.booleans(),
    "loss": st.sampled_from([0.0, 0.0, 0.02, 0.1]),
    "duplicate": st.sampled_from([0.0, 0.05, 0.3]),
    "per_peer": st.integers(1, 16),
}


def _check_any_mix_of_faults(
    seed: int,
    size: int,
    providers: int,
    liars: int,
    vanish: bool,
    loss: float,
    duplicate: float,
    per_peer: int,
) -> None:
    """Terminates; what it accepts is exactly the file; with an honest live loss-free peer it succeeds."""
    root, blocks = make_file(size, seed=seed)
    store = {b.cid: b.data for b in blocks}
    rng = random.Random(seed)
    peers = {f"h{i}": Provider(dict(store)) for i in range(providers)}
    for i in range(liars):
        peers[f"liar{i}"] = Provider(dict(store), liar=True)
    if vanish:
        peers["h0"].vanish_at = rng.random() * 0.1
    config = SessionConfig(
        per_peer_inflight_max=per_peer, inflight_max=per_peer * 3, peer_timeout_s=0.5
    )
    pump = Pump(new_session(root, seed, config), peers, rng, loss=loss, duplicate=duplicate)
    done = pump.run()
    assert all(store[cid] == data for cid, data in pump.local.items())
    assert {m.peer for m in pump.misbehaved} <= {f"liar{i}" for i in range(liars)}
    if done.ok:
        assert pump.local == store
    else:
        assert done.missing
    honest_alive = providers - (1 if vanish else 0)
    if loss == 0.0 and honest_alive >= 1:
        assert done.ok, done


@settings(max_examples=40, deadline=None)
@given(**FAULTS)
def test_property_any_mix_of_faults(**case: Any) -> None:
    _check_any_mix_of_faults(**case)


@pytest.mark.slow
@settings(max_examples=1000, deadline=None)
@given(**FAULTS)
def test_property_any_mix_of_faults_long(**case: Any) -> None:
    _check_any_mix_of_faults(**case)


def test_want_adds_roots_to_a_running_session() -> None:
    first, first_blocks = make_file(5000, seed=12)
    second, second_blocks = make_file(7000, seed=13)
    store = {b.cid: b.data for b in first_blocks + second_blocks}
    session = new_session(first, 12)
    pump = Pump(session, {"p": Provider(dict(store))}, random.Random(12))
    pump.handle(session.start(0.0))
    pump.handle(session.want([second], 0.0))
    for name in pump.providers:
        pump.handle(session.add_peer(PeerId(name), 0.0))
    pump.handle(session.on_timeout(0.0))
    done = pump.run_started()
    assert done.ok and pump.local == store
    with pytest.raises(FsUsageError):
        session.want([first], 1.0)


def test_a_stalled_only_provider_is_asked_again_then_given_up() -> None:
    root, blocks = make_file(1000, seed=9)  # one raw leaf
    config = SessionConfig(peer_timeout_s=1.0, stall_retries_max=2)
    session = new_session(root, 9, config)
    session.start(0.0)
    session.on_local(root, None, 0.0)
    assert session.on_providers(root, [PeerId("a")], 0.0) == [
        SendWantList(PeerId("a"), (root,), ())
    ]
    # The want (or its answer) was lost: a stalls, nobody else can serve, so a is revived.
    effects = session.on_timeout(1.0)
    assert effects == [
        SendWantList(PeerId("a"), (), (root,)),
        SendWantList(PeerId("a"), (root,), ()),
    ]
    assert session.peer_states()[PeerId("a")] is PeerState.ACTIVE
    effects = session.on_block(PeerId("a"), root, blocks[0].data, 1.5)
    assert isinstance(effects[-1], SessionFinished) and effects[-1].ok
    # A provider that never answers is given up after stall_retries_max more timeouts.
    session = new_session(root, 9, config)
    session.start(0.0)
    session.on_local(root, None, 0.0)
    session.on_providers(root, [PeerId("a")], 0.0)
    session.on_timeout(1.0)
    session.on_timeout(2.0)
    effects = session.on_timeout(3.0)
    assert isinstance(effects[-1], SessionFinished) and not effects[-1].ok
    assert effects[-1].missing == (root,)


def test_reviving_stalled_peers_survives_message_loss() -> None:
    """One provider, 5% loss: without revival every fetch fails at its first lost message."""
    root, blocks = make_file(30_000, seed=11)
    store = {b.cid: b.data for b in blocks}
    succeeded = {}
    for retries in (0, 5):
        ok = 0
        for seed in range(10):
            config = SessionConfig(peer_timeout_s=1.0, stall_retries_max=retries)
            providers = {"only": Provider(dict(store))}
            pump = Pump(new_session(root, seed, config), providers, random.Random(seed), loss=0.05)
            done = pump.run()
            assert not done.ok or pump.local == store
            ok += done.ok
        succeeded[retries] = ok
    assert succeeded == {0: 0, 5: 10}
