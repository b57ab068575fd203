"""The fetching side of chunk exchange: one want-list session pulls a whole DAG from many peers.

Owns, for one fetch of one or more root CIDs, which block is wanted from which
peer, what is in flight, which peers have failed us, and when the fetch is
over. Bitswap's session idea, written sans-I/O.

How it works
------------
* Every CID the session learns of (the roots, then the links of each dag-pb
  block it accepts) is first offered to the local store: the session emits
  `LoadLocal` and the driver answers `on_local(cid, data | None)`. A local
  block counts as fetched (its links are walked); a missing one -- or one the
  store found corrupt and removed -- becomes *pending*.
* Pending CIDs are assigned in discovery order to the session's peers: the
  least-loaded peer that may still be asked for that CID (not bad, not stalled,
  has not said DONT_HAVE for it), ties broken by the injected `random.Random`.
  Each peer holds at most `per_peer_inflight_max` blocks in flight, the session
  at most `inflight_max`; the wants for one peer made in one step go out as one
  `SendWantList`. Several peers therefore serve one file in parallel.
* Blocks are verified against their CID before anything else. A peer that
  sends bytes that do not hash to the CID is marked bad (`PeerMisbehaved`),
  never asked again, and all it had in flight is re-assigned. A verified block
  that we had re-requested elsewhere cancels the other want.
* Liveness is judged per peer: a peer with blocks in flight must show progress
  (any answer) every `peer_timeout_s`; when it does not, it is *stalled*: its
  in-flight wants are cancelled and re-assigned elsewhere, and it is asked
  nothing more while another peer can serve. Only when a block has no other
  candidate (and a provider search found none) are stalled peers revived, at
  most `stall_retries_max` times each: a slow or briefly silent provider -- a
  lost message in the simulator, a congested link -- is not given up for
  good, and a dead one costs at most that many more timeouts. A removed peer
  (disconnected) is retired at once and never revived.
* A pending CID that no peer may be asked for triggers `FindProviders(cid)`
  (one search at a time, once per CID); the driver answers
  `on_providers(cid, peers)`, which also adds the peers to the session.
* The session ends with one `SessionFinished`: `ok` when every block of the
  DAG is held locally; otherwise with the CIDs no peer could give.

Invariants: a CID is in exactly one of the states local-loading, pending,
in-flight (at exactly one peer), done or missing; `BlockReceived` is emitted
only for bytes that hash to their CID, at most once per CID; no peer has more
than `per_peer_inflight_max` in flight, nor the session more than
`inflight_max`; sets are never iterated where order matters. Pure: the
driver passes `now` and owns all I/O.

Driver contract: call `start(now)` once; answer every `LoadLocal` CID with
`on_local`, every `FindProviders` with `on_providers`; feed peer answers with
`on_block` / `on_dont_have`; call `on_timeout(now)` at `next_deadline()`;
store the data of every `BlockReceived` before relying on it; stop at
`SessionFinished`.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, NewType

from colonymesh.fs.cid import Cid
from colonymesh.fs.errors import FsDecodeError, FsUsageError, UnsupportedError
from colonymesh.fs.reader import child_cids

PeerId = NewType("PeerId", str)

SESSION_BLOCKS_MAX_DEFAULT: Final = 4_000_000


@dataclass(frozen=True, slots=True)
class SessionConfig:
    per_peer_inflight_max: int = 32
    inflight_max: int = 128
    peer_timeout_s: float = 10.0
    blocks_max: int = SESSION_BLOCKS_MAX_DEFAULT  # a DAG larger than this fails the session
    walk: bool = True  # False: fetch the roots only (a listing needs no more)
    # a stalled peer is asked again (at most this many times) when no other can serve
    stall_retries_max: int = 2

    def __post_init__(self) -> None:
        if self.per_peer_inflight_max < 1 or self.inflight_max < 1:
            raise FsUsageError("in-flight bounds must be at least 1")
        if self.stall_retries_max < 0:
            raise FsUsageError("stall_retries_max must not be negative")
        if self.peer_timeout_s <= 0:
            raise FsUsageError("peer_timeout_s must be positive")


# --- effects ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoadLocal:
    """Read these blocks from the local store and answer each with `on_local`."""

    cids: tuple[Cid, ...]


@dataclass(frozen=True, slots=True)
class SendWantList:
    """Send `peer` a WANT_BLOCKS for `wants` (and a CANCEL for `cancels`)."""

    peer: PeerId
    wants: tuple[Cid, ...]
    cancels: tuple[Cid, ...]


@dataclass(frozen=True, slots=True)
class FindProviders:
    """Look up who holds `cid`; answer with `on_providers`."""

    cid: Cid


@dataclass(frozen=True, slots=True)
class BlockReceived:
    """A verified block from `peer`: store it."""

    peer: PeerId
    cid: Cid
    data: bytes


@dataclass(frozen=True, slots=True)
class PeerMisbehaved:
    peer: PeerId
    reason: str


@dataclass(frozen=True, slots=True)
class SessionFinished:
    ok: bool
    missing: tuple[Cid, ...]
    blocks_fetched: int
    bytes_fetched: int
    error: str = ""


Effect = LoadLocal | SendWantList | FindProviders | BlockReceived | PeerMisbehaved | SessionFinished


# --- state --------------------------------------------------------------------------


class CidState(enum.Enum):
    LOADING = "loading"
    PENDING = "pending"
    INFLIGHT = "inflight"
    DONE = "done"
    MISSING = "missing"


class PeerState(enum.Enum):
    ACTIVE = "active"
    STALLED = "stalled"
    BAD = "bad"
    REMOVED = "removed"


@dataclass(slots=True)
class _Peer:
    state: PeerState = PeerState.ACTIVE
    inflight: dict[Cid, None] = field(default_factory=dict)  # ordered set
    last_progress: float = 0.0
    received: int = 0
    stalls: int = 0


@dataclass(slots=True)
class _Entry:
    state: CidState
    at: PeerId | None = None
    refused_by: set[PeerId] = field(default_factory=set)  # said DONT_HAVE, stalled or bad
    searched: bool = False


class ExchangeSession:
    """Fetches the DAGs under `roots` from whichever peers the driver adds."""

    def __init__(self, roots: Sequence[Cid], rng: random.Random, config: SessionConfig) -> None:
        if not roots:
            raise FsUsageError("a session needs at least one root")
        self.config = config
        self._rng = rng
        self._roots = tuple(dict.fromkeys(roots))
        self._cids: dict[Cid, _Entry] = {}
        self._pending: deque[Cid] = deque()
        self._peers: dict[PeerId, _Peer] = {}
        self._inflight = 0
        self._loading = 0
        self._searching: Cid | None = None
        self._started = False
        self._finished: SessionFinished | None = None
        self._out: list[Effect] = []
        self.blocks_fetched = 0
        self.bytes_fetched = 0
        self.duplicates = 0

    # --- inputs ---------------------------------------------------------------------

    def start(self, now: float) -> list[Effect]:
        if self._started:
            raise FsUsageError("session already started")
        self._started = True
        self._discover(self._roots)
        return self._step(now)

    def want(self, cids: Sequence[Cid], now: float) -> list[Effect]:
        """Add more roots to a running session (their DAGs are fetched too)."""
        if not self._started or self._finished is not None:
            raise FsUsageError("want() needs a started, unfinished session")
        self._discover(cids)
        return self._step(now)

    def add_peer(self, peer: PeerId, now: float) -> list[Effect]:
        if self._finished is not None:
            return []
        if peer not in self._peers:
            self._peers[peer] = _Peer(last_progress=now)
        return self._step(now)

    def remove_peer(self, peer: PeerId, now: float) -> list[Effect]:
        if self._finished is not None:
            return []
        state = self._peers.get(peer)
        if state is not None and state.state is PeerState.ACTIVE:
            self._retire(peer, PeerState.REMOVED, cancel=False)
        return self._step(now)

    def on_local(self, cid: Cid, data: bytes | None, now: float) -> list[Effect]:
        if self._finished is not None:
            return []
        entry = self._cids.get(cid)
        if entry is None or entry.state is not CidState.LOADING:
            raise FsUsageError(f"on_local for {cid}, which is not loading")
        self._loading -= 1
        if data is None:
            entry.state = CidState.PENDING
            self._pending.append(cid)
        elif not cid.verify(data):
            raise FsUsageError(f"local store returned bytes that do not hash to {cid}")
        else:
            self._accept(cid, entry, data)
        return self._step(now)

    def on_block(self, peer: PeerId, cid: Cid, data: bytes, now: float) -> list[Effect]:
        if self._finished is not None:
            return []
        state = self._peers.get(peer)
        if state is None or state.state is PeerState.BAD:
            return self._step(now)
        state.last_progress = now
        entry = self._cids.get(cid)
        if entry is None or entry.state in (CidState.DONE, CidState.LOADING, CidState.MISSING):
            self.duplicates += 1
            self._unassign_from(peer, cid)
            return self._step(now)
        try:
            valid = cid.verify(data)
        except UnsupportedError:
            valid = False
        if not valid:
            self._out.append(PeerMisbehaved(peer, f"sent bytes that do not hash to {cid}"))
            self._retire(peer, PeerState.BAD, cancel=False)
            return self._step(now)
        if entry.state is CidState.INFLIGHT and entry.at is not None and entry.at != peer:
            other = entry.at
            self._unassign_from(other, cid)
            self._out.append(SendWantList(other, (), (cid,)))
        elif entry.state is CidState.INFLIGHT:
            self._unassign_from(peer, cid)
        else:  # pending: an unsolicited but valid block we wanted anyway
            self._pending.remove(cid)
        state.received += 1
        self.blocks_fetched += 1
        self.bytes_fetched += len(data)
        self._out.append(BlockReceived(peer, cid, data))
        self._accept(cid, entry, data)
        return self._step(now)

    def on_dont_have(self, peer: PeerId, cids: Iterable[Cid], now: float) -> list[Effect]:
        if self._finished is not None:
            return []
        state = self._peers.get(peer)
        if state is None:
            return self._step(now)
        state.last_progress = now
        for cid in cids:
            entry = self._cids.get(cid)
            if entry is None:
                continue
            entry.refused_by.add(peer)
            if entry.state is CidState.INFLIGHT and entry.at == peer:
                self._unassign_from(peer, cid)
                self._repend(cid, entry)
        return self._step(now)

    def on_providers(self, cid: Cid, peers: Iterable[PeerId], now: float) -> list[Effect]:
        if self._finished is not None:
            return []
        if self._searching == cid:
            self._searching = None
        for peer in peers:
            if peer not in self._peers:
                self._peers[peer] = _Peer(last_progress=now)
        return self._step(now)

    def on_timeout(self, now: float) -> list[Effect]:
        if self._finished is not None:
            return []
        for peer_id, peer in list(self._peers.items()):
            if (
                peer.state is PeerState.ACTIVE
                and peer.inflight
                and now >= peer.last_progress + self.config.peer_timeout_s
            ):
                self._retire(peer_id, PeerState.STALLED, cancel=True)
        return self._step(now)

    def next_deadline(self) -> float | None:
        deadlines = [
            p.last_progress + self.config.peer_timeout_s
            for p in self._peers.values()
            if p.state is PeerState.ACTIVE and p.inflight
        ]
        return min(deadlines) if deadlines else None

    # --- queries --------------------------------------------------------------------

    @property
    def finished(self) -> SessionFinished | None:
        return self._finished

    def peer_states(self) -> dict[PeerId, PeerState]:
        return {peer: state.state for peer, state in self._peers.items()}

    def inflight_of(self, peer: PeerId) -> int:
        state = self._peers.get(peer)
        return len(state.inflight) if state is not None else 0

    def statistics(self) -> dict[str, int]:
        return {
            "blocks_known": len(self._cids),
            "pending": len(self._pending),
            "inflight": self._inflight,
            "blocks_fetched": self.blocks_fetched,
            "bytes_fetched": self.bytes_fetched,
            "duplicates": self.duplicates,
            "peers": len(self._peers),
        }

    # --- transitions ----------------------------------------------------------------

    def _discover(self, cids: Iterable[Cid]) -> None:
        fresh = [cid for cid in cids if cid not in self._cids]
        fresh = list(dict.fromkeys(fresh))
        if len(self._cids) + len(fresh) > self.config.blocks_max:
            self._finish(f"DAG has more than {self.config.blocks_max} blocks")
            return
        for cid in fresh:
            self._cids[cid] = _Entry(CidState.LOADING)
        if fresh:
            self._loading += len(fresh)
            self._out.append(LoadLocal(tuple(fresh)))

    def _accept(self, cid: Cid, entry: _Entry, data: bytes) -> None:
        entry.state = CidState.DONE
        entry.at = None
        if not self.config.walk:
            return
        try:
            children = child_cids(cid, data)
        except FsDecodeError as error:
            self._finish(f"block {cid} is not a valid DAG node: {error}")
            return
        self._discover(children)

    def _unassign_from(self, peer: PeerId, cid: Cid) -> None:
        state = self._peers.get(peer)
        if state is not None and cid in state.inflight:
            del state.inflight[cid]
            self._inflight -= 1

    def _repend(self, cid: Cid, entry: _Entry) -> None:
        entry.state = CidState.PENDING
        entry.at = None
        self._pending.appendleft(cid)  # re-requests go first: they hold up the end

    def _retire(self, peer: PeerId, new_state: PeerState, *, cancel: bool) -> None:
        state = self._peers[peer]
        state.state = new_state
        cids = list(state.inflight)
        for cid in reversed(cids):
            entry = self._cids[cid]
            if new_state is not PeerState.STALLED:  # a stall is not a refusal
                entry.refused_by.add(peer)
            self._unassign_from(peer, cid)
            self._repend(cid, entry)
        if cancel and cids:
            self._out.append(SendWantList(peer, (), tuple(cids)))

    def _finish(self, error: str = "") -> None:
        if self._finished is not None:
            return
        missing = tuple(c for c, e in self._cids.items() if e.state is not CidState.DONE)
        self._finished = SessionFinished(
            ok=not error and not missing,
            missing=missing,
            blocks_fetched=self.blocks_fetched,
            bytes_fetched=self.bytes_fetched,
            error=error or (f"{len(missing)} blocks found at no peer" if missing else ""),
        )
        for peer_id, peer in self._peers.items():
            if peer.inflight:
                self._out.append(SendWantList(peer_id, (), tuple(peer.inflight)))
                self._inflight -= len(peer.inflight)
                peer.inflight.clear()
        self._out.append(self._finished)

    def _candidates(self, entry: _Entry) -> list[PeerId]:
        return [
            peer_id
            for peer_id, peer in self._peers.items()
            if peer.state is PeerState.ACTIVE and peer_id not in entry.refused_by
        ]

    def _assign(self, now: float) -> None:
        while self._assign_once(now):
            pass  # stalled peers were revived: place what they may serve

    def _assign_once(self, now: float) -> bool:
        wants: dict[PeerId, list[Cid]] = {}
        unplaceable: deque[Cid] = deque()
        while self._pending and self._inflight < self.config.inflight_max:
            cid = self._pending.popleft()
            entry = self._cids[cid]
            candidates = self._candidates(entry)
            if not candidates:
                unplaceable.append(cid)
                continue
            free = [
                p
                for p in candidates
                if len(self._peers[p].inflight) < self.config.per_peer_inflight_max
            ]
            if not free:
                self._pending.appendleft(cid)  # every candidate is busy: wait for answers
                break
            least = min(len(self._peers[p].inflight) for p in free)
            peer_id = self._rng.choice([p for p in free if len(self._peers[p].inflight) == least])
            peer = self._peers[peer_id]
            if not peer.inflight:
                peer.last_progress = now  # its clock starts with its first want
            peer.inflight[cid] = None
            self._inflight += 1
            entry.state = CidState.INFLIGHT
            entry.at = peer_id
            wants.setdefault(peer_id, []).append(cid)
        self._pending.extendleft(reversed(unplaceable))
        for peer_id, cids in wants.items():
            self._out.append(SendWantList(peer_id, tuple(cids), ()))
        return self._search_or_give_up(unplaceable, now)

    def _search_or_give_up(self, unplaceable: deque[Cid], now: float) -> bool:
        """Search, else revive stalled peers (True: assign again), else give up."""
        if self._searching is not None or not unplaceable:
            return False
        for cid in unplaceable:
            entry = self._cids[cid]
            if not entry.searched:
                entry.searched = True
                self._searching = cid
                self._out.append(FindProviders(cid))
                return False
        revived = False
        for peer in self._peers.values():
            if peer.state is PeerState.STALLED and peer.stalls < self.config.stall_retries_max:
                peer.state = PeerState.ACTIVE
                peer.stalls += 1
                peer.last_progress = now
                revived = True
        if revived:
            return True
        for cid in unplaceable:  # searched and still nobody: give it up
            self._pending.remove(cid)
            self._cids[cid].state = CidState.MISSING
        return False

    def _step(self, now: float) -> list[Effect]:
        if self._finished is None and self._started:
            self._assign(now)
            if (
                self._finished is None
                and not self._pending
                and not self._inflight
                and not self._loading
                and self._searching is None
            ):
                self._finish()
        out, self._out = self._out, []
        return out
