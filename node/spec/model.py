"""The function-spec model: ColonyOS's FunctionSpec and WorkflowSpec as frozen dataclasses.

Attribute names are ColonyOS's JSON field names (``funcname``,
``maxexectime``, ``processespernode``...) so that a ColonyOS user reads the
model as the JSON they already write. Units: every time is in whole seconds;
``cpu``/``mem``/``storage``/``gpu.mem`` keep the user's quantity string
verbatim and expose the exact parsed value (``cpu_millicores``,
``mem_bytes``...).

Instances are built by ``colonymesh.node.spec.parse`` (which validates
everything) or by hand; a hand-built spec is validated by passing its
``to_json_obj()`` through ``parse_function_spec``. ``to_json_obj()`` emits
the normalised ColonyOS shape — every field present, the way ColonyOS's Go
server marshals a spec — so that ``parse(x.to_json()) == x`` for every
valid ``x``.

Sentinels, as in ColonyOS: ``maxwaittime``/``maxexectime`` ``-1`` mean "no
limit" (``0`` is normalised to ``-1`` on parse, as ColonyOS does);
``maxretries`` ``-1`` means "retry without limit"; ``0`` in ``nodes``,
``processes``, ``processespernode``, ``walltime`` and an empty quantity
string mean "not requested".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from colonymesh.node.spec.errors import SpecError
from colonymesh.node.spec.jsonvalue import FrozenMap, JsonValue, thaw
from colonymesh.node.spec.quantity import QuantityError, parse_bytes, parse_millicores

__all__ = [
    "Conditions",
    "ConflictResolution",
    "Filesystem",
    "FunctionSpec",
    "Gpu",
    "SnapshotMount",
    "SyncDirMount",
    "WorkflowSpec",
]


def _bytes_or_none(text: str, path: str) -> int | None:
    try:
        return parse_bytes(text) if text else None
    except QuantityError as error:  # only for hand-built specs: parsing refuses these
        raise SpecError(path, str(error)) from None


def _millicores_or_none(text: str, path: str) -> int | None:
    try:
        return parse_millicores(text) if text else None
    except QuantityError as error:
        raise SpecError(path, str(error)) from None


@dataclass(frozen=True, slots=True)
class Gpu:
    """``conditions.gpu``: how many GPUs of which model, with how much memory each."""

    name: str = ""
    mem: str = ""
    count: int = 0
    nodecount: int = 0

    @property
    def mem_bytes(self) -> int | None:
        return _bytes_or_none(self.mem, "conditions.gpu.mem")

    def to_json_obj(self) -> dict[str, object]:
        return {
            "name": self.name,
            "mem": self.mem,
            "count": self.count,
            "nodecount": self.nodecount,
        }


@dataclass(frozen=True, slots=True)
class Conditions:
    """``conditions``: who may run the spec, what it needs, and what it waits for."""

    executortype: str
    colonyname: str = ""
    executornames: tuple[str, ...] = ()
    locationname: str = ""
    dependencies: tuple[str, ...] = ()
    nodes: int = 0
    cpu: str = ""
    processes: int = 0
    processespernode: int = 0
    mem: str = ""
    storage: str = ""
    gpu: Gpu = field(default_factory=Gpu)
    walltime: int = 0

    @property
    def cpu_millicores(self) -> int | None:
        return _millicores_or_none(self.cpu, "conditions.cpu")

    @property
    def mem_bytes(self) -> int | None:
        return _bytes_or_none(self.mem, "conditions.mem")

    @property
    def storage_bytes(self) -> int | None:
        return _bytes_or_none(self.storage, "conditions.storage")

    def to_json_obj(self) -> dict[str, object]:
        return {
            "colonyname": self.colonyname,
            "executornames": list(self.executornames),
            "executortype": self.executortype,
            "locationname": self.locationname,
            "dependencies": list(self.dependencies),
            "nodes": self.nodes,
            "cpu": self.cpu,
            "processes": self.processes,
            "processespernode": self.processespernode,
            "mem": self.mem,
            "storage": self.storage,
            "gpu": self.gpu.to_json_obj(),
            "walltime": self.walltime,
        }


@dataclass(frozen=True, slots=True)
class SnapshotMount:
    """``fs.snapshots[i]``: a read-only snapshot of a label, materialised at ``dir``."""

    snapshotid: str = ""
    label: str = ""
    dir: str = ""
    keepfiles: bool = False
    keepsnapshot: bool = False

    def to_json_obj(self) -> dict[str, object]:
        return {
            "snapshotid": self.snapshotid,
            "label": self.label,
            "dir": self.dir,
            "keepfiles": self.keepfiles,
            "keepsnapshot": self.keepsnapshot,
        }


@dataclass(frozen=True, slots=True)
class ConflictResolution:
    """``onconflicts``: whether the local copy wins when syncing at start and at close."""

    onstart_keeplocal: bool = False
    onclose_keeplocal: bool = False

    def to_json_obj(self) -> dict[str, object]:
        return {
            "onstart": {"keeplocal": self.onstart_keeplocal},
            "onclose": {"keeplocal": self.onclose_keeplocal},
        }


@dataclass(frozen=True, slots=True)
class SyncDirMount:
    """``fs.dirs[i]``: a label synchronised with ``dir`` before and after the process."""

    label: str = ""
    dir: str = ""
    keepfiles: bool = False
    onconflicts: ConflictResolution = field(default_factory=ConflictResolution)

    def to_json_obj(self) -> dict[str, object]:
        return {
            "label": self.label,
            "dir": self.dir,
            "keepfiles": self.keepfiles,
            "onconflicts": self.onconflicts.to_json_obj(),
        }


@dataclass(frozen=True, slots=True)
class Filesystem:
    """``fs``: where the meta-filesystem is mounted and what to sync there."""

    mount: str = ""
    snapshots: tuple[SnapshotMount, ...] = ()
    dirs: tuple[SyncDirMount, ...] = ()

    def to_json_obj(self) -> dict[str, object]:
        return {
            "mount": self.mount,
            "snapshots": [s.to_json_obj() for s in self.snapshots],
            "dirs": [d.to_json_obj() for d in self.dirs],
        }


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """A ColonyOS function specification: what to run, where, and within which limits."""

    funcname: str
    conditions: Conditions
    nodename: str = ""
    args: tuple[JsonValue, ...] = ()
    kwargs: FrozenMap = field(default_factory=FrozenMap)
    priority: int = 0
    maxwaittime: int = -1
    maxexectime: int = -1
    maxretries: int = 0
    label: str = ""
    fs: Filesystem = field(default_factory=Filesystem)
    env: tuple[tuple[str, str], ...] = ()
    # ColonyOS's optional service/reconciliation objects: accepted and carried
    # verbatim (the Kubernetes translator reads ``service`` as "long-running").
    service: FrozenMap | None = None
    reconciliation: FrozenMap | None = None

    @property
    def env_map(self) -> dict[str, str]:
        return dict(self.env)

    def to_json_obj(self) -> dict[str, object]:
        """The normalised ColonyOS JSON object (plain dicts and lists)."""
        out: dict[str, object] = {
            "nodename": self.nodename,
            "funcname": self.funcname,
            "args": [thaw(a) for a in self.args],
            "kwargs": thaw(self.kwargs),
            "priority": self.priority,
            "maxwaittime": self.maxwaittime,
            "maxexectime": self.maxexectime,
            "maxretries": self.maxretries,
            "conditions": self.conditions.to_json_obj(),
            "label": self.label,
            "fs": self.fs.to_json_obj(),
            "env": dict(self.env),
        }
        if self.service is not None:
            out["service"] = thaw(self.service)
        if self.reconciliation is not None:
            out["reconciliation"] = thaw(self.reconciliation)
        return out

    def to_json(self) -> str:
        """Compact JSON text of ``to_json_obj()``, readable by ColonyOS."""
        return json.dumps(self.to_json_obj(), ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class WorkflowSpec:
    """A ColonyOS workflow: function specs linked into a DAG by ``nodename``/``dependencies``."""

    colonyname: str
    functionspecs: tuple[FunctionSpec, ...]

    def by_nodename(self) -> dict[str, FunctionSpec]:
        return {spec.nodename: spec for spec in self.functionspecs}

    def roots(self) -> tuple[str, ...]:
        """Nodenames without dependencies, in document order."""
        return tuple(s.nodename for s in self.functionspecs if not s.conditions.dependencies)

    def topological_order(self) -> tuple[str, ...]:
        """Nodenames so that every node follows its dependencies; ties in document order."""
        remaining = {s.nodename: len(set(s.conditions.dependencies)) for s in self.functionspecs}
        children: dict[str, list[str]] = {s.nodename: [] for s in self.functionspecs}
        for spec in self.functionspecs:
            for parent in dict.fromkeys(spec.conditions.dependencies):
                children[parent].append(spec.nodename)
        order: list[str] = []
        ready = [s.nodename for s in self.functionspecs if remaining[s.nodename] == 0]
        while ready:
            name = ready.pop(0)
            order.append(name)
            for child in children[name]:
                remaining[child] -= 1
                if remaining[child] == 0:
                    ready.append(child)
        if len(order) != len(self.functionspecs):
            raise ValueError("workflow has a dependency cycle; parse_workflow_spec refuses these")
        return tuple(order)

    def to_json_obj(self) -> dict[str, object]:
        return {
            "colonyname": self.colonyname,
            "functionspecs": [s.to_json_obj() for s in self.functionspecs],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_json_obj(), ensure_ascii=False, separators=(",", ":"))
