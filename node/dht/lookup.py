"""The alpha-parallel iterative Kademlia lookup, as a pure state machine (paper §2.3).

What it owns: the candidates of one lookup toward `target` (peers known to be
near it), each NOT_CONTACTED, WAITING (with a deadline), SUCCEEDED or FAILED, kept
sorted by XOR distance and capped at `peers_max`.

How it works: the lookup queries the closest not-yet-contacted candidates among
the `k` closest non-failed ones, at most `alpha` at a time. `on_response` adds the
answer's closer peers (each one hop further than the peer that named it) and
tops the in-flight set back up; `on_failure`/`on_timeout` mark a peer FAILED so the
next candidate moves into the top `k`. The lookup is finished when every one of
the `k` closest non-failed candidates has answered (or none is left), or when
the caller ends it early (`finish`, e.g. a value was found).

Disjoint paths (S/Kademlia, Baumgart & Mies 2007): `DisjointLookup` runs `d`
`Lookup`s that share a claim map, so a peer is queried by at most one path; the
seeds are dealt round-robin. A single adversarial peer can then mislead at most
one path. The result is the `k` closest that answered on any path.

Hops: a seed is at hop 1; a peer first named by a hop-h peer is at hop h + 1. The
lookup's `hops` is the hop of the closest peer that answered, i.e. how many
sequential round trips it took to reach the answer.

Contract for the driver: send a request to every peer a `Step` names in `query`;
report each answer with `on_response` or `on_failure` (or let `on_timeout(now)` at
`next_deadline()` expire it); a `Step`'s `failed` lists peers that timed out, so the
driver can forget their requests and tell the routing table.
"""

from __future__ import annotations

import bisect
import enum
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from colonymesh.node.dht.ids import node_id_of
from colonymesh.node.dht.messages import PeerInfo


class PeerState(enum.Enum):
    NOT_CONTACTED = "not-contacted"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CLAIMED = "claimed"  # queried by another disjoint path: not ours to use


@dataclass(frozen=True, slots=True)
class Step:
    """What the driver must do after an input: query these peers; these timed out."""

    query: tuple[PeerInfo, ...] = ()
    failed: tuple[bytes, ...] = ()


class _Candidate:
    __slots__ = ("deadline", "distance", "hops", "info", "state")

    def __init__(self, info: PeerInfo, distance: int, hops: int) -> None:
        self.info = info
        self.distance = distance
        self.hops = hops
        self.state = PeerState.NOT_CONTACTED
        self.deadline = math.inf


