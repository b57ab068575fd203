"""The linearizability checker on hand-made histories, linearizable and not."""

from __future__ import annotations

import math
import random

from colonymesh.simulations.linearizability import KvInput, KvOperation, Operation, check_kv

INF = math.inf


def put(client: int, call: float, ret: float, key: str, value: str) -> KvOperation:
    return Operation(client, call, ret, KvInput("put", key, value), None)


def get(client: int, call: float, ret: float, key: str, out: str | None) -> KvOperation:
    return Operation(client, call, ret, KvInput("get", key), out)


def test_sequential_history_is_linearizable() -> None:
    h = [
        put(0, 0, 1, "x", "a"),
        get(0, 2, 3, "x", "a"),
        put(0, 4, 5, "x", "b"),
        get(0, 6, 7, "x", "b"),
    ]
    assert check_kv(h).ok is True


def test_read_of_missing_key_returns_none() -> None:
    assert check_kv([get(0, 0, 1, "x", None), put(1, 2, 3, "x", "a")]).ok is True
    assert check_kv([put(1, 0, 1, "x", "a"), get(0, 2, 3, "x", None)]).ok is False


def test_stale_read_after_completed_write_is_caught() -> None:
    h = [put(0, 0, 1, "x", "a"), put(0, 2, 3, "x", "b"), get(1, 4, 5, "x", "a")]
    result = check_kv(h)
    assert result.ok is False
    assert any("get x -> a" in line for line in result.failed_partition)


def test_concurrent_write_may_be_seen_or_not() -> None:
    # The read overlaps the write: both outcomes are fine.
    for seen in ("a", None):
        h = [put(0, 0, 10, "x", "a"), get(1, 1, 2, "x", seen)]
        assert check_kv(h).ok is True, seen


def test_reads_must_not_go_back_in_time() -> None:
    # Two reads during one long write: once "a" was read, a later read cannot see the old value.
    h = [
        put(0, 0, 1, "x", "old"),
        put(0, 2, 20, "x", "a"),
        get(1, 3, 4, "x", "a"),
        get(2, 5, 6, "x", "old"),
    ]
    assert check_kv(h).ok is False
    h[3] = get(2, 3.5, 6, "x", "old")  # now the reads overlap: "old" then "a" is possible
    assert check_kv(h).ok is True


def test_value_never_written_is_caught() -> None:
    assert check_kv([put(0, 0, 1, "x", "a"), get(1, 2, 3, "x", "zzz")]).ok is False


def test_unknown_write_may_take_effect_late_or_never() -> None:
    # A write whose client timed out: it may show up much later, or never.
    late = [put(0, 0, INF, "x", "a"), get(1, 50, 51, "x", None), get(1, 60, 61, "x", "a")]
    assert check_kv(late).ok is True
    never = [put(0, 0, INF, "x", "a"), get(1, 50, 51, "x", None)]
    assert check_kv(never).ok is True
    # ... but not before it was invoked.
    early = [get(1, 0, 1, "x", "a"), put(0, 2, INF, "x", "a")]
    assert check_kv(early).ok is False


def test_keys_are_independent_partitions() -> None:
    h = [
        put(0, 0, 1, "x", "a"),
        put(1, 0, 1, "y", "b"),
        get(2, 2, 3, "y", "b"),
        get(2, 4, 5, "x", "a"),
    ]
    result = check_kv(h)
    assert result.ok is True and result.partitions == 2
    h.append(get(3, 6, 7, "y", "a"))
    assert check_kv(h).ok is False


def test_budget_exhaustion_says_unknown_not_wrong() -> None:
    h = [put(i, 0, 100, "x", f"v{i}") for i in range(12)] + [get(99, 101, 102, "x", "nope")]
    assert check_kv(h, steps_max=50).ok is None
    assert check_kv(h).ok is False


def _random_linearizable_history(rng: random.Random, n: int) -> list[KvOperation]:
    """Run ops sequentially at random linearization points inside random intervals."""
    state: dict[str, str | None] = {}
    ops: list[KvOperation] = []
    t = 0.0
    for i in range(n):
        t += rng.random()
        key = rng.choice("xy")
        call = t - rng.random() * 3
        ret = t + rng.random() * 3
        if rng.random() < 0.5:
            state[key] = f"v{i}"
            ops.append(put(i % 4, call, ret, key, f"v{i}"))
        else:
            ops.append(get(i % 4, call, ret, key, state.get(key)))
    return ops


def test_randomised_linearizable_histories_pass_and_corrupted_ones_mostly_fail() -> None:
    rng = random.Random(42)
    failures = 0
    for _ in range(40):
        h = _random_linearizable_history(rng, 30)
        assert check_kv(h).ok is True
        # Corrupt one read to return a value nobody wrote: never linearizable.
        reads = [i for i, op in enumerate(h) if op.input.op == "get"]
        if reads:
            i = rng.choice(reads)
            op = h[i]
            h[i] = get(op.client, op.call, op.ret, op.input.key, "never-written")
            failures += check_kv(h).ok is False
    assert failures >= 30


def test_history_with_return_before_call_is_rejected() -> None:
    try:
        check_kv([put(0, 5, 1, "x", "a")])
    except ValueError:
        return
    raise AssertionError("expected ValueError")
