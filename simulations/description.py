"""Describe a colony to simulate, in Python or TOML, and run it: the public simulation API.

What it owns: :class:`ColonyDescription` (servers, submitters, executors by
type with their hardware and location, locations with a latency model
between them, loss, executor churn, partitions over time, a workload of
specs and workflows with arrival rates, the simulated duration),
:func:`load_description` / :func:`parse_description` (TOML, every error
names the field it is about), and :func:`simulate_colony`, which runs the
``colony`` scenario -- the real Raft core and the real ledger on the
servers -- for one seed and returns its JSON-able summary.

How it maps onto the scenario: the description becomes a
:class:`~colonymesh.simulations.colony_scenario.ColonyScenarioConfig`; the
run is a function of (description, seed), so the same pair gives
byte-identical results (wall-clock keys apart).

Example (see ``docs/simulate-colony.toml``)::

    from colonymesh.simulations.description import (
        ColonyDescription, ExecutorGroup, WorkloadStream, simulate_colony)
    colony = ColonyDescription(
        executors=(ExecutorGroup("cpu", 200), ExecutorGroup("gpu", 20, gpus=1)),
        workload=(WorkloadStream("train", executor_type="gpu", rate_per_s=0.5),),
        duration_s=120)
    summary = simulate_colony(colony, seed=1)
"""

from __future__ import annotations

import time
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from colonymesh.simulations.colony_scenario import (
    Arrivals,
    ColonyScenarioConfig,
    run,
)
from colonymesh.simulations.runner import WALL_CLOCK_KEYS

__all__ = [
    "ChurnSpec",
    "ColonyDescription",
    "DescriptionError",
    "ExecutorGroup",
    "LocationSpec",
    "PartitionSpec",
    "WorkloadStream",
    "load_description",
    "parse_description",
    "simulate_colony",
]

_PEERS_MAX = 100_000
_GiB = 2**30


class DescriptionError(ValueError):
    """A colony description is invalid; the message names the field (e.g. ``executors[1].count``)."""


@dataclass(frozen=True, slots=True)
class LocationSpec:
    """A place peers sit in; ``latency_ms`` gives the one-way delay to other locations."""

    name: str
    latency_ms: dict[str, float] = field(default_factory=dict)  # other location -> ms
    local_latency_ms: float = 1.0  # between two peers of this location


@dataclass(frozen=True, slots=True)
class ExecutorGroup:
    """``count`` executors of one type, with the hardware their certificates declare."""

    executor_type: str
    count: int
    cpu_millicores: int = 4000
    mem_gib: float = 8.0
    gpus: int = 0
    location: str = ""  # "" : the first location


@dataclass(frozen=True, slots=True)
class WorkloadStream:
    """Submissions of one function (or diamond workflows of it) arriving at a Poisson rate."""

    funcname: str
    executor_type: str = ""  # "" : the first executor group's type
    rate_per_s: float = 1.0
    run_mean_s: float = 0.5
    fail_fraction: float = 0.0
    workflow: bool = False
    priority: int = 0


@dataclass(frozen=True, slots=True)
class ChurnSpec:
    """Executor faults during the run (0 turns one off); ``None`` fields are drawn from the seed."""

    crash_interval_s: float | None = None  # mean seconds between executor crashes
    restart_fraction: float | None = None  # share of crashed executors that come back
    cut_interval_s: float | None = None  # mean seconds between cutting an executor off
    cut_mean_s: float | None = None  # how long a cut lasts, on average