class Lookup:
    __slots__ = (
        "_by_key",
        "_claims",
        "_done",
        "_order",
        "_path",
        "_self_key",
        "_waiting",
        "alpha",
        "k",
        "peers_max",
        "queried",
        "request_timeout_s",
        "target",
    )

    def __init__(
        self,
        target: int,
        seeds: Iterable[PeerInfo],
        *,
        k: int = 20,
        alpha: int = 3,
        request_timeout_s: float = 10.0,
        peers_max: int | None = None,
        self_key: bytes | None = None,
        claims: dict[bytes, int] | None = None,
        path: int = 0,
    ) -> None:
        if k < 1 or alpha < 1:
            raise ValueError("k and alpha must be >= 1")
        self.target = target
        self.k = k
        self.alpha = alpha
        self.request_timeout_s = request_timeout_s
        self.peers_max = peers_max if peers_max is not None else 8 * k
        self.queried = 0
        self._self_key = self_key
        self._claims = claims
        self._path = path
        self._by_key: dict[bytes, _Candidate] = {}
        self._order: list[tuple[int, bytes]] = []  # (distance, key), nearest first
        self._waiting: dict[bytes, float] = {}  # WAITING candidates -> deadline
        self._done = False
        for seed in seeds:
            self._add(seed, 1)

    # --- candidates -------------------------------------------------------------

    def _add(self, info: PeerInfo, hops: int) -> None:
        key = info.public_key
        if key == self._self_key or key in self._by_key:
            return
        dist = node_id_of(key) ^ self.target
        if len(self._order) >= self.peers_max:
            if dist >= self._order[-1][0]:
                return
            # drop the farthest candidate we have not yet asked; never drop in-flight state
            for i in range(len(self._order) - 1, -1, -1):
                far = self._by_key[self._order[i][1]]
                if far.state in (PeerState.NOT_CONTACTED, PeerState.FAILED, PeerState.CLAIMED):
                    del self._by_key[self._order[i][1]]
                    del self._order[i]
                    break
            else:
                return
        self._by_key[key] = _Candidate(info, dist, hops)
        bisect.insort(self._order, (dist, key))

    def _top(self) -> list[_Candidate]:
        """The k closest candidates that have not failed (nor belong to another path)."""
        out: list[_Candidate] = []
        for _, key in self._order:
            cand = self._by_key[key]
            if cand.state in (PeerState.FAILED, PeerState.CLAIMED):
                continue
            out.append(cand)
            if len(out) == self.k:
                break
        return out

    def _advance(self, now: float, failed: tuple[bytes, ...] = ()) -> Step:
        if self._done:
            return Step(failed=failed)
        in_flight = len(self._waiting)
        query: list[PeerInfo] = []
        while True:
            # claiming a peer another path owns changes the top k: then look again
            rescan = False
            pending_in_top = False
            for cand in self._top():
                if cand.state is PeerState.WAITING:
                    pending_in_top = True
                    continue
                if cand.state is not PeerState.NOT_CONTACTED:
                    continue
                pending_in_top = True
                if in_flight >= self.alpha:
                    break
                key = cand.info.public_key
                if self._claims is not None:
                    owner = self._claims.setdefault(key, self._path)
                    if owner != self._path:
                        cand.state = PeerState.CLAIMED
                        rescan = True
                        break
                cand.state = PeerState.WAITING
                cand.deadline = now + self.request_timeout_s
                self._waiting[key] = cand.deadline
                in_flight += 1
                self.queried += 1
                query.append(cand.info)
            if not rescan:
                break
        if not pending_in_top:
            self._done = True
        return Step(tuple(query), failed)

    # --- inputs -------------------------------------------------------------------

    def start(self, now: float) -> Step:
        return self._advance(now)

    def on_response(self, peer: bytes, closer: Sequence[PeerInfo], now: float) -> Step:
        cand = self._by_key.get(peer)
        if cand is None or self._done:
            return Step()
        if cand.state is PeerState.CLAIMED:
            return Step()
        # a late answer from a peer we had given up on still counts
        self._waiting.pop(peer, None)
        cand.state = PeerState.SUCCEEDED
        cand.deadline = math.inf
        for info in closer:
            self._add(info, cand.hops + 1)
        return self._advance(now)

    def on_failure(self, peer: bytes, now: float) -> Step:
        cand = self._by_key.get(peer)
        if cand is None or self._done or cand.state is not PeerState.WAITING:
            return Step()
        cand.state = PeerState.FAILED
        cand.deadline = math.inf
        del self._waiting[peer]
        return self._advance(now)

    def on_timeout(self, now: float) -> Step:
        expired = [key for key, deadline in self._waiting.items() if deadline <= now]
        for key in expired:
            del self._waiting[key]
            cand = self._by_key[key]
            cand.state = PeerState.FAILED
            cand.deadline = math.inf
        if not expired:
            return Step()
        return self._advance(now, tuple(expired))

    def finish(self) -> None:
        """End the lookup early (e.g. a value was found); in-flight answers are ignored."""
        self._done = True

    # --- outputs ------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self._done

    def next_deadline(self) -> float:
        if self._done:
            return math.inf
        return min(self._waiting.values(), default=math.inf)

    def waiting(self) -> list[bytes]:
        return list(self._waiting)

    def state_of(self, peer: bytes) -> PeerState | None:
        cand = self._by_key.get(peer)
        return cand.state if cand is not None else None

    def succeeded(self) -> list[tuple[int, int, PeerInfo]]:
        """(distance, hops, peer) of every peer that answered, nearest first."""
        out = []
        for dist, key in self._order:
            cand = self._by_key[key]
            if cand.state is PeerState.SUCCEEDED:
                out.append((dist, cand.hops, cand.info))
        return out

    def hops_of(self, peer: bytes) -> int | None:
        cand = self._by_key.get(peer)
        return cand.hops if cand is not None else None

    def result(self) -> list[PeerInfo]:
        """The k closest peers that answered, nearest first."""
        return [info for _, _, info in self.succeeded()[: self.k]]

    @property
    def hops(self) -> int:
        got = self.succeeded()
        return got[0][1] if got else 0


