"""The leader's watch over registered executors: one silent too long is declared lost.

An executor that dies (SIGKILL, power loss, a partition) never unregisters,
so the processes the ledger assigns to it would stay RUNNING until their
``maxexectime`` — forever when the spec sets none. While this server leads,
it pings every registered executor every ``stale_s / 4``; one that has not
answered for ``stale_s`` is declared lost with an
:class:`~colonymesh.node.ledger.commands.ExecutorLost` command signed by this
server, which re-queues its processes (without using their retries) and
drops it from the ledger. A live executor so declared sees its claims
refused and registers again (:mod:`colonymesh.node.colony.worker`).

Every new term starts the clocks afresh, so a new leader never declares an
executor lost on the silence it observed before it led.

Executors also send heartbeats (``colony.heartbeat``) that only the leader
acknowledges; each counts as seen here (:meth:`ExecutorLiveness.heard`). The
executor holds a lease renewed by those acknowledgements and stops its runs
when it lapses, strictly before this leader may declare it lost: the timing
argument is in :mod:`colonymesh.node.colony.worker`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import trio

from colonymesh.consensus import Role
from colonymesh.node.colony.protocol import Proposed
from colonymesh.node.envelope import EnvelopeSealer
from colonymesh.node.errors import ColonymeshError
from colonymesh.node.identity import peer_id_of
from colonymesh.node.ledger.commands import ExecutorLost
from colonymesh.node.ledger.ledger import Ledger
from colonymesh.node.peer.peer import Peer
from colonymesh.node.raft.driver import RaftDriver

log = logging.getLogger("colonymesh.node.colony")


class ExecutorLiveness:
    def __init__(
        self,
        peer: Peer,
        ledger: Ledger,
        driver: RaftDriver,
        sealer: EnvelopeSealer,
        propose: Callable[[bytes], Awaitable[Proposed]],
        stale_s: float,
    ) -> None:
        self.peer = peer
        self.ledger = ledger
        self.driver = driver
        self.sealer = sealer
        self.propose = propose
        self.stale_s = stale_s
        self.declared_lost = 0
        self._last_seen: dict[bytes, float] = {}

    async def run(self) -> None:
        interval = self.stale_s / 4
        term = -1
        while True:
            await trio.sleep(interval)
            status = self.driver.status()
            if status.role is not Role.LEADER or status.term != term:
                self._last_seen.clear()
                term = status.term if status.role is Role.LEADER else -1
                continue
            keys = sorted(self.ledger.executors)
            now = trio.current_time()
            for key in list(self._last_seen):
                if key not in self.ledger.executors:
                    del self._last_seen[key]
            async with trio.open_nursery() as nursery:
                for key in keys:
                    self._last_seen.setdefault(key, now)
                    nursery.start_soon(self._probe, key, self.stale_s / 2)
            for key in keys:
                silent_s = trio.current_time() - self._last_seen.get(key, now)
                if key in self.ledger.executors and silent_s > self.stale_s:
                    await self._declare_lost(key, silent_s)

    def heard(self, key: bytes) -> None:
        """An executor's heartbeat reached this leader: it was alive now.

        Recorded on receipt, which is after the executor sent it; the
        executor's lease counts from the sending, so it always lapses before
        this server's ``stale_s`` after the receipt (``worker.py``).
        """
        if self.driver.status().role is Role.LEADER:
            self._last_seen[key] = trio.current_time()

    async def _probe(self, key: bytes, timeout_s: float) -> None:
        try:
            await self.peer.ping(peer_id_of(key), timeout=timeout_s)
        except (ColonymeshError, trio.TooSlowError):
            return
        self._last_seen[key] = trio.current_time()

    async def _declare_lost(self, key: bytes, silent_s: float) -> None:
        name = self.ledger.executors[key].name
        reason = f"unreachable for {silent_s:.1f} s"
        answer = await self.propose(self.sealer.seal(ExecutorLost(key, reason), time.time()))
        if answer.applied:
            self.declared_lost += 1
            self._last_seen.pop(key, None)
            log.warning("executor %s (%s) declared lost: %s", name, peer_id_of(key), reason)
        else:
            log.info("executor %s not declared lost: %s", name, answer.reason)
