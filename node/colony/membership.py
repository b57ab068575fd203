"""The server group keeps itself whole: the leader replaces dead voters with spare servers.

What it owns: the leader's decisions about the Raft group's membership.
Every peer whose certificate holds the ``server`` role runs a ledger replica;
those named in ``[colony] servers`` found the group as its voters, the
others start as *spares* outside the configuration (they replicate nothing
until added). While this server leads, :class:`GroupKeeper` checks once a
``round_s``:

1. It pings every voter; one that has not answered for ``voter_dead_s`` is
   dead.
2. One change at a time, through Raft's single-server membership change
   (``consensus/confchange.py``; the core refuses a second while one is
   uncommitted, and so does this loop):

   * a learner that has caught up (its match index reaches the commit index)
     is promoted to voter;
   * else, if there are more voters than ``voters_target`` and one is dead,
     the dead one is removed;
   * else, if a voter is dead or there are fewer voters than
     ``voters_target``, a reachable spare (a connected peer with the server
     role, not in the configuration) is added as a learner.

   Adding the replacement before removing the dead voter keeps a majority of
   live voters at every step (3 voters with one dead: 3 of 4 live, then 2 of
   3), so the colony keeps committing throughout and survives a second
   failure once the change is done. A learner that stays unreachable for
   ``voter_dead_s`` is removed again, so a dying spare cannot block the group.

``node run`` sets ``voters_target`` to the number of founding servers (3 by
default; found the colony with 5 for 5 voters) and ``voter_dead_s`` to 10
election timeouts.

Contract with the Raft driver: conf changes are proposed on the leader's core
and the driver is woken to run the Ready loop; the loop then waits until the
change's index is committed before it considers another.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from colonymesh.consensus import Role as RaftRole
from colonymesh.consensus.confchange import ConfChange, ConfChangeOp
from colonymesh.consensus.errors import RaftError
from colonymesh.consensus.types import LogIndex, NodeId
from colonymesh.node.errors import ColonymeshError

log = logging.getLogger("colonymesh.node.colony")

VOTERS_TARGET = 3
VOTER_DEAD_S = 10.0
VOTER_DEAD_ELECTION_TIMEOUTS = 10  # the default: dead after this many election timeouts
ROUND_S = 0.5


class GroupConfigError(ColonymeshError):
    """The group keeper was configured with impossible numbers."""


@dataclass(slots=True)
class KeeperStatistics:
    learners_added: int = 0
    promoted: int = 0
    removed: int = 0
    refused: int = 0  # changes the core refused (another one uncommitted, not yet allowed)


class GroupKeeper:
    """The leader's membership loop (see the module docs)."""

    def __init__(
        self,
        server: Any,
        spares: Callable[[], list[str]],
        *,
        voters_target: int = VOTERS_TARGET,
        voter_dead_s: float = VOTER_DEAD_S,
        round_s: float = ROUND_S,
    ) -> None:
        if voters_target < 1 or voter_dead_s <= 0:
            raise GroupConfigError("voters_target must be >= 1 and voter_dead_s > 0")
        self.server = server  # LedgerServer
        self.peer = server.peer
        self.spares = spares  # peer ids of connected server-role peers
        self.voters_target = voters_target
        self.voter_dead_s = voter_dead_s
        self.round_s = round_s
        self.stats = KeeperStatistics()
        self._last_ok: dict[str, float] = {}
        self._pending: LogIndex | None = None  # index of our uncommitted change
        self._term = -1

    async def run(self) -> None:
        while True:
            await trio.sleep(self.round_s)
            status = self.server.driver.status()
            if status.role is not RaftRole.LEADER:
                self._term = -1
                continue
            if status.term != self._term:  # a new term: clocks start afresh
                self._term = status.term
                self._last_ok.clear()
                self._pending = None
            members = [*status.conf.voters, *status.conf.learners]
            await self._probe(members, status.id)
            if self._pending is not None and status.commit < self._pending:
                continue
            self._pending = None
            change = self._next_change(self.server.driver.status())
            if change is not None:
                self._propose(change)

    async def _probe(self, members: list[str], me: str) -> None:
        now = trio.current_time()
        for member in members:
            self._last_ok.setdefault(member, now)
        self._last_ok[me] = now

        async def ping(member: str) -> None:
            try:
                await self.peer.ping(member, timeout=self.round_s * 2)
            except (ColonymeshError, trio.TooSlowError):
                return
            self._last_ok[member] = trio.current_time()

        async with trio.open_nursery() as nursery:
            for member in members:
                if member != me:
                    nursery.start_soon(ping, member)

    def _dead(self, member: str) -> bool:
        seen = self._last_ok.get(member, trio.current_time())
        return trio.current_time() - seen > self.voter_dead_s

    def _next_change(self, status: Any) -> ConfChange | None:
        voters = list(status.conf.voters)
        learners = list(status.conf.learners)
        match = dict(status.progress)
        for learner in learners:
            if self._dead(learner):
                return ConfChange(ConfChangeOp.REMOVE_NODE, NodeId(learner))
            if match.get(learner, 0) >= status.commit:
                return ConfChange(ConfChangeOp.ADD_VOTER, NodeId(learner))
        if learners:
            return None  # let the learner catch up first
        dead = [v for v in voters if v != status.id and self._dead(v)]
        if dead and len(voters) > self.voters_target:
            return ConfChange(ConfChangeOp.REMOVE_NODE, NodeId(dead[0]))
        if dead or len(voters) < self.voters_target:
            spares = [s for s in self.spares() if s not in voters]
            if spares:
                return ConfChange(ConfChangeOp.ADD_LEARNER, NodeId(spares[0]))
        return None

    def _propose(self, change: ConfChange) -> None:
        driver = self.server.driver
        try:
            result = driver.propose_conf_change(change)
        except RaftError as error:
            self.stats.refused += 1
            log.info("membership change %s %s not proposed: %s", change.op.name, change.node, error)
            return
        self._pending = result.index
        match change.op:
            case ConfChangeOp.ADD_LEARNER:
                self.stats.learners_added += 1
            case ConfChangeOp.ADD_VOTER:
                self.stats.promoted += 1
            case ConfChangeOp.REMOVE_NODE:
                self.stats.removed += 1
        log.warning("server group: %s %s (index %d)", change.op.name, change.node, result.index)
