"""The leader's side of crons and generators: propose firings, answer reads.

While its server leads, :class:`TriggerScheduler` watches its replica of the
ledger and, for every cron tick and generator run the ledger would accept
now (``CronBook.due``, ``GeneratorBook.due``), proposes the firing command
(``FireCron(id, due_ms)``, ``FireGenerator(id, run)``) through Raft. The
ledger's rules make each firing apply at most once, so this loop needs no
coordination with other servers: after a leader change both the old and the
new leader may propose the same tick, and one of them is refused.

Ledger time moves with the leader's ticks; when this server's clock passes
the next cron tick or generator timeout before its regular tick does, it
proposes a ``Tick`` itself, so a firing applies milliseconds after its due
time rather than up to a tick interval late.

It also answers ``colony.list_crons`` and ``colony.list_generators`` from
this replica, with the documents ``crons.cron_view`` and
``generators.generator_view`` make (what ``cron ls|get`` and ``generator
ls|get`` print with ``--json``).

Contract with the server: construct it with the server's sealer (so the
server's commands keep one sequence of numbers) and its ``propose_frame``;
run :meth:`run` in the server's nursery.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from colonymesh.node.colony.protocol import Proposed, View
from colonymesh.node.envelope import EnvelopeSealer, message
from colonymesh.node.ledger.commands import FireCron, FireGenerator, Tick
from colonymesh.node.ledger.crons import cron_view
from colonymesh.node.ledger.generators import generator_view
from colonymesh.node.ledger.ledger import Ledger
from colonymesh.node.peer.messaging import Incoming
from colonymesh.node.peer.peer import Peer
from colonymesh.node.schema import limit

log = logging.getLogger("colonymesh.node.colony")

IDLE_WAKE_S = 1.0  # re-check even when nothing was applied (leadership may have changed)
MIN_GAP_S = 0.02  # between two scans of the due crons and generators
LIST_MAX = 10_000
RECENT_MAX = 64


@message("colony.list_crons")
@dataclass(frozen=True, slots=True)
class ListCrons:
    """Every cron, or only the one with this id or name."""

    ref: str = field(default="", metadata=limit(128))


@message("colony.list_generators")
@dataclass(frozen=True, slots=True)
class ListGenerators:
    ref: str = field(default="", metadata=limit(128))


class TriggerScheduler:
    def __init__(
        self,
        peer: Peer,
        ledger: Ledger,
        changed: Callable[[], trio.Event],
        is_leader: Callable[[], bool],
        sealer: EnvelopeSealer,
        propose_frame: Callable[[bytes], Awaitable[Proposed]],
    ) -> None:
        self.ledger = ledger
        self._changed = changed
        self._is_leader = is_leader
        self._sealer = sealer
        self._propose_frame = propose_frame
        # Firings the ledger refused: not proposed again (the rules said no for good).
        self._refused: set[tuple[str, int]] = set()
        self.fired = 0
        self.recent: deque[FireCron | FireGenerator] = deque(maxlen=RECENT_MAX)  # applied firings
        peer.on("colony.list_crons", self._list_crons)
        peer.on("colony.list_generators", self._list_generators)

    async def run(self) -> None:
        while True:
            changed = self._changed()
            if self._is_leader():
                await self._fire_due()
            # Under load entries apply thousands of times a second; a scan per
            # MIN_GAP_S is plenty (ledger time moves by ticks 0.5 s apart).
            await trio.sleep(MIN_GAP_S)
            with trio.move_on_after(self._sleep_s()):
                await changed.wait()

    def _next_due_ms(self) -> int | None:
        """The earliest cron tick or generator timeout still ahead of ledger time."""
        ledger = self.ledger
        ahead = [
            c.next_due_ms for c in ledger.crons.crons.values() if c.next_due_ms > ledger.now_ms
        ]
        ahead += [
            deadline
            for g in ledger.generators.generators.values()
            if (deadline := g.deadline_ms()) is not None and deadline > ledger.now_ms
        ]
        return min(ahead, default=None)

    def _sleep_s(self) -> float:
        due = self._next_due_ms()
        if due is None:
            return IDLE_WAKE_S
        return min(IDLE_WAKE_S, max(0.0, due / 1000 - time.time()))

    async def _fire_due(self) -> None:
        ledger = self.ledger
        due = self._next_due_ms()
        now = time.time()
        if due is not None and now * 1000 >= due:
            # Our clock passed a tick the ledger's has not reached: tick now
            # rather than wait up to a tick interval for the regular one.
            await self._propose_frame(self._sealer.seal(Tick(int(now * 1000)), now))
        bodies: list[FireCron | FireGenerator] = [
            FireCron(cron_id, due) for cron_id, due in ledger.crons.due(ledger)
        ]
        bodies += [FireGenerator(gid, run) for gid, run in ledger.generators.due(ledger.now_ms)]
        wanted = {_key(body) for body in bodies}
        self._refused &= wanted  # forget refusals of firings that are no longer due
        for body in bodies:
            if _key(body) in self._refused or not self._is_leader():
                continue
            now = time.time()
            answer = await self._propose_frame(self._sealer.seal(body, now))
            if answer.applied:
                self.fired += 1
                self.recent.append(body)
                log.info("fired %s -> workflow %s", _describe(body), answer.subject or "(none)")
            elif not answer.not_leader and not answer.retry:
                self._refused.add(_key(body))
                log.info("firing %s refused: %s", _describe(body), answer.reason)

    async def _list_crons(self, incoming: Incoming) -> View:
        body: ListCrons = incoming.body
        crons = self.ledger.crons.crons.values()
        views = [
            cron_view(cron, self.ledger)
            for cron in crons
            if not body.ref or body.ref in (cron.id, cron.name)
        ]
        return _answer(body.ref, views)

    async def _list_generators(self, incoming: Incoming) -> View:
        body: ListGenerators = incoming.body
        generators = self.ledger.generators.generators.values()
        views = [
            generator_view(generator, self.ledger)
            for generator in generators
            if not body.ref or body.ref in (generator.id, generator.name)
        ]
        return _answer(body.ref, views)


def _answer(ref: str, views: list[dict[str, Any]]) -> View:
    if ref and not views:
        return View(False)
    return View(True, json.dumps(views[:LIST_MAX]))


def _key(body: FireCron | FireGenerator) -> tuple[str, int]:
    if isinstance(body, FireCron):
        return body.cron_id, body.due_ms
    return body.generator_id, body.run


def _describe(body: FireCron | FireGenerator) -> str:
    if isinstance(body, FireCron):
        return f"cron {body.cron_id[:12]} tick {body.due_ms}"
    return f"generator {body.generator_id[:12]} run {body.run}"
