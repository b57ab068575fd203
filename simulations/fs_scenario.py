"""The ``fs`` scenario: replication and repair of content-addressed files across peers.

What it owns: :func:`run`, one seeded run of :class:`~colonymesh.simulations.
fs_world.FsPeer` peers (the real DHT, chunk-exchange and repair cores), and
the checks that decide whether it passed:

1. **Join.** ``peers`` peers bootstrap the DHT through peer 0 and a few others.
2. **Put.** Files (empty, one byte, exactly one chunk, one chunk plus one
   byte, multi-level DAGs: small chunks and a small fan-out give several
   levels at simulator cost) are imported with the real importer at random
   origins, which pin and announce them. The repair cores recruit replicas
   until every root has ``k`` live holders (bounded by ``replicate_bound_s``).
3. **Loss.** Holders are crashed greedily, in a seeded order, for as long as
   every root keeps at least one live holder and ``k + 1`` peers stay up:
   most roots lose ``k - 1`` of their ``k`` providers. A seeded fraction (0,
   1/4, 1/2) of the peers that hold nothing crash with them: the DHT loses
   contacts and the provider records they stored. Then one block is corrupted at one surviving holder
   of every root that kept two or more.
4. **Read.** Every file is read by a peer that does not hold it, through a
   session fed by DHT provider records (which still name the dead peers),
   and every byte read must equal what was put (**chunk integrity**).
5. **Repair.** Within ``repair_bound_s`` every root must be back at ``k``
   live holders whose every block hashes to its CID.

Drawn per seed: link delay, loss (0 to 1%), the origins, the crash order,
the readers. Figures: time to first reach k, repair time after the loss,
peers lost, blocks served, corrupt blocks detected, messages.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from colonymesh.fs.cid import Cid
from colonymesh.fs.exchange.session import SessionConfig, SessionFinished
from colonymesh.fs.importer import Block, FileImporter, FixedSizeChunker
from colonymesh.fs.reader import read_file
from colonymesh.fs.replication import ReplicationConfig
from colonymesh.node.dht.effects import DhtConfig
from colonymesh.node.dht.messages import PeerInfo
from colonymesh.node.dht.records import RecordLimits
from colonymesh.simulations.engine import NodeIO, Simulator
from colonymesh.simulations.fs_world import FsPeer, FsShared, public_key_of
from colonymesh.simulations.network import Network
from colonymesh.simulations.runner import ScenarioResult

__all__ = ["FsScenarioConfig", "run", "scenario"]

CHUNK_BYTES: Final = 1024
MAX_LINKS: Final = 4
READ_ATTEMPTS_MAX: Final = 30
READ_RETRY_S: Final = 5.0  # a reader tries again (as a user would) until the read bound


@dataclass(frozen=True, slots=True)
class FsScenarioConfig:
    peers: int = 24
    files: int = 0  # 0: a size that grows with the peers (see `_file_sizes`)
    k: int = 3
    join_s: float = 10.0
    replicate_bound_s: float = 600.0
    repair_bound_s: float = 900.0
    read_bound_s: float = 300.0
    uplink_bytes_per_s: float = 10e6
    corrupt: bool = True


@dataclass(slots=True)
class _File:
    root: Cid
    data: bytes
    blocks: dict[Cid, bytes]
    read_ok: bool = False
    read_attempts: int = 0


@dataclass(slots=True)
class _Run:
    sim: Simulator
    shared: FsShared
    files: list[_File]
    figures: dict[str, Any]


def _file_sizes(cfg: FsScenarioConfig, draw: Callable[[int, int], int]) -> list[int]:
    fixed = [0, 1, CHUNK_BYTES, CHUNK_BYTES + 1, CHUNK_BYTES * MAX_LINKS * MAX_LINKS + 7]
    count = cfg.files if cfg.files > 0 else max(len(fixed), min(40, cfg.peers // 2))
    sizes = fixed[:count]
    while len(sizes) < count:
        sizes.append(draw(2, 40) * CHUNK_BYTES + draw(0, CHUNK_BYTES - 1))
    return sizes


def _import(data: bytes) -> tuple[Cid, dict[Cid, bytes]]:
    importer = FileImporter(FixedSizeChunker(CHUNK_BYTES), MAX_LINKS)
    blocks: list[Block] = importer.feed(data)
    root, rest = importer.finish()
    blocks.extend(rest)
    return root.cid, {block.cid: block.data for block in blocks}


def _peer(run: _Run, index: int) -> FsPeer | None:
    adapter = run.sim.adapter(index)
    return adapter if isinstance(adapter, FsPeer) else None


def live_holders(run: _Run, root: Cid) -> list[int]:
    """Ground truth: live peers that pinned `root` and hold every block of it, intact."""
    out = []
    for index in range(run.sim.node_count):
        peer = _peer(run, index)
        if peer is not None and root in peer.pinned and peer.holds(root):
            out.append(index)
    return out


def _intact(run: _Run, index: int, file: _File) -> bool:
    peer = _peer(run, index)
    return peer is not None and all(peer.blocks.get(c) == d for c, d in file.blocks.items())


def _wait(run: _Run, until: float, done: Callable[[], bool], step_s: float = 1.0) -> float | None:
    """Run until `done()` (checked every `step_s`) or `until`; the time it became true."""
    sim = run.sim
    while sim.now < until and sim.violation is None:
        if done():
            return sim.now
        sim.run_until(min(until, sim.now + step_s))
    return sim.now if sim.violation is None and done() else None


def _all_replicated(run: _Run, k: int) -> bool:
    return all(len(live_holders(run, f.root)) >= k for f in run.files)


def _build(seed: int, cfg: FsScenarioConfig) -> _Run:
    probe = Simulator(seed)  # draws the network from the seed before anything else
    network = Network(
        delay_base_s=probe.rng.choice([0.001, 0.01, 0.05]),
        delay_jitter_s=probe.rng.choice([0.001, 0.01]),
        loss=probe.rng.choice([0.0, 0.0, 0.002, 0.01]),
    )
    sim = Simulator(seed, network)
    sim.rng.seed(probe.rng.getrandbits(64))
    infos = [PeerInfo(public_key_of(i), (f"/sim/{i}",)) for i in range(cfg.peers)]
    replication = ReplicationConfig(
        k=cfg.k,
        check_interval_s=60.0,
        check_jitter_s=5.0,
        repair_timeout_s=60.0,
        failed_cooldown_s=300.0,
    )
    shared = FsShared(
        infos=infos,
        index_of={info.public_key: i for i, info in enumerate(infos)},
        dht_config=DhtConfig(
            request_timeout_s=2.0,
            provider_republish_s=300.0,
            records=RecordLimits(provider_ttl_s=900.0),
        ),
        session_config=SessionConfig(per_peer_inflight_max=16, peer_timeout_s=5.0),
        replication=replication,
    )

    def factory(io: NodeIO) -> FsPeer:
        return FsPeer(shared, io)

    for _ in range(cfg.peers):
        sim.add_node(factory, uplink_bytes_per_s=cfg.uplink_bytes_per_s)
    return _Run(sim, shared, [], {})


def _join(run: _Run, cfg: FsScenarioConfig) -> None:
    sim = run.sim
    for index in range(cfg.peers):
        seeds = [0] + [sim.rng.randrange(cfg.peers) for _ in range(2)]
        sim.call_at(index * 0.05, _bootstrap(run, index, seeds))
    sim.run_until(cfg.join_s)


def _bootstrap(run: _Run, index: int, seeds: list[int]) -> Callable[[], None]:
    def act() -> None:
        peer = _peer(run, index)
        if peer is not None:
            run.sim.poke(index, lambda _: peer.bootstrap(seeds))

    return act


def _put(run: _Run, cfg: FsScenarioConfig) -> None:
    sim = run.sim
    for size in _file_sizes(cfg, sim.rng.randint):
        data = sim.rng.randbytes(size)
        root, blocks = _import(data)
        if any(f.root == root for f in run.files):
            continue  # two equal files are one root
        run.files.append(_File(root, data, blocks))
        origin = sim.rng.randrange(cfg.peers)
        peer = _peer(run, origin)
        if peer is None:
            raise RuntimeError("an origin peer is down before any fault")
        sim.poke(origin, _importer(peer, root, blocks))


def _importer(peer: FsPeer, root: Cid, blocks: dict[Cid, bytes]) -> Callable[[object], None]:
    def act(_: object) -> None:
        peer.put_root(root, dict(blocks), peer.io.now)

    return act


def _lose(run: _Run, cfg: FsScenarioConfig) -> list[int]:
    """Crash holders in a seeded order while every root keeps a live holder, and a
    seeded fraction (0, 1/4 or 1/2) of the bystanders (peers that hold no root)."""
    sim = run.sim
    order = list(range(cfg.peers))
    sim.rng.shuffle(order)
    holders = {f.root: live_holders(run, f.root) for f in run.files}
    holding = {i for h in holders.values() for i in h}
    bystanders = [i for i in order if i not in holding]
    bystanders_lost = dict.fromkeys(
        bystanders[: int(len(bystanders) * sim.rng.choice([0, 1, 2]) / 4)]
    )
    crashed: list[int] = []
    for index in order:
        if cfg.peers - len(crashed) <= cfg.k + 1:
            break  # k live peers, and one spare, must remain for k to be reachable again
        if index not in holding and index not in bystanders_lost:
            continue
        if all(len(h) > 1 or index not in h for h in holders.values()):
            crashed.append(index)
            for h in holders.values():
                if index in h:
                    h.remove(index)
            sim.crash(index)
    if cfg.corrupt:
        for file in run.files:
            survivors = holders[file.root]
            if len(survivors) >= 2:
                victim = _peer(run, sim.rng.choice(survivors))
                if victim is not None:
                    cid = sim.rng.choice(sorted(file.blocks, key=lambda c: c.to_bytes()))
                    data = bytearray(victim.blocks[cid] or b"\0")
                    data[0] ^= 0xFF
                    victim.blocks[cid] = bytes(data)
    run.figures["roots_left_with_one_holder"] = sum(1 for h in holders.values() if len(h) == 1)
    return crashed


def _read_all(run: _Run, cfg: FsScenarioConfig) -> None:
    for file in run.files:
        _read_one(run, cfg, file)


def _read_one(run: _Run, cfg: FsScenarioConfig, file: _File) -> None:
    sim = run.sim
    holders = set(live_holders(run, file.root))
    readers = [i for i in range(cfg.peers) if sim.is_up(i) and i not in holders]
    if not readers:
        readers = [i for i in range(cfg.peers) if sim.is_up(i)]
    reader = sim.rng.choice(readers)
    peer = _peer(run, reader)
    if peer is None:
        return
    file.read_attempts += 1

    def done(finished: SessionFinished, scratch: dict[Cid, bytes]) -> None:
        if not finished.ok:
            if file.read_attempts < READ_ATTEMPTS_MAX:
                sim.call_later(READ_RETRY_S, lambda: _read_one(run, cfg, file))
            return
        got = b"".join(read_file(scratch.__getitem__, file.root))
        if got != file.data:
            sim.fail(f"chunk integrity: {file.root} read back {len(got)} bytes that differ")
            return
        file.read_ok = True

    sim.poke(reader, lambda _: peer.read(file.root, done))


def run(seed: int, cfg: FsScenarioConfig | None = None) -> _Run:
    cfg = cfg or FsScenarioConfig()
    if cfg.peers < cfg.k + 2:
        raise ValueError(f"the fs scenario needs at least k + 2 = {cfg.k + 2} peers")
    state = _build(seed, cfg)
    sim, figures = state.sim, state.figures
    _join(state, cfg)
    _put(state, cfg)
    started = sim.now
    reached = _wait(state, started + cfg.replicate_bound_s, lambda: _all_replicated(state, cfg.k))
    if reached is None:
        short = [f.root.encode() for f in state.files if len(live_holders(state, f.root)) < cfg.k]
        sim.fail(f"replication: {len(short)} roots below k={cfg.k} after the bound: {short[:3]}")
        return state
    figures["replicate_seconds"] = round(reached - started, 3)
    crashed = _lose(state, cfg)
    figures["peers_lost"] = len(crashed)
    lost_at = sim.now
    _read_all(state, cfg)
    read_done = _wait(
        state, lost_at + cfg.read_bound_s, lambda: all(f.read_ok for f in state.files)
    )
    if sim.violation is not None:
        return state
    if read_done is None:
        unread = [f.root.encode() for f in state.files if not f.read_ok]
        sim.fail(f"readability: {len(unread)} files unreadable after losing providers")
        return state
    figures["read_seconds"] = round(read_done - lost_at, 3)
    repaired = _wait(state, lost_at + cfg.repair_bound_s, lambda: _all_replicated(state, cfg.k))
    if repaired is None:
        short = [f.root.encode() for f in state.files if len(live_holders(state, f.root)) < cfg.k]
        sim.fail(f"repair: {len(short)} roots below k={cfg.k} after the bound: {short[:3]}")
        return state
    figures["repair_seconds"] = round(repaired - lost_at, 3)
    for file in state.files:
        for index in live_holders(state, file.root):
            if not _intact(state, index, file):
                sim.fail(f"chunk integrity: peer {index} holds a rotten copy of {file.root}")
                return state
    return state


def _figures(state: _Run, cfg: FsScenarioConfig) -> dict[str, Any]:
    stats = dataclasses.asdict(state.shared.stats)
    return {
        **state.figures,
        **stats,
        "files": len(state.files),
        "blocks": sum(len(f.blocks) for f in state.files),
        "bytes": sum(len(f.data) for f in state.files),
        "k": cfg.k,
        "events": state.sim.stats.as_dict().get("events", 0),
        "messages": state.sim.stats.as_dict().get("sent", 0),
        "virtual_seconds": round(state.sim.now, 3),
    }


def scenario(seed: int, peers: int, duration: float | None) -> ScenarioResult:
    """The registry entry: ``duration`` bounds the repair phase (virtual seconds)."""
    cfg = FsScenarioConfig(peers=peers)
    if duration is not None:
        cfg = dataclasses.replace(cfg, repair_bound_s=duration)
    state = run(seed, cfg)
    network = state.sim.network
    profile = {"loss": network.loss, "delay_base_s": network.delay_base_s}
    return ScenarioResult(
        state.sim.violation, state.sim.violation_at, profile, _figures(state, cfg)
    )
