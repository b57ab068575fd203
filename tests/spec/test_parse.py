"""parse_function_spec: ColonyOS JSON accepted verbatim, every malformed field refused by name."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from colonymesh.node.spec import (
    FrozenMap,
    FunctionSpec,
    SpecError,
    parse_function_spec,
)
from colonymesh.node.spec.parse import ARGS_COUNT_MAX, SPEC_JSON_BYTES_MAX

# The shape ColonyOS's Go server marshals (every field present, nil slices as
# null), as documented by its FunctionSpec/Conditions/Filesystem structs.
GO_MARSHALLED = """
{"nodename":"train","funcname":"execute","args":null,"kwargs":{"cmd":"python3 train.py",
 "args":["--epochs","3"],"docker-image":"tensorflow/tensorflow:2.14.0-gpu"},
 "priority":5,"maxwaittime":0,"maxexectime":600,"maxretries":3,
 "conditions":{"colonyname":"dev","executornames":null,"executortype":"hpc","dependencies":null,
   "nodes":2,"cpu":"1000m","processes":8,"processespernode":4,"mem":"15Gi","storage":"",
   "gpu":{"name":"nvidia_a100","mem":"40Gi","count":4,"nodecount":2},"walltime":700},
 "label":"/train","fs":{"mount":"/cfs","snapshots":null,"dirs":null},"env":{"OMP_NUM_THREADS":"4"}}
