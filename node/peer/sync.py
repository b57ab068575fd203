"""Revocations spread through the colony: pulled on admission, pushed when learned.

Every presentation says how many revocations its sender holds
(``PresentCertificate.revocations_seen``). When a newly admitted peer holds
more than we do, we ask it (``colony.revocations.want``) and it answers with
its revocations (``colony.revocations``), newest first, at most
:data:`REVOCATIONS_PER_MESSAGE_MAX`. Whenever we learn a revocation we did not
hold — from a file, the API, or a peer — we push it one-way to every
admitted peer; a peer forwards only what was new to it, so a push floods
the connected colony once and stops.

A revocation is trusted only because the colony owner signed it
(:meth:`Membership.add_revocation` checks); who relayed it does not matter.
Applying one wakes the gatekeeper, which cuts the revoked member's
connections at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from colonymesh.node.certs import Membership, Revocation
from colonymesh.node.envelope import message
from colonymesh.node.errors import ColonymeshError
from colonymesh.node.schema import limit

log = logging.getLogger("colonymesh.node.peer")

REVOCATIONS_PER_MESSAGE_MAX = 2048


@message("colony.revocations.want")
@dataclass(frozen=True, slots=True)
class WantRevocations:
    have: int = 0


@message("colony.revocations")
@dataclass(frozen=True, slots=True)
class Revocations:
    records: tuple[Revocation, ...] = field(default=(), metadata=limit(REVOCATIONS_PER_MESSAGE_MAX))


class RevocationBook:
    """The revocation records this peer holds (the membership keeps only serials)."""

    def __init__(self, membership: Membership, initial: Iterable[Revocation] = ()) -> None:
        self._membership = membership
        self._by_serial: dict[int, Revocation] = {}
        self.on_new: Callable[[list[Revocation]], None] | None = None
        self.refused = 0
        self.learned = 0
        self.apply(initial, source="configuration")

    def __len__(self) -> int:
        return len(self._by_serial)

    def apply(self, revocations: Iterable[Revocation], *, source: str) -> list[Revocation]:
        """Apply owner-signed revocations; the ones that were new (others are ignored)."""
        new: list[Revocation] = []
        for revocation in revocations:
            if revocation.serial in self._by_serial:
                continue
            try:
                self._membership.add_revocation(revocation)
            except ColonymeshError as error:
                self.refused += 1
                log.warning("revocation from %s refused: %s", source, error)
                continue
            self._by_serial[revocation.serial] = revocation
            new.append(revocation)
            log.warning(
                "learned revocation of certificate %d (%s) from %s",
                revocation.serial,
                revocation.reason or "no reason given",
                source,
            )
        self.learned += len(new)
        if new and self.on_new is not None:
            self.on_new(new)
        return new

    def newest(self) -> tuple[Revocation, ...]:
        ordered = sorted(self._by_serial.values(), key=lambda r: (-r.revoked_at, r.serial))
        return tuple(ordered[:REVOCATIONS_PER_MESSAGE_MAX])

    def statistics(self) -> dict[str, Any]:
        return {"held": len(self), "learned": self.learned, "refused": self.refused}