@dataclass(frozen=True, slots=True)
class PartitionSpec:
    """From ``at_s`` for ``duration_s``, the listed locations are cut off from the rest."""

    at_s: float
    duration_s: float
    locations: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ColonyDescription:
    """A colony to simulate; every peer count and rate is explicit."""

    servers: int = 3
    submitters: int = 1
    executors: tuple[ExecutorGroup, ...] = (ExecutorGroup("sim", 20),)
    locations: tuple[LocationSpec, ...] = ()
    server_location: str = ""
    submitter_location: str = ""
    jitter_ms: float | None = None  # None: drawn from the seed
    loss: float | None = None  # per message; None: drawn from the seed
    server_faults: bool = True  # drawn server crashes, torn writes, partitions, slow nodes
    churn: ChurnSpec = ChurnSpec()
    partitions: tuple[PartitionSpec, ...] = ()
    workload: tuple[WorkloadStream, ...] = (WorkloadStream("ok"),)
    duration_s: float = 60.0  # the safety phase (faults on); then a heal phase
    heal_bound_s: float = 120.0
    maxexectime_s: int = 8

    @property
    def peers(self) -> int:
        return self.servers + self.submitters + sum(g.count for g in self.executors)

    def validate(self) -> None:
        """Raise :class:`DescriptionError` naming the first bad field."""
        _check(self.servers in (1, 3, 5, 7), "servers", "must be 1, 3, 5 or 7")
        _check(self.submitters >= 1, "submitters", "must be at least 1")
        _check(bool(self.executors), "executors", "needs at least one group")
        names = [loc.name for loc in self.locations]
        _check(len(set(names)) == len(names), "locations", "names must be unique")
        for i, loc in enumerate(self.locations):
            _check(bool(loc.name), f"locations[{i}].name", "must not be empty")
            _check(loc.local_latency_ms >= 0, f"locations[{i}].local_latency_ms", "must be >= 0")
            for other, ms in loc.latency_ms.items():
                _check(other in names, f"locations[{i}].latency_ms.{other}", "unknown location")
                _check(ms >= 0, f"locations[{i}].latency_ms.{other}", "must be >= 0")
        for key in ("server_location", "submitter_location"):
            value = getattr(self, key)
            _check(not value or value in names, key, f"unknown location {value!r}")
        types = []
        for i, g in enumerate(self.executors):
            where = f"executors[{i}]"
            _check(bool(g.executor_type), f"{where}.executor_type", "must not be empty")
            _check(g.count >= 1, f"{where}.count", "must be at least 1")
            _check(g.cpu_millicores >= 0, f"{where}.cpu_millicores", "must be >= 0")
            _check(g.mem_gib >= 0, f"{where}.mem_gib", "must be >= 0")
            _check(g.gpus >= 0, f"{where}.gpus", "must be >= 0")
            _check(not g.location or g.location in names, f"{where}.location", "unknown location")
            types.append(g.executor_type)
        _check(
            5 <= self.peers <= _PEERS_MAX,
            "executors",
            f"the colony must have 5 to {_PEERS_MAX} peers",
        )
        _check(bool(self.workload), "workload", "needs at least one stream")
        for i, w in enumerate(self.workload):
            where = f"workload[{i}]"
            _check(bool(w.funcname), f"{where}.funcname", "must not be empty")
            _check(not w.funcname.startswith("fail-"), f"{where}.funcname", "fail- is reserved")
            _check(
                not w.executor_type or w.executor_type in types,
                f"{where}.executor_type",
                f"no executor group of type {w.executor_type!r}",
            )
            _check(w.rate_per_s >= 0, f"{where}.rate_per_s", "must be >= 0")
            _check(w.run_mean_s > 0, f"{where}.run_mean_s", "must be > 0")
            _check(0 <= w.fail_fraction <= 1, f"{where}.fail_fraction", "must be within 0..1")
        _check(self.jitter_ms is None or self.jitter_ms >= 0, "jitter_ms", "must be >= 0")
        _check(self.loss is None or 0 <= self.loss < 0.5, "loss", "must be within 0..0.5")
        c = self.churn
        for key in ("crash_interval_s", "cut_interval_s", "cut_mean_s"):
            value = getattr(c, key)
            _check(value is None or value >= 0, f"churn.{key}", "must be >= 0")
        _check(
            c.restart_fraction is None or 0 <= c.restart_fraction <= 1,
            "churn.restart_fraction",
            "must be within 0..1",
        )
        for i, p in enumerate(self.partitions):
            where = f"partitions[{i}]"
            _check(p.at_s >= 0, f"{where}.at_s", "must be >= 0")
            _check(p.duration_s > 0, f"{where}.duration_s", "must be > 0")
            _check(bool(p.locations), f"{where}.locations", "must name at least one location")
            for name in p.locations:
                _check(name in names, f"{where}.locations", f"unknown location {name!r}")
        _check(self.duration_s > 0, "duration_s", "must be > 0")
        _check(self.heal_bound_s > 0, "heal_bound_s", "must be > 0")
        _check(self.maxexectime_s >= 1, "maxexectime_s", "must be at least 1")

    def to_config(self) -> ColonyScenarioConfig:
        """The scenario configuration this description stands for (validated first)."""
        self.validate()
        names = [loc.name for loc in self.locations] or [""]
        index = {name: i for i, name in enumerate(names)}

        def at(name: str) -> int:
            return index.get(name, 0)

        matrix: tuple[tuple[float, ...], ...] = ()
        if self.locations:
            rows = []
            for a in self.locations:
                row = []
                for b in self.locations:
                    ms = a.local_latency_ms if a.name == b.name else _between(a, b)
                    row.append(ms / 1000.0)
                rows.append(tuple(row))
            matrix = tuple(rows)
        node_locations = [at(self.server_location)] * self.servers
        node_locations += [at(self.submitter_location)] * self.submitters
        for g in self.executors:
            node_locations += [at(g.location)] * g.count
        first_type = self.executors[0].executor_type
        c = self.churn
        return ColonyScenarioConfig(
            peers=self.peers,
            servers=self.servers,
            submitters=self.submitters,
            safety_s=self.duration_s,
            heal_bound_s=self.heal_bound_s,
            maxexectime_s=self.maxexectime_s,
            snapshot_every=4000 if self.peers > 200 else 400,
            events_max=200_000_000,
            executor_groups=tuple((g.executor_type, g.count) for g in self.executors),
            executor_hardware=tuple(
                (g.cpu_millicores, int(g.mem_gib * _GiB), g.gpus) for g in self.executors
            ),
            arrivals=tuple(
                Arrivals(
                    w.funcname,
                    w.executor_type or first_type,
                    w.rate_per_s,
                    w.run_mean_s,
                    w.fail_fraction,
                    w.workflow,
                    w.priority,
                )
                for w in self.workload
            ),
            locations=tuple(names) if self.locations else (),
            location_delay_s=matrix,
            node_locations=tuple(node_locations) if self.locations else (),
            jitter_s=None if self.jitter_ms is None else self.jitter_ms / 1000.0,
            loss=self.loss,
            server_faults=self.server_faults,
            executor_crash_interval_s=c.crash_interval_s,
            executor_restart_fraction=c.restart_fraction,
            executor_cut_interval_s=c.cut_interval_s,
            executor_cut_mean_s=c.cut_mean_s,
            partitions=tuple(
                (p.at_s, p.duration_s, tuple(index[n] for n in p.locations))
                for p in self.partitions
            ),
        )


