"""What members ask the colony's server peers, and what they answer.

Commands travel as the author's own sealed envelope frame inside
:class:`Propose`, so the leader forwards exactly what the author signed into
the Raft log. Views of processes and the colony are JSON text: the same
documents the CLI prints with ``--json`` and the SDK returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from colonymesh.node.envelope import message
from colonymesh.node.schema import limit

FRAME_BYTES_MAX = 4 * 1024 * 1024
VIEW_BYTES_MAX = 16 * 1024 * 1024
ID_MAX = 128


@message("colony.propose")
@dataclass(frozen=True, slots=True)
class Propose:
    command: bytes = field(metadata=limit(FRAME_BYTES_MAX))


@message("colony.proposed")
@dataclass(frozen=True, slots=True)
class Proposed:
    """The outcome of a proposal, or where the leader is."""

    applied: bool
    reason: str = field(default="", metadata=limit(64 * 1024))
    subject: str = field(default="", metadata=limit(1024))
    not_leader: bool = False
    leader_hint: str = field(default="", metadata=limit(256))
    # Where the hinted leader listens, so a member that knows only this server can reach it.
    leader_addrs: tuple[str, ...] = field(default=(), metadata=limit(8))
    # Not committed (the leader lost its term, or the commit was slow): the
    # outcome is unknown; re-send the same frame (the replay window dedupes).
    retry: bool = False
    # For an applied claim: the claimed process's view, sparing the executor a read.
    view_json: str = field(default="", metadata=limit(VIEW_BYTES_MAX))


@message("colony.claim_work")
@dataclass(frozen=True, slots=True)
class ClaimWork:
    """An executor's sealed claim-any, parked at the leader until it may win.

    The leader holds ``claim`` (it does not enter the log) until a ready
    process this executor matches is not already spoken for by claims in
    flight, then proposes it and answers like ``colony.propose``; after
    ``wait_s`` with nothing to run it answers "no waiting process" without
    proposing. ``report``: the slot's previous outcome (a sealed ``Close`` or
    ``Fail``), proposed ahead of the claim so both share one Raft batch and
    one round trip.
    """

    claim: bytes = field(metadata=limit(FRAME_BYTES_MAX))
    wait_s: float = 10.0
    report: bytes = field(default=b"", metadata=limit(FRAME_BYTES_MAX))


@message("colony.claim_answer")
@dataclass(frozen=True, slots=True)
class ClaimAnswer:
    """The parked claim's outcome, and the carried report's (when one was sent)."""

    claim: Proposed
    report: Proposed | None = None


@message("colony.get_process")
@dataclass(frozen=True, slots=True)
class GetProcess:
    process_id: str = field(metadata=limit(ID_MAX))
    wait_final_s: float = 0.0  # long-poll: answer once final, or after this long


@message("colony.get_workflow")
@dataclass(frozen=True, slots=True)
class GetWorkflow:
    workflow_id: str = field(metadata=limit(ID_MAX))
    wait_final_s: float = 0.0


@message("colony.list_processes")
@dataclass(frozen=True, slots=True)
class ListProcesses:
    state: str = field(default="", metadata=limit(16))
    executor_type: str = field(default="", metadata=limit(128))
    limit: int = 100


@message("colony.status")
@dataclass(frozen=True, slots=True)
class GetStatus:
    pass


@message("colony.wait_work")
@dataclass(frozen=True, slots=True)
class WaitWork:
    """An executor's long-poll: answer when a process it might run is ready (or on timeout)."""

    executor_type: str = field(metadata=limit(128))
    wait_s: float = 5.0


@message("colony.fs_query")
@dataclass(frozen=True, slots=True)
class FsQuery:
    """A read of the meta-filesystem's metadata (``colonymesh.node.colony.fsviews``).

    ``op``: ``ls`` (files under ``label``), ``revisions`` (of file ``name``
    under ``label``), ``labels`` (under ``label``), ``snapshots``,
    ``snapshot`` (``name`` is its id or name), ``refs`` (every CID kept).
    """

    op: str = field(metadata=limit(16))
    label: str = field(default="", metadata=limit(1024))
    name: str = field(default="", metadata=limit(1024))


@message("colony.view")
@dataclass(frozen=True, slots=True)
class View:
    """A JSON document answering a query; ``found`` is False for an unknown id."""

    found: bool
    json: str = field(default="", metadata=limit(VIEW_BYTES_MAX))


@message("colony.heartbeat")
@dataclass(frozen=True, slots=True)
class Heartbeat:
    """An executor renewing its liveness lease with the leader (see ``worker.py``)."""


@message("colony.heartbeat_ack")
@dataclass(frozen=True, slots=True)
class HeartbeatAck:
    """The leader heard the heartbeat (``leader``), or where the leader is.

    A leader tells its timing so the executor can keep its lease strictly
    inside it: ``stale_s`` (it declares an executor silent this long lost; 0:
    never) and ``election_timeout_s`` (bounds how long a deposed leader may
    still answer after a new one was elected).
    """

    leader: bool
    term: int = 0
    stale_s: float = 0.0
    election_timeout_s: float = 0.0
    leader_hint: str = field(default="", metadata=limit(256))
    leader_addrs: tuple[str, ...] = field(default=(), metadata=limit(8))