"""

# The shape pycolonies' FuncSpec model produces (optional parts left out).
PYCOLONIES = {
    "funcname": "echo",
    "args": ["hello", 42],
    "conditions": {"executortype": "echo-executor"},
    "maxexectime": 10,
    "maxretries": 1,
}

SYNC_SPEC = {
    "conditions": {
        "executortype": "dev-hpcexecutor",
        "nodes": 1,
        "processespernode": 1,
        "walltime": 600,
        "mem": "1000Mi",
        "cpu": "1000m",
        "gpu": {"count": 1},
    },
    "funcname": "sync",
    "fs": {
        "mount": "/cfs",
        "snapshots": [
            {
                "snapshotid": "s1",
                "label": "/in",
                "dir": "/in",
                "keepfiles": False,
                "keepsnapshot": True,
            }
        ],
        "dirs": [
            {
                "label": "/water",
                "dir": "/water",
                "keepfiles": True,
                "onconflicts": {"onstart": {"keeplocal": False}, "onclose": {"keeplocal": True}},
            }
        ],
    },
    "maxwaittime": -1,
    "maxexectime": 60000,
    "maxretries": 3,
}


def test_go_marshalled_spec_is_accepted_verbatim() -> None:
    spec = parse_function_spec(GO_MARSHALLED)
    assert spec.nodename == "train"
    assert spec.args == ()
    assert spec.maxwaittime == -1  # 0 means "no limit" in ColonyOS
    assert spec.conditions.executornames == ()
    assert spec.conditions.cpu_millicores == 1000
    assert spec.conditions.mem_bytes == 15 * 2**30
    assert spec.conditions.storage_bytes is None
    assert spec.conditions.gpu.mem_bytes == 40 * 2**30
    assert spec.conditions.gpu.count == 4
    assert spec.kwargs["args"] == ("--epochs", "3")
    assert spec.env_map == {"OMP_NUM_THREADS": "4"}
    assert spec.fs.mount == "/cfs"


def test_pycolonies_spec_gets_defaults() -> None:
    spec = parse_function_spec(PYCOLONIES)
    assert spec.args == ("hello", 42)
    assert spec.priority == 0
    assert spec.maxwaittime == -1
    assert spec.conditions.nodes == 0
    assert spec.conditions.gpu.count == 0
    assert spec.fs.dirs == ()


def test_sync_directives_are_kept() -> None:
    spec = parse_function_spec(SYNC_SPEC)
    (snapshot,) = spec.fs.snapshots
    assert (snapshot.snapshotid, snapshot.keepsnapshot) == ("s1", True)
    (sync,) = spec.fs.dirs
    assert sync.keepfiles is True
    assert sync.onconflicts.onstart_keeplocal is False
    assert sync.onconflicts.onclose_keeplocal is True


@pytest.mark.parametrize("source", [GO_MARSHALLED, PYCOLONIES, SYNC_SPEC])
def test_round_trip(source: object) -> None:
    spec = parse_function_spec(source)
    again = parse_function_spec(spec.to_json())
    assert again == spec
    assert again.to_json() == spec.to_json()
    assert parse_function_spec(spec.to_json_obj()) == spec
    assert parse_function_spec(spec.to_json().encode()) == spec


def test_service_and_reconciliation_are_carried_opaquely() -> None:
    obj = {**PYCOLONIES, "service": {"replicas": 2, "ports": [80]}, "reconciliation": None}
    spec = parse_function_spec(obj)
    assert spec.service == FrozenMap({"replicas": 2, "ports": (80,)})
    assert spec.reconciliation is None
    assert json.loads(spec.to_json())["service"] == {"replicas": 2, "ports": [80]}


def test_spec_is_frozen_and_hashable() -> None:
    spec = parse_function_spec(GO_MARSHALLED)
    with pytest.raises(AttributeError):
        spec.funcname = "other"  # type: ignore[misc]
    assert hash(spec) == hash(parse_function_spec(spec.to_json()))
    assert isinstance(spec, FunctionSpec)


def test_env_is_normalised_by_name() -> None:
    a = parse_function_spec({**PYCOLONIES, "env": {"B": "2", "A": "1"}})
    b = parse_function_spec({**PYCOLONIES, "env": {"A": "1", "B": "2"}})
    assert a == b and a.to_json() == b.to_json()


def with_field(path: str, value: Any) -> dict[str, Any]:
    """SYNC_SPEC with the dotted ``path`` set to ``value``."""
    obj = copy.deepcopy(SYNC_SPEC)
    node: Any = obj
    *parents, last = path.split(".")
    for part in parents:
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    if last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return obj


# (field to set, value, expected error path, words the message must contain)
MALFORMED = [
    ("conditions.cpu", "two", "conditions.cpu", "not a Kubernetes quantity"),
    ("conditions.cpu", "-1", "conditions.cpu", "negative"),
    ("conditions.cpu", 2, "conditions.cpu", "quantity string"),
    ("conditions.mem", "1GB", "conditions.mem", "not a Kubernetes quantity"),
    ("conditions.mem", "500m", "conditions.mem", "500Mi"),
    ("conditions.storage", "lots", "conditions.storage", "quantity"),
    ("conditions.gpu.mem", "x", "conditions.gpu.mem", "quantity"),
    ("conditions.walltime", -1, "conditions.walltime", "non-negative"),
    ("conditions.walltime", "600", "conditions.walltime", "seconds"),
    ("conditions.walltime", 1.5, "conditions.walltime", "seconds"),
    ("conditions.nodes", -2, "conditions.nodes", "non-negative"),
    ("conditions.nodes", True, "conditions.nodes", "non-negative integer"),
    ("conditions.processespernode", -1, "conditions.processespernode", "non-negative"),
    ("conditions.gpu.count", -1, "conditions.gpu.count", "non-negative integer"),
    ("conditions.gpu.count", "1", "conditions.gpu.count", "non-negative integer"),
    ("conditions.gpu.count", 5000, "conditions.gpu.count", "at most 1024"),
    ("conditions.gpu.cores", 2, "conditions.gpu.cores", "unknown field"),
    ("conditions.gpu.nodecnt", 2, "conditions.gpu.nodecnt", "did you mean 'nodecount'"),
    ("conditions.gpu", [1], "conditions.gpu", "JSON object"),
    ("conditions.executortype", "", "conditions.executortype", "required"),
    ("conditions.executortype", "a\nb", "conditions.executortype", "control characters"),
    ("conditions.executornames", "exe", "conditions.executornames", "list"),
    ("conditions.executornames", ["a", "a"], "conditions.executornames[1]", "already listed"),
    ("conditions.dependencies", [3], "conditions.dependencies[0]", "non-empty string"),
    ("conditions.processes-per-node", 1, "conditions.processes-per-node", "processespernode"),
    ("conditions.Walltime", 1, "conditions.Walltime", "did you mean 'walltime'"),
    ("maxexectime", -5, "maxexectime", "-1 (no limit)"),
    ("maxwaittime", -2, "maxwaittime", "-1 (no limit)"),
    ("maxretries", -3, "maxretries", "-1 (no limit)"),
    ("priority", 2**31, "priority", "from -2147483648 to 2147483647"),
    ("priority", "high", "priority", "integer"),
    ("funcname", "", "funcname", "required"),
    ("funcname", 7, "funcname", "string"),
    ("args", "one two", "args", "list"),
    ("args", [float("nan")], "args[0]", "finite"),
    ("args", [{1: 2}], "args[0]", "not a string"),
    ("args", [b"bytes"], "args[0]", "not a JSON value"),
    ("kwargs", [1], "kwargs", "JSON object"),
    ("env", {"1BAD": "x"}, 'env["1BAD"]', "variable name"),
    ("env", {"A B": "x"}, 'env["A B"]', "variable name"),
    ("env", {"PATH": 3}, "env.PATH", "string"),
    ("env", {"COLONYMESH_PROCESS_ID": "x"}, "env.COLONYMESH_PROCESS_ID", "reserved"),
    ("fs.mount", 3, "fs.mount", "string"),
    ("fs.dirs.0.dir", "../etc", "fs.dirs[0].dir", "'..'"),
    ("fs.dirs.0.keepfiles", "yes", "fs.dirs[0].keepfiles", "true or false"),
    (
        "fs.dirs.0.onconflicts.onstart.keeplocal",
        1,
        "fs.dirs[0].onconflicts.onstart.keeplocal",
        "true or false",
    ),
    (
        "fs.dirs.0.onconflicts.onstart.keep_locl",
        1,
        "fs.dirs[0].onconflicts.onstart.keep_locl",
        "did you mean 'keeplocal'",
    ),
    (
        "fs.snapshots.0.keepsnapshots",
        True,
        "fs.snapshots[0].keepsnapshots",
        "did you mean 'keepsnapshot'",
    ),
    ("fs.snapshots.0", "s1", "fs.snapshots[0]", "JSON object"),
    ("fs.snap", [], "fs.snap", "unknown field"),
    ("service", [1], "service", "JSON object"),
    ("funcName", "x", "funcName", "did you mean 'funcname'"),
    ("max_exec_time", 3, "max_exec_time", "did you mean 'maxexectime'"),
    ("bogus", 1, "bogus", "unknown field"),
]


@pytest.mark.parametrize(("field", "value", "path", "words"), MALFORMED)
def test_malformed_field_is_refused_by_name(field: str, value: Any, path: str, words: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_function_spec(with_field(field, value))
    assert caught.value.path == path
    assert words in caught.value.reason
    assert str(caught.value).startswith(f"{path}: ")


def test_missing_conditions_names_executortype() -> None:
    with pytest.raises(SpecError, match=r"^conditions\.executortype: is required"):
        parse_function_spec({"funcname": "f"})


def test_null_fields_take_defaults() -> None:
    obj = {key: None for key in ("nodename", "args", "kwargs", "priority", "label", "fs", "env")}
    spec = parse_function_spec({**obj, "funcname": "f", "conditions": {"executortype": "t"}})
    assert spec.args == () and spec.kwargs == {} and spec.env == ()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "not valid JSON"),
        ("{", "not valid JSON"),
        ('{"funcname":"f","funcname":"g"}', "appears twice"),
        ('{"funcname":"f","args":[NaN]}', "not a JSON number"),
        ("[1]", "JSON object"),
        ("[" * 50_000, "not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        ("1" * 5000, "not valid JSON"),
    ],
)
def test_bad_documents(text: str | bytes, words: str) -> None:
    with pytest.raises(SpecError, match=words):
        parse_function_spec(text)


def test_size_caps() -> None:
    with pytest.raises(SpecError, match=r"^args: holds more than"):
        parse_function_spec({**PYCOLONIES, "args": list(range(ARGS_COUNT_MAX + 1))})
    big = {**PYCOLONIES, "args": ["x" * (SPEC_JSON_BYTES_MAX // 2)] * 3}
    with pytest.raises(SpecError, match="bytes of JSON, more than"):
        parse_function_spec(big)
    with pytest.raises(SpecError, match="more than"):
        parse_function_spec(b" " * (SPEC_JSON_BYTES_MAX + 1))
    deep: Any = "leaf"
    for _ in range(40):
        deep = [deep]
    with pytest.raises(SpecError, match=r"^args\[0\](\[0\])*: nests deeper"):
        parse_function_spec({**PYCOLONIES, "args": [deep]})