def _between(a: LocationSpec, b: LocationSpec) -> float:
    """One-way delay between two locations: as either names it, else 50 ms."""
    if b.name in a.latency_ms:
        return a.latency_ms[b.name]
    return b.latency_ms.get(a.name, 50.0)


def _check(ok: bool, where: str, message: str) -> None:
    if not ok:
        raise DescriptionError(f"{where}: {message}")


# --- TOML -------------------------------------------------------------------------


def load_description(path: Path) -> ColonyDescription:
    """Read a colony description from a TOML file (errors name the file and the field)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise DescriptionError(f"{path}: {error.strerror or error}") from None
    try:
        return parse_description(text)
    except DescriptionError as error:
        raise DescriptionError(f"{path}: {error}") from None


def parse_description(text: str) -> ColonyDescription:
    """Parse TOML text into a validated :class:`ColonyDescription`."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise DescriptionError(f"not valid TOML: {error}") from None
    colony = _table(doc, "", "colony", required=False)
    top = {k: v for k, v in doc.items() if k != "colony"}
    if colony and top:
        raise DescriptionError("put every key under [colony] or none of them")
    data = colony or top
    kwargs: dict[str, Any] = {}
    simple = {
        "servers": int,
        "submitters": int,
        "server_location": str,
        "submitter_location": str,
        "jitter_ms": float,
        "loss": float,
        "server_faults": bool,
        "duration_s": float,
        "heal_bound_s": float,
        "maxexectime_s": int,
    }
    nested = {"executors", "locations", "churn", "partitions", "workload"}
    for key, value in data.items():
        if key in simple:
            kwargs[key] = _value(value, simple[key], key)
        elif key not in nested:
            raise DescriptionError(f"{key}: unknown field (known: {', '.join(_known())})")
    if "executors" in data:
        kwargs["executors"] = tuple(
            _record(ExecutorGroup, item, f"executors[{i}]")
            for i, item in enumerate(_array(data, "executors"))
        )
    if "workload" in data:
        kwargs["workload"] = tuple(
            _record(WorkloadStream, item, f"workload[{i}]")
            for i, item in enumerate(_array(data, "workload"))
        )
    if "locations" in data:
        kwargs["locations"] = tuple(
            _record(LocationSpec, item, f"locations[{i}]")
            for i, item in enumerate(_array(data, "locations"))
        )
    if "partitions" in data:
        kwargs["partitions"] = tuple(
            _record(PartitionSpec, item, f"partitions[{i}]")
            for i, item in enumerate(_array(data, "partitions"))
        )
    if "churn" in data:
        kwargs["churn"] = _record(ChurnSpec, _table(data, "", "churn"), "churn")
    description = ColonyDescription(**kwargs)
    description.validate()
    return description


