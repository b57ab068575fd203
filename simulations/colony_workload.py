"""The colony scenario's workload: what is submitted when, how long runs take, and latency.

What it owns: :class:`Arrivals` (a Poisson stream of plain specs or diamond
workflows of one function and executor type), :func:`build_workload`
(issue 7's fixed mix: plain specs, diamonds, ~5% failing, ~2% overrunning
maxexectime), :func:`build_arrivals` (the streams merged in time order),
:class:`Workload` (the run times executors draw) and the completion-latency
summary and series read from the world's records (arrival of a submission
to its final state in the applied log).

Determinism: every draw comes from the run's generator, in a fixed order
(streams in config order, then time order); ties sort by stream index.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from colonymesh.node.ledger.commands import SubmitFunction, SubmitWorkflow
from colonymesh.simulations.colony_actors import Submission
from colonymesh.simulations.colony_world import EXECUTOR_TYPE, ColonyWorld

if TYPE_CHECKING:
    from colonymesh.simulations.colony_scenario import ColonyScenarioConfig

__all__ = [
    "Arrivals",
    "Workload",
    "build_arrivals",
    "build_workload",
    "latency_series",
    "latency_summary",
]


@dataclass(frozen=True, slots=True)
class Arrivals:
    """A stream of submissions: plain specs, or diamond workflows of four specs."""

    funcname: str = "ok"
    executor_type: str = EXECUTOR_TYPE
    rate_per_s: float = 1.0  # Poisson arrivals
    run_mean_s: float = 0.5  # mean drawn run time (exponential, below maxexectime)
    fail_fraction: float = 0.0  # share whose executor reports failure
    workflow: bool = False  # a diamond a -> (b, c) -> d instead of one spec
    priority: int = 0


class Workload:
    """Durations by function name; what the executors ask the scenario."""

    def __init__(self, cfg: ColonyScenarioConfig) -> None:
        self.spec_maxexectime_s = cfg.maxexectime_s
        # When an executor kills a run: the spec's maxexectime (a test breaks this seam).
        self.maxexectime_s = float(cfg.maxexectime_s)
        self.run_mean_s = {a.funcname: a.run_mean_s for a in cfg.arrivals}

    def draw_duration(self, rng: random.Random, funcname: str) -> float:
        mean = self.run_mean_s.get(funcname.removeprefix("fail-"))
        if mean is not None:  # an arrivals stream's function: below maxexectime
            return min(rng.expovariate(1.0 / mean), 0.9 * self.spec_maxexectime_s)
        if funcname == "slow":
            return self.spec_maxexectime_s * (1.2 + rng.random())
        if rng.random() < 0.15:  # long runs: an executor cut off mid-run must stop in time
            return 2.0 + 5.0 * rng.random()
        return 0.05 + 1.5 * rng.random() ** 2


def _spec(funcname: str, cfg: ColonyScenarioConfig, **extra: Any) -> dict[str, Any]:
    conditions = extra.pop("conditions", {})
    return {
        "funcname": funcname,
        "conditions": {"executortype": EXECUTOR_TYPE, **conditions},
        "maxexectime": cfg.maxexectime_s,
        # A claim whose answer is lost leaves the process assigned and unrun
        # until maxexectime re-queues it, spending a retry; only the processes
        # meant to overrun have a retry limit, so the others cannot fail so.
        "maxretries": cfg.maxretries if funcname == "slow" else -1,
        **extra,
    }


def build_workload(
    rng: random.Random, cfg: ColonyScenarioConfig, processes: int
) -> list[Submission]:
    """Plain specs and diamond workflows; ~5% of plain specs fail, ~2% overrun maxexectime."""
    subs: list[Submission] = []
    count = 0
    while count < processes:
        roll = rng.random()
        if roll < 0.12 and processes - count >= 4:
            failing = rng.random() < 0.15
            names = ["a", "b", "c", "d"]
            bad = names[rng.randrange(4)] if failing else ""
            deps = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}
            specs = [
                _spec(
                    "fail" if n == bad else "ok",
                    cfg,
                    nodename=n,
                    conditions={"dependencies": deps[n]},
                )
                for n in names
            ]
            text = json.dumps({"colonyname": "", "functionspecs": specs})
            subs.append(
                Submission(SubmitWorkflow(text, rng.randbytes(16)), "fail" if failing else "ok")
            )
            count += 4
        else:
            r = rng.random()
            funcname = "fail" if r < 0.05 else "slow" if r < 0.07 else "ok"
            text = json.dumps(_spec(funcname, cfg, priority=rng.randrange(3)))
            subs.append(
                Submission(
                    SubmitFunction(text, rng.randbytes(16)), "ok" if funcname == "ok" else "fail"
                )
            )
            count += 1
    return subs


def build_arrivals(
    rng: random.Random, cfg: ColonyScenarioConfig, until_s: float
) -> list[Submission]:
    """Poisson arrivals of every stream over ``[0, until_s)``, merged in time order."""
    timed: list[tuple[float, int, Submission]] = []
    for order, stream in enumerate(cfg.arrivals):
        if stream.rate_per_s <= 0.0:
            continue
        t = rng.expovariate(stream.rate_per_s)
        while t < until_s:
            failing = rng.random() < stream.fail_fraction
            extra: dict[str, Any] = {"priority": stream.priority}
            conditions = {"executortype": stream.executor_type}
            if stream.workflow:
                bad = "abcd"[rng.randrange(4)] if failing else ""
                deps = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}
                specs = [
                    _spec(
                        f"fail-{stream.funcname}" if n == bad else stream.funcname,
                        cfg,
                        nodename=n,
                        conditions={**conditions, "dependencies": deps[n]},
                        **extra,
                    )
                    for n in "abcd"
                ]
                body: SubmitFunction | SubmitWorkflow = SubmitWorkflow(
                    json.dumps({"colonyname": "", "functionspecs": specs}), rng.randbytes(16)
                )
            else:
                name = f"fail-{stream.funcname}" if failing else stream.funcname
                text = json.dumps(_spec(name, cfg, conditions=conditions, **extra))
                body = SubmitFunction(text, rng.randbytes(16))
            timed.append((t, order, Submission(body, "fail" if failing else "ok", t)))
            t += rng.expovariate(stream.rate_per_s)
    timed.sort(key=lambda x: (x[0], x[1]))
    return [sub for _, _, sub in timed]


def _quantile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def _latencies(world: ColonyWorld) -> list[tuple[float, float]]:
    """(finished at, latency from arrival) of every acknowledged submission that ended."""
    out = []
    for sid, arrived in world.arrived_at.items():
        ended = world.finished_at.get(sid)
        if ended is not None:
            out.append((ended, max(0.0, ended - arrived)))
    out.sort()
    return out


def latency_summary(world: ColonyWorld) -> dict[str, float]:
    values = sorted(lat for _, lat in _latencies(world))
    if not values:
        return {}
    return {
        "median": round(_quantile(values, 0.5), 6),
        "p90": round(_quantile(values, 0.9), 6),
        "p99": round(_quantile(values, 0.99), 6),
        "max": round(values[-1], 6),
    }


def latency_series(world: ColonyWorld, window_s: float) -> dict[str, list[list[float]]]:
    """Completion latency (arrival to final state) by window of finish time: p50 and p99."""
    p50: list[list[float]] = []
    p99: list[list[float]] = []
    window: list[float] = []
    edge = window_s
    for ended, latency in _latencies(world):
        while ended >= edge:
            if window:
                window.sort()
                p50.append([round(edge, 6), round(_quantile(window, 0.5), 6)])
                p99.append([round(edge, 6), round(_quantile(window, 0.99), 6)])
                window = []
            edge += window_s
        window.append(latency)
    if window:
        window.sort()
        p50.append([round(edge, 6), round(_quantile(window, 0.5), 6)])
        p99.append([round(edge, 6), round(_quantile(window, 0.99), 6)])
    return {"completion_latency_p50_s": p50, "completion_latency_p99_s": p99}
