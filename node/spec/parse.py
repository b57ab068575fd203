"""Strict parsing of ColonyOS FunctionSpec and WorkflowSpec JSON into the frozen model.

What it owns: the rules a spec must satisfy before any peer accepts it.
How it works: one small reader per JSON object (``_function_spec``,
``_conditions``, ``_gpu``, ...) walks the decoded document, checks every
field's type and range, refuses unknown fields (with a "did you mean" hint),
and builds the dataclasses of ``model``. Workflows are then checked as a
graph: nodenames present and unique, every dependency known, no cycles.

Contract: ``parse_function_spec`` and ``parse_workflow_spec`` accept a
decoded JSON object, or JSON text as ``str``/``bytes``, and either return a
valid, normalised spec or raise ``SpecError`` — never any other exception,
whatever the input — with a JSON path naming the field at fault, e.g.
``conditions.gpu.count: must be a non-negative integer``.

Accepted verbatim from ColonyOS: every field ColonyOS's Go server and
pycolonies write, ``null`` for any absent list or object (Go marshals nil
slices and maps as ``null``), and the optional ``service`` and
``reconciliation`` objects, which are carried opaquely.
Normalisation: ``null`` and absent fields take their defaults,
``maxwaittime``/``maxexectime`` ``0`` become ``-1`` ("no limit", as
ColonyOS does), ``env`` is ordered by name, and in a workflow an empty
``conditions.colonyname`` takes the workflow's ``colonyname``.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping

from colonymesh.node.spec.errors import SpecError, join_path
from colonymesh.node.spec.graph import check_graph, in_colony
from colonymesh.node.spec.jsonvalue import FrozenMap, freeze
from colonymesh.node.spec.model import (
    Conditions,
    ConflictResolution,
    Filesystem,
    FunctionSpec,
    Gpu,
    SnapshotMount,
    SyncDirMount,
    WorkflowSpec,
)
from colonymesh.node.spec.quantity import QuantityError, parse_bytes, parse_millicores

__all__ = [
    "ARGS_COUNT_MAX",
    "FUNCTION_SPEC_FIELDS",
    "PRIORITY_MAX",
    "PRIORITY_MIN",
    "SPEC_JSON_BYTES_MAX",
    "WORKFLOW_JSON_BYTES_MAX",
    "WORKFLOW_SPECS_MAX",
    "parse_function_spec",
    "parse_workflow_spec",
    "validate_function_spec",
]

# --- limits (units last; every limit is checked, every refusal names it) ---
SPEC_JSON_BYTES_MAX = 1 << 20
WORKFLOW_JSON_BYTES_MAX = 8 << 20
WORKFLOW_SPECS_MAX = 4096
ARGS_COUNT_MAX = 1024
KWARGS_COUNT_MAX = 1024
ENV_COUNT_MAX = 256
ENV_VALUE_CHARS_MAX = 32 * 1024
NAME_CHARS_MAX = 256
PATH_CHARS_MAX = 1024
LIST_ITEMS_MAX = 256
DEPENDENCIES_MAX = WORKFLOW_SPECS_MAX
# int32, so every ledger encoding and every ColonyOS client can hold it.
PRIORITY_MIN = -(2**31)
PRIORITY_MAX = 2**31 - 1
SECONDS_MAX = 2**31 - 1
MAXRETRIES_MAX = 10_000
NODES_MAX = 1_000_000
PROCESSES_MAX = 100_000_000
GPUS_PER_NODE_MAX = 1024
ENV_RESERVED_PREFIX = "COLONYMESH_"

FUNCTION_SPEC_FIELDS = (
    "nodename",
    "funcname",
    "args",
    "kwargs",
    "priority",
    "maxwaittime",
    "maxexectime",
    "maxretries",
    "conditions",
    "label",
    "fs",
    "env",
    "service",
    "reconciliation",
)
CONDITIONS_FIELDS = (
    "colonyname",
    "executornames",
    "executortype",
    "locationname",
    "dependencies",
    "nodes",
    "cpu",
    "processes",
    "processespernode",
    "mem",
    "storage",
    "gpu",
    "walltime",
)
GPU_FIELDS = ("name", "mem", "count", "nodecount")
FS_FIELDS = ("mount", "snapshots", "dirs")
SNAPSHOT_FIELDS = ("snapshotid", "label", "dir", "keepfiles", "keepsnapshot")
SYNC_DIR_FIELDS = ("label", "dir", "keepfiles", "onconflicts")
ON_CONFLICTS_FIELDS = ("onstart", "onclose")
KEEP_LOCAL_FIELDS = ("keeplocal",)
WORKFLOW_FIELDS = ("colonyname", "functionspecs")

# Names older ColonyOS releases used for fields that have since been renamed.
_RENAMED = {
    "processspecs": "functionspecs",
    "colonyid": "colonyname",
    "func": "funcname",
    "executorids": "executornames",
    "runtimetype": "executortype",
    "targettype": "executortype",
    "memory": "mem",
}

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


# --------------------------------------------------------------------------
# public entry points
# --------------------------------------------------------------------------


def parse_function_spec(obj: object) -> FunctionSpec:
    """Validate a ColonyOS FunctionSpec (decoded JSON, or JSON text) and build the model."""
    document = _document(obj, SPEC_JSON_BYTES_MAX, "function spec")
    spec = _function_spec(document, "")
    _check_size(spec.to_json(), SPEC_JSON_BYTES_MAX, "function spec")
    return spec


def validate_function_spec(spec: FunctionSpec) -> FunctionSpec:
    """Check a spec built by hand (not parsed) by the same rules; return the normalised spec.

    Translators call this first, so a malformed spec is refused with a
    field-named ``SpecError`` however it was made.
    """
    try:
        obj = spec.to_json_obj()
    except (TypeError, ValueError, AttributeError) as error:
        raise SpecError("", f"not a well-formed FunctionSpec: {error}") from None
    return parse_function_spec(obj)


def parse_workflow_spec(obj: object) -> WorkflowSpec:
    """Validate a ColonyOS WorkflowSpec (decoded JSON, or JSON text) and build the model.

    Also accepts the file the ``colonies workflow submit --spec`` CLI reads: a
    bare JSON list of function specs (errors then read ``[2].conditions.cpu``).
    """
    decoded = _decode(obj, WORKFLOW_JSON_BYTES_MAX, "workflow spec")
    raw_specs: object
    if isinstance(decoded, list):
        base, colonyname, raw_specs = "", "", decoded
    else:
        document = _object(decoded, "", "workflow spec")
        _check_fields(document, WORKFLOW_FIELDS, "")
        base = "functionspecs"
        colonyname = _name(document, "colonyname", "")
        raw_specs = document.get("functionspecs")
        if raw_specs is None:
            raise SpecError(base, "is required: a list of function specs")
    if not isinstance(raw_specs, list):
        raise SpecError(base, "must be a list of function specs")
    if not raw_specs:
        raise SpecError(base, "must hold at least one function spec")
    if len(raw_specs) > WORKFLOW_SPECS_MAX:
        raise SpecError(base, f"holds more than {WORKFLOW_SPECS_MAX} function specs")
    specs: list[FunctionSpec] = []
    for index, raw in enumerate(raw_specs):
        path = join_path(base, index)
        try:
            spec = _function_spec(raw, "")
        except SpecError as error:
            raise error.under(path) from None
        specs.append(in_colony(spec, colonyname, path))
    check_graph(specs, base)
    workflow = WorkflowSpec(colonyname=colonyname, functionspecs=tuple(specs))
    _check_size(workflow.to_json(), WORKFLOW_JSON_BYTES_MAX, "workflow spec")
    return workflow


# --------------------------------------------------------------------------
# documents and generic readers
# --------------------------------------------------------------------------


def _refuse_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise SpecError(join_path("", key), "appears twice in the same object")
        out[key] = value
    return out


def _refuse_constant(name: str) -> object:
    raise SpecError("", f"{name} is not a JSON number")


def _document(obj: object, bytes_max: int, what: str) -> Mapping[str, object]:
    return _object(_decode(obj, bytes_max, what), "", what)


def _decode(obj: object, bytes_max: int, what: str) -> object:
    """JSON text (``str``/``bytes``) decoded strictly; anything else is returned as is."""
    if isinstance(obj, (bytes, bytearray, memoryview)):
        if len(obj) > bytes_max:
            raise SpecError("", f"{what} is {len(obj)} bytes, more than {bytes_max}")
        try:
            obj = bytes(obj).decode("utf-8")
        except UnicodeDecodeError as error:
            raise SpecError("", f"{what} is not UTF-8: {error.reason}") from None
    if isinstance(obj, str):
        if len(obj) > bytes_max:
            raise SpecError("", f"{what} is {len(obj)} characters, more than {bytes_max}")
        try:
            obj = json.loads(
                obj, object_pairs_hook=_refuse_duplicates, parse_constant=_refuse_constant
            )
        except SpecError:
            raise
        except (ValueError, RecursionError) as error:
            raise SpecError("", f"{what} is not valid JSON: {error}") from None
    return obj


def _object(value: object, path: str, what: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise SpecError(path, f"must be a JSON object ({what})")
    for key in value:
        if not isinstance(key, str):
            raise SpecError(path, f"object key {key!r} is not a string")
    return value


def _optional_object(
    parent: Mapping[str, object], key: str, path: str, what: str
) -> Mapping[str, object]:
    value = parent.get(key)
    if value is None:
        return {}
    return _object(value, join_path(path, key), what)


def _suggest(key: str, known: tuple[str, ...]) -> str:
    squashed = key.lower().replace("-", "").replace("_", "")
    renamed = _RENAMED.get(squashed, "")
    if renamed in known:
        return renamed
    for candidate in known:
        if candidate == squashed:
            return candidate
    close = difflib.get_close_matches(squashed, known, n=1, cutoff=0.6)
    return close[0] if close else ""


def _check_fields(obj: Mapping[str, object], known: tuple[str, ...], path: str) -> None:
    for key in obj:
        if key not in known:
            hint = _suggest(key, known)
            reason = f"unknown field; did you mean {hint!r}?" if hint else "unknown field"
            raise SpecError(join_path(path, key), reason)


def _check_size(text: str, bytes_max: int, what: str) -> None:
    size = len(text.encode("utf-8"))
    if size > bytes_max:
        raise SpecError("", f"{what} is {size} bytes of JSON, more than {bytes_max}")


def _text(
    obj: Mapping[str, object], key: str, path: str, chars_max: int, *, control_ok: bool = False
) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise SpecError(join_path(path, key), "must be a string")
    if len(value) > chars_max:
        raise SpecError(join_path(path, key), f"is longer than {chars_max} characters")
    if not control_ok and _CONTROL.search(value):
        raise SpecError(join_path(path, key), "must not contain control characters")
    return value


def _name(obj: Mapping[str, object], key: str, path: str) -> str:
    return _text(obj, key, path, NAME_CHARS_MAX)


def _fs_path(obj: Mapping[str, object], key: str, path: str) -> str:
    value = _text(obj, key, path, PATH_CHARS_MAX)
    if ".." in value.split("/"):
        raise SpecError(join_path(path, key), "must not contain a '..' path segment")
    return value


def _int(
    obj: Mapping[str, object], key: str, path: str, low: int, high: int, default: int, what: str
) -> int:
    value = obj.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(join_path(path, key), f"must be {what}")
    if not low <= value <= high:
        raise SpecError(join_path(path, key), f"must be {what}, got {value}")
    return value


def _count(obj: Mapping[str, object], key: str, path: str, high: int) -> int:
    return _int(obj, key, path, 0, high, 0, f"a non-negative integer (at most {high})")


def _limit_seconds(obj: Mapping[str, object], key: str, path: str) -> int:
    what = f"-1 (no limit) or a non-negative number of seconds (at most {SECONDS_MAX})"
    value = _int(obj, key, path, -1, SECONDS_MAX, -1, what)
    return -1 if value == 0 else value


def _bool(obj: Mapping[str, object], key: str, path: str) -> bool:
    value = obj.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise SpecError(join_path(path, key), "must be true or false")
    return value


def _list(obj: Mapping[str, object], key: str, path: str, items_max: int) -> list[object]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise SpecError(join_path(path, key), "must be a list")
    if len(value) > items_max:
        raise SpecError(join_path(path, key), f"holds more than {items_max} items")
    return value


def _names(obj: Mapping[str, object], key: str, path: str, items_max: int) -> tuple[str, ...]:
    seen: dict[str, int] = {}
    for index, item in enumerate(_list(obj, key, path, items_max)):
        if not isinstance(item, str) or not item:
            raise SpecError(join_path(join_path(path, key), index), "must be a non-empty string")
        if len(item) > NAME_CHARS_MAX or _CONTROL.search(item):
            raise SpecError(
                join_path(join_path(path, key), index),
                "must be a short name without control characters",
            )
        if item in seen:
            raise SpecError(
                join_path(join_path(path, key), index),
                f"{item!r} is already listed at [{seen[item]}]",
            )
        seen[item] = index
    return tuple(seen)


def _quantity(obj: Mapping[str, object], key: str, path: str, *, cpu: bool) -> str:
    value = obj.get(key)
    if value is None or value == "":
        return ""
    try:
        if cpu:
            parse_millicores(value)
        else:
            parse_bytes(value)
    except QuantityError as error:
        raise SpecError(join_path(path, key), str(error)) from None
    if not isinstance(value, str):  # unreachable: the parsers accept only str
        raise SpecError(join_path(path, key), "must be a quantity string")
    return value


# --------------------------------------------------------------------------
# the objects of a function spec
# --------------------------------------------------------------------------


def _gpu(obj: Mapping[str, object], path: str) -> Gpu:
    _check_fields(obj, GPU_FIELDS, path)
    return Gpu(
        name=_name(obj, "name", path),
        mem=_quantity(obj, "mem", path, cpu=False),
        count=_count(obj, "count", path, GPUS_PER_NODE_MAX),
        nodecount=_count(obj, "nodecount", path, NODES_MAX),
    )


def _conditions(obj: Mapping[str, object], path: str) -> Conditions:
    _check_fields(obj, CONDITIONS_FIELDS, path)
    executortype = _name(obj, "executortype", path)
    if not executortype:
        raise SpecError(join_path(path, "executortype"), "is required (a non-empty string)")
    walltime = _int(
        obj,
        "walltime",
        path,
        0,
        SECONDS_MAX,
        0,
        f"a non-negative number of seconds (at most {SECONDS_MAX})",
    )
    return Conditions(
        executortype=executortype,
        colonyname=_name(obj, "colonyname", path),
        executornames=_names(obj, "executornames", path, LIST_ITEMS_MAX),
        locationname=_name(obj, "locationname", path),
        dependencies=_names(obj, "dependencies", path, DEPENDENCIES_MAX),
        nodes=_count(obj, "nodes", path, NODES_MAX),
        cpu=_quantity(obj, "cpu", path, cpu=True),
        processes=_count(obj, "processes", path, PROCESSES_MAX),
        processespernode=_count(obj, "processespernode", path, PROCESSES_MAX),
        mem=_quantity(obj, "mem", path, cpu=False),
        storage=_quantity(obj, "storage", path, cpu=False),
        gpu=_gpu(_optional_object(obj, "gpu", path, "gpu"), join_path(path, "gpu")),
        walltime=walltime,
    )


def _keep_local(obj: Mapping[str, object], key: str, path: str) -> bool:
    inner = _optional_object(obj, key, path, key)
    inner_path = join_path(path, key)
    _check_fields(inner, KEEP_LOCAL_FIELDS, inner_path)
    return _bool(inner, "keeplocal", inner_path)


def _sync_dir(value: object, path: str) -> SyncDirMount:
    obj = _object(value, path, "sync directory")
    _check_fields(obj, SYNC_DIR_FIELDS, path)
    conflicts = _optional_object(obj, "onconflicts", path, "onconflicts")
    conflicts_path = join_path(path, "onconflicts")
    _check_fields(conflicts, ON_CONFLICTS_FIELDS, conflicts_path)
    return SyncDirMount(
        label=_fs_path(obj, "label", path),
        dir=_fs_path(obj, "dir", path),
        keepfiles=_bool(obj, "keepfiles", path),
        onconflicts=ConflictResolution(
            onstart_keeplocal=_keep_local(conflicts, "onstart", conflicts_path),
            onclose_keeplocal=_keep_local(conflicts, "onclose", conflicts_path),
        ),
    )


def _snapshot(value: object, path: str) -> SnapshotMount:
    obj = _object(value, path, "snapshot")
    _check_fields(obj, SNAPSHOT_FIELDS, path)
    return SnapshotMount(
        snapshotid=_name(obj, "snapshotid", path),
        label=_fs_path(obj, "label", path),
        dir=_fs_path(obj, "dir", path),
        keepfiles=_bool(obj, "keepfiles", path),
        keepsnapshot=_bool(obj, "keepsnapshot", path),
    )


def _filesystem(obj: Mapping[str, object], path: str) -> Filesystem:
    _check_fields(obj, FS_FIELDS, path)
    snapshots_path = join_path(path, "snapshots")
    dirs_path = join_path(path, "dirs")
    return Filesystem(
        mount=_fs_path(obj, "mount", path),
        snapshots=tuple(
            _snapshot(item, join_path(snapshots_path, i))
            for i, item in enumerate(_list(obj, "snapshots", path, LIST_ITEMS_MAX))
        ),
        dirs=tuple(
            _sync_dir(item, join_path(dirs_path, i))
            for i, item in enumerate(_list(obj, "dirs", path, LIST_ITEMS_MAX))
        ),
    )


def _env(obj: Mapping[str, object], path: str) -> tuple[tuple[str, str], ...]:
    env = _optional_object(obj, "env", path, "env")
    here = join_path(path, "env")
    if len(env) > ENV_COUNT_MAX:
        raise SpecError(here, f"holds more than {ENV_COUNT_MAX} variables")
    pairs: list[tuple[str, str]] = []
    for key, value in env.items():
        key_path = join_path(here, key)
        if not _ENV_NAME.match(key) or len(key) > NAME_CHARS_MAX:
            raise SpecError(key_path, "is not a valid variable name ([A-Za-z_][A-Za-z0-9_]*)")
        if key.upper().startswith(ENV_RESERVED_PREFIX):
            raise SpecError(key_path, f"names starting with {ENV_RESERVED_PREFIX} are reserved")
        if not isinstance(value, str):
            raise SpecError(key_path, "must be a string")
        if "\x00" in value or len(value) > ENV_VALUE_CHARS_MAX:
            raise SpecError(key_path, f"must hold no NUL and at most {ENV_VALUE_CHARS_MAX} chars")
        pairs.append((key, value))
    return tuple(sorted(pairs))


def _opaque(obj: Mapping[str, object], key: str, path: str) -> FrozenMap | None:
    value = obj.get(key)
    if value is None:
        return None
    here = join_path(path, key)
    frozen = freeze(_object(value, here, key), here)
    if not isinstance(frozen, FrozenMap):  # unreachable: a Mapping freezes to a FrozenMap
        raise SpecError(here, "must be a JSON object")
    return frozen


def _function_spec(value: object, path: str) -> FunctionSpec:
    obj = _object(value, path, "function spec")
    _check_fields(obj, FUNCTION_SPEC_FIELDS, path)
    funcname = _name(obj, "funcname", path)
    if not funcname:
        raise SpecError(join_path(path, "funcname"), "is required (a non-empty string)")
    args_path = join_path(path, "args")
    args = tuple(
        freeze(item, join_path(args_path, i))
        for i, item in enumerate(_list(obj, "args", path, ARGS_COUNT_MAX))
    )
    kwargs_obj = _optional_object(obj, "kwargs", path, "kwargs")
    if len(kwargs_obj) > KWARGS_COUNT_MAX:
        raise SpecError(join_path(path, "kwargs"), f"holds more than {KWARGS_COUNT_MAX} items")
    kwargs = freeze(kwargs_obj, join_path(path, "kwargs"))
    if not isinstance(kwargs, FrozenMap):  # unreachable: a Mapping freezes to a FrozenMap
        raise SpecError(join_path(path, "kwargs"), "must be a JSON object")
    priority = _int(
        obj,
        "priority",
        path,
        PRIORITY_MIN,
        PRIORITY_MAX,
        0,
        f"an integer from {PRIORITY_MIN} to {PRIORITY_MAX}",
    )
    maxretries = _int(
        obj,
        "maxretries",
        path,
        -1,
        MAXRETRIES_MAX,
        0,
        f"-1 (no limit) or a non-negative integer (at most {MAXRETRIES_MAX})",
    )
    conditions_path = join_path(path, "conditions")
    return FunctionSpec(
        funcname=funcname,
        conditions=_conditions(
            _optional_object(obj, "conditions", path, "conditions"), conditions_path
        ),
        nodename=_name(obj, "nodename", path),
        args=args,
        kwargs=kwargs,
        priority=priority,
        maxwaittime=_limit_seconds(obj, "maxwaittime", path),
        maxexectime=_limit_seconds(obj, "maxexectime", path),
        maxretries=maxretries,
        label=_fs_path(obj, "label", path),
        fs=_filesystem(_optional_object(obj, "fs", path, "fs"), join_path(path, "fs")),
        env=_env(obj, path),
        service=_opaque(obj, "service", path),
        reconciliation=_opaque(obj, "reconciliation", path),
    )