class DisjointLookup:
    """`d` lookups over disjoint peer sets (S/Kademlia); same interface as `Lookup`."""

    __slots__ = ("_owner", "k", "paths", "target")

    def __init__(
        self,
        target: int,
        seeds: Iterable[PeerInfo],
        *,
        paths: int,
        k: int = 20,
        alpha: int = 3,
        request_timeout_s: float = 10.0,
        peers_max: int | None = None,
        self_key: bytes | None = None,
    ) -> None:
        if paths < 1:
            raise ValueError("paths must be >= 1")
        seed_list = sorted(
            {s.public_key: s for s in seeds if s.public_key != self_key}.values(),
            key=lambda s: node_id_of(s.public_key) ^ target,
        )
        self.target = target
        self.k = k
        self._owner: dict[bytes, int] = {}
        self.paths = [
            Lookup(
                target,
                seed_list[i::paths],
                k=k,
                alpha=alpha,
                request_timeout_s=request_timeout_s,
                peers_max=peers_max,
                self_key=self_key,
                claims=self._owner,
                path=i,
            )
            for i in range(paths)
        ]

    @staticmethod
    def _merge(steps: Iterable[Step]) -> Step:
        query: list[PeerInfo] = []
        failed: list[bytes] = []
        for step in steps:
            query.extend(step.query)
            failed.extend(step.failed)
        return Step(tuple(query), tuple(failed))

    def _path_of(self, peer: bytes) -> Lookup | None:
        owner = self._owner.get(peer)
        return self.paths[owner] if owner is not None else None

    def start(self, now: float) -> Step:
        return self._merge(p.start(now) for p in self.paths)

    def on_response(self, peer: bytes, closer: Sequence[PeerInfo], now: float) -> Step:
        path = self._path_of(peer)
        return path.on_response(peer, closer, now) if path is not None else Step()

    def on_failure(self, peer: bytes, now: float) -> Step:
        path = self._path_of(peer)
        return path.on_failure(peer, now) if path is not None else Step()

    def on_timeout(self, now: float) -> Step:
        return self._merge(p.on_timeout(now) for p in self.paths)

    def finish(self) -> None:
        for p in self.paths:
            p.finish()

    @property
    def finished(self) -> bool:
        return all(p.finished for p in self.paths)

    @property
    def queried(self) -> int:
        return sum(p.queried for p in self.paths)

    def next_deadline(self) -> float:
        return min(p.next_deadline() for p in self.paths)

    def waiting(self) -> list[bytes]:
        return [k for p in self.paths for k in p.waiting()]

    def hops_of(self, peer: bytes) -> int | None:
        path = self._path_of(peer)
        return path.hops_of(peer) if path is not None else None

    def succeeded(self) -> list[tuple[int, int, PeerInfo]]:
        merged = [item for p in self.paths for item in p.succeeded()]
        merged.sort(key=lambda item: item[0])
        return merged

    def result(self) -> list[PeerInfo]:
        return [info for _, _, info in self.succeeded()[: self.k]]

    @property
    def hops(self) -> int:
        got = self.succeeded()
        return got[0][1] if got else 0
