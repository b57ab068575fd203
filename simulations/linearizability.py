"""A linearizability checker for client histories (Wing & Gong search, with Lowe's memoization).

What it owns: deciding whether a concurrent history of operations -- each
with an invocation time, a completion time (``math.inf`` when the client
never learned the outcome) and its input and output -- can be explained by
some sequential order of a :class:`Model` that respects real time: if A
completed before B was invoked, A comes first.

How it works (the algorithm Porcupine implements): the history becomes a
doubly linked list of call and return events sorted by time, calls before
returns at equal times (equal times count as concurrent, so ties never make
a correct history fail). A depth-first search tries to *linearize* the
first pending call whose model step accepts its output: the call and its
return are unlinked and the search restarts from the head. Meeting a return
event whose call is not yet linearized means the current order cannot work:
backtrack, re-link the last linearized op and try the next candidate. A
cache of (set of linearized ops as a bit mask, model state) pairs already
explored prunes the search from exponential to practical. Histories are
first partitioned (for a key-value store: per key), since a history is
linearizable iff each independent part is (P-compositionality).

Limits: the search is NP-complete in general; ``steps_max`` bounds the work
per partition and an exhausted budget gives the answer ``None`` (unknown),
never a false verdict.

Operations whose outcome is unknown: a write that may or may not have taken
effect gets ``ret = math.inf``; it may be linearized anywhere after its
call, and "at the very end" is the same as "never". A read with unknown
outcome constrains nothing and is dropped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

S = TypeVar("S", bound=Hashable)
I = TypeVar("I")  # noqa: E741 - the conventional name for a model's input type
O = TypeVar("O")  # noqa: E741


@dataclass(frozen=True, slots=True)
class Operation(Generic[I, O]):
    """One client operation; ``ret`` is ``math.inf`` if the client never learned the outcome."""

    client: int
    call: float
    ret: float
    input: I
    output: O


@dataclass(frozen=True, slots=True)
class Model(Generic[S, I, O]):
    """A sequential specification: ``step(state, input, output) -> (accepted, next_state)``."""

    init: Callable[[], S]
    step: Callable[[S, I, O], tuple[bool, S]]
    partition: Callable[[Sequence[Operation[I, O]]], list[list[Operation[I, O]]]]
    describe: Callable[[Operation[I, O]], str]


@dataclass(frozen=True, slots=True)
class CheckResult:
    """``ok`` is True (linearizable), False (not), or None (search budget exhausted)."""

    ok: bool | None
    partitions: int
    steps: int
    failed_partition: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "partitions": self.partitions,
            "steps": self.steps,
            "failed_partition": list(self.failed_partition),
        }


class _Event:
    __slots__ = ("is_call", "match", "next", "op_id", "prev")

    def __init__(self, op_id: int, is_call: bool) -> None:
        self.op_id = op_id
        self.is_call = is_call
        self.match: _Event | None = None  # call -> its return
        self.prev: _Event | None = None
        self.next: _Event | None = None


def _build_list(ops: Sequence[Operation[I, O]]) -> _Event:
    keyed: list[tuple[float, int, int, _Event]] = []
    for op_id, op in enumerate(ops):
        if op.ret < op.call:
            raise ValueError(f"operation {op_id} returns before it is called")
        call = _Event(op_id, True)
        ret = _Event(op_id, False)
        call.match = ret
        keyed.append((op.call, 0, op_id, call))
        keyed.append((op.ret, 1, op_id, ret))
    keyed.sort(key=lambda k: (k[0], k[1], k[2]))
    head = _Event(-1, False)
    prev = head
    for _, _, _, event in keyed:
        prev.next = event
        event.prev = prev
        prev = event
    return head


def _lift(call: _Event) -> None:
    """Unlink a call and its return from the list."""
    ret = call.match
    if call.prev is None or ret is None or ret.prev is None:
        raise RuntimeError("lifting an event that is not linked")
    call.prev.next = call.next
    if call.next is not None:
        call.next.prev = call.prev
    ret.prev.next = ret.next
    if ret.next is not None:
        ret.next.prev = ret.prev


def _unlift(call: _Event) -> None:
    """Re-link a call and its return exactly where they were (reverse order of lifting)."""
    ret = call.match
    if call.prev is None or ret is None or ret.prev is None:
        raise RuntimeError("unlifting an event that was not linked")
    ret.prev.next = ret
    if ret.next is not None:
        ret.next.prev = ret
    call.prev.next = call
    if call.next is not None:
        call.next.prev = call


def _check_partition(
    model: Model[S, I, O], ops: Sequence[Operation[I, O]], steps_max: int
) -> tuple[bool | None, int]:
    head = _build_list(ops)
    state = model.init()
    linearized = 0
    cache: set[tuple[int, S]] = set()
    calls: list[tuple[_Event, S]] = []
    entry = head.next
    steps = 0
    while head.next is not None:
        steps += 1
        if steps > steps_max:
            return None, steps
        if entry is None:
            raise RuntimeError("ran off the end of the history")
        if entry.is_call:
            op = ops[entry.op_id]
            accepted, new_state = model.step(state, op.input, op.output)
            if accepted:
                new_linearized = linearized | (1 << entry.op_id)
                key = (new_linearized, new_state)
                if key not in cache:
                    cache.add(key)
                    calls.append((entry, state))
                    state = new_state
                    linearized = new_linearized
                    _lift(entry)
                    entry = head.next
                    continue
            entry = entry.next
        else:
            # A return whose call we have not linearized: this order fails here.
            if not calls:
                return False, steps
            entry, state = calls.pop()
            linearized &= ~(1 << entry.op_id)
            _unlift(entry)
            entry = entry.next
    return True, steps


def check(
    model: Model[S, I, O], history: Sequence[Operation[I, O]], *, steps_max: int = 1_000_000
) -> CheckResult:
    """Is ``history`` linearizable with respect to ``model``?"""
    parts = model.partition(history)
    total = 0
    unknown = False
    for part in parts:
        ok, steps = _check_partition(model, part, steps_max)
        total += steps
        if ok is False:
            return CheckResult(False, len(parts), total, tuple(model.describe(op) for op in part))
        if ok is None:
            unknown = True
    return CheckResult(None if unknown else True, len(parts), total)


# -- a key-value register model -------------------------------------------


@dataclass(frozen=True, slots=True)
class KvInput:
    """``put`` writes ``value`` to ``key``; ``get`` reads ``key``."""

    op: str  # "put" | "get"
    key: str
    value: str | None = None


KvOperation = Operation[KvInput, str | None]


def _kv_step(state: str | None, inp: KvInput, out: str | None) -> tuple[bool, str | None]:
    if inp.op == "put":
        return True, inp.value
    if inp.op == "get":
        return out == state, state
    raise ValueError(f"unknown kv operation {inp.op!r}")


def _kv_partition(history: Sequence[KvOperation]) -> list[list[KvOperation]]:
    by_key: dict[str, list[KvOperation]] = {}
    for op in history:
        if op.input.op == "get" and math.isinf(op.ret):
            continue  # a read nobody saw constrains nothing
        by_key.setdefault(op.input.key, []).append(op)
    return [by_key[k] for k in sorted(by_key)]


def _kv_describe(op: KvOperation) -> str:
    ret = "?" if math.isinf(op.ret) else f"{op.ret:.6f}"
    if op.input.op == "put":
        return f"c{op.client} [{op.call:.6f}, {ret}] put {op.input.key}={op.input.value}"
    return f"c{op.client} [{op.call:.6f}, {ret}] get {op.input.key} -> {op.output}"


def _kv_init() -> str | None:
    return None


KV_MODEL: Model[str | None, KvInput, str | None] = Model(
    init=_kv_init, step=_kv_step, partition=_kv_partition, describe=_kv_describe
)


def check_kv(history: Sequence[KvOperation], *, steps_max: int = 1_000_000) -> CheckResult:
    """Check a key-value history (keys start absent: a read of a missing key returns None)."""
    return check(KV_MODEL, history, steps_max=steps_max)