def _known() -> list[str]:
    return [f.name for f in fields(ColonyDescription)]


def _table(data: dict[str, Any], where: str, key: str, *, required: bool = True) -> dict[str, Any]:
    value = data.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise DescriptionError(f"{where}{key}: must be a table")
    return value


def _array(data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = data[key]
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise DescriptionError(f"{key}: must be an array of tables ([[{key}]])")
    return value


_FIELD_TYPES: dict[type, dict[str, Any]] = {
    ExecutorGroup: {
        "executor_type": str,
        "count": int,
        "cpu_millicores": int,
        "mem_gib": float,
        "gpus": int,
        "location": str,
    },
    WorkloadStream: {
        "funcname": str,
        "executor_type": str,
        "rate_per_s": float,
        "run_mean_s": float,
        "fail_fraction": float,
        "workflow": bool,
        "priority": int,
    },
    LocationSpec: {"name": str, "latency_ms": dict, "local_latency_ms": float},
    PartitionSpec: {"at_s": float, "duration_s": float, "locations": tuple},
    ChurnSpec: {
        "crash_interval_s": float,
        "restart_fraction": float,
        "cut_interval_s": float,
        "cut_mean_s": float,
    },
}


def _record(cls: type[Any], item: dict[str, Any], where: str) -> Any:
    types = _FIELD_TYPES[cls]
    kwargs: dict[str, Any] = {}
    for key, value in item.items():
        kind = types.get(key)
        if kind is None:
            raise DescriptionError(f"{where}.{key}: unknown field (known: {', '.join(types)})")
        kwargs[key] = _value(value, kind, f"{where}.{key}")
    missing = [
        f.name
        for f in fields(cls)
        if f.name not in kwargs and f.default is f.default_factory  # both MISSING: a required field
    ]
    if missing:
        raise DescriptionError(f"{where}.{missing[0]}: required")
    return cls(**kwargs)


def _value(value: Any, kind: Any, where: str) -> Any:
    if kind is bool:
        if not isinstance(value, bool):
            raise DescriptionError(f"{where}: must be true or false")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise DescriptionError(f"{where}: must be an integer")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise DescriptionError(f"{where}: must be a number")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise DescriptionError(f"{where}: must be a string")
        return value
    if kind is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise DescriptionError(f"{where}: must be a list of strings")
        return tuple(value)
    if kind is dict:
        if not isinstance(value, dict):
            raise DescriptionError(f"{where}: must be a table")
        return {k: _value(v, float, f"{where}.{k}") for k, v in value.items()}
    raise TypeError(kind)  # pragma: no cover - _FIELD_TYPES names only the kinds above


# --- running ------------------------------------------------------------------------


def simulate_colony(description: ColonyDescription, seed: int) -> dict[str, Any]:
    """Run the described colony once; the summary as ``colonymesh simulate colony --json``."""
    cfg = description.to_config()
    started = time.perf_counter()
    outcome = run(seed, cfg)
    wall = time.perf_counter() - started
    failures = []
    if outcome.violation is not None:
        at = outcome.violation_at
        failures.append(
            {
                "seed": seed,
                "violation": outcome.violation,
                "virtual_seconds": None if at is None else round(at[0], 6),
                "event": None if at is None else at[1],
                "profile": outcome.profile.as_dict(),
            }
        )
    summary: dict[str, Any] = {
        "scenario": "colony",
        "peers": description.peers,
        "seeds": 1,
        "seed": seed,
        "duration": description.duration_s,
        "violations": len(failures),
        "failures": failures,
        "profile": outcome.profile.as_dict(),
        **outcome.figures,
    }
    events = summary.get("events", 0)
    summary[WALL_CLOCK_KEYS[0]] = round(wall, 3)
    summary[WALL_CLOCK_KEYS[1]] = round(events / wall) if wall > 0 else None
    return summary
