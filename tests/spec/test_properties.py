"""Property tests: random valid specs round-trip; random junk yields only SpecError."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from colonymesh.node.spec import (
    FunctionSpec,
    SpecError,
    WorkflowSpec,
    parse_function_spec,
    parse_workflow_spec,
)
from colonymesh.node.spec.parse import CONDITIONS_FIELDS, FUNCTION_SPEC_FIELDS

names = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=12)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
cpu = st.sampled_from(["", "500m", "2", "0.25", "1500m", "1e3", "4k"])
mem = st.sampled_from(["", "1Gi", "512Mi", "10G", "1.5Ki", "100", "2E", "3Ti"])
env_names = st.from_regex(r"[A-BD-Z_][A-Z0-9_]{0,8}", fullmatch=True)
paths = st.from_regex(r"(/[a-z0-9._-]{1,6}){0,3}", fullmatch=True).filter(
    lambda p: ".." not in p.split("/")
)


@st.composite
def function_specs(draw: st.DrawFn) -> dict[str, Any]:
    conditions = {
        "colonyname": draw(st.sampled_from(["", "dev"])),
        "executortype": draw(names),
        "executornames": draw(st.lists(names, max_size=3, unique=True)),
        "locationname": draw(st.sampled_from(["", "lab"])),
        "dependencies": draw(st.lists(names, max_size=3, unique=True)),
        "nodes": draw(st.integers(0, 64)),
        "cpu": draw(cpu),
        "processes": draw(st.integers(0, 1000)),
        "processespernode": draw(st.integers(0, 16)),
        "mem": draw(mem),
        "storage": draw(mem),
        "gpu": {
            "name": draw(st.sampled_from(["", "a100", "h100"])),
            "mem": draw(mem),
            "count": draw(st.integers(0, 8)),
            "nodecount": draw(st.integers(0, 4)),
        },
        "walltime": draw(st.integers(0, 10**6)),
    }
    spec: dict[str, Any] = {
        "nodename": draw(st.sampled_from(["", "a", "b"])),
        "funcname": draw(names),
        "args": draw(st.lists(json_values, max_size=4)),
        "kwargs": draw(st.dictionaries(st.text(max_size=8), json_values, max_size=3)),
        "priority": draw(st.integers(-(2**31), 2**31 - 1)),
        "maxwaittime": draw(st.integers(-1, 10**6)),
        "maxexectime": draw(st.integers(-1, 10**6)),
        "maxretries": draw(st.integers(-1, 100)),
        "conditions": conditions,
        "label": draw(paths),
        "fs": {
            "mount": draw(paths),
            "snapshots": [
                {
                    "snapshotid": "s",
                    "label": draw(paths),
                    "dir": draw(paths),
                    "keepfiles": draw(st.booleans()),
                    "keepsnapshot": False,
                }
            ][: draw(st.integers(0, 1))],
            "dirs": [
                {
                    "label": draw(paths),
                    "dir": draw(paths),
                    "keepfiles": draw(st.booleans()),
                    "onconflicts": {
                        "onstart": {"keeplocal": draw(st.booleans())},
                        "onclose": {"keeplocal": True},
                    },
                }
            ][: draw(st.integers(0, 1))],
        },
        "env": draw(
            st.dictionaries(
                env_names, st.text(max_size=10).filter(lambda v: "\x00" not in v), max_size=3
            )
        ),
    }
    # Drop some optional fields: absent must mean the same as the default.
    for key in draw(
        st.lists(st.sampled_from(["args", "kwargs", "fs", "env", "label", "priority"]), max_size=3)
    ):
        spec.pop(key, None)
    return spec


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(function_specs())
def test_random_valid_specs_round_trip(obj: dict[str, Any]) -> None:
    spec = parse_function_spec(obj)
    assert isinstance(spec, FunctionSpec)
    text = spec.to_json()
    again = parse_function_spec(text)
    assert again == spec
    assert again.to_json() == text  # byte-identical: normalisation is a fixed point
    assert spec.funcname == obj["funcname"]
    assert spec.conditions.nodes == obj["conditions"]["nodes"]
    expected_wait = obj["maxwaittime"] if obj["maxwaittime"] != 0 else -1
    assert spec.maxwaittime == expected_wait


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(function_specs(), min_size=1, max_size=5))
def test_random_chains_round_trip_as_workflows(objs: list[dict[str, Any]]) -> None:
    for index, obj in enumerate(objs):
        obj["nodename"] = f"n{index}"
        obj["conditions"]["colonyname"] = "dev"
        obj["conditions"]["dependencies"] = [f"n{index - 1}"] if index else []
    wf = parse_workflow_spec({"colonyname": "dev", "functionspecs": objs})
    assert isinstance(wf, WorkflowSpec)
    assert wf.topological_order() == tuple(f"n{i}" for i in range(len(objs)))
    assert parse_workflow_spec(wf.to_json()) == wf


def assert_only_spec_error(obj: object) -> None:
    with contextlib.suppress(SpecError):
        parse_function_spec(obj)
    with contextlib.suppress(SpecError):
        parse_workflow_spec(obj)


junk_keys = st.sampled_from(
    [*FUNCTION_SPEC_FIELDS, *CONDITIONS_FIELDS, "gpu", "count", "dirs", "x"]
)
junk_values = st.recursive(
    json_scalars | st.binary(max_size=4) | st.just(float("nan")) | st.integers(),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(junk_keys | st.integers(), inner, max_size=4)
    ),
    max_leaves=15,
)


@settings(max_examples=300, deadline=None)
@given(junk_values)
def test_random_junk_raises_only_spec_error(obj: object) -> None:
    assert_only_spec_error(obj)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(function_specs(), st.data())
def test_mutated_valid_specs_raise_only_spec_error(
    obj: dict[str, Any], data: st.DataObject
) -> None:
    target: Any = obj
    for _ in range(data.draw(st.integers(1, 3))):
        if not isinstance(target, dict) or not target:
            break
        key = data.draw(st.sampled_from(sorted(target)))
        if isinstance(target[key], dict) and data.draw(st.booleans()):
            target = target[key]
        else:
            target[key] = data.draw(junk_values)
            break
    assert_only_spec_error(obj)
    assert_only_spec_error(json.dumps(obj, default=repr))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_random_text_raises_only_spec_error(blob: bytes | str) -> None:
    assert_only_spec_error(blob)


@pytest.mark.slow
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(function_specs(), junk_values, st.data())
def test_long_fuzz_only_spec_error(obj: dict[str, Any], junk: object, data: st.DataObject) -> None:
    assert_only_spec_error(junk)
    conditions = obj["conditions"]
    conditions[data.draw(st.sampled_from(sorted(conditions)))] = junk
    assert_only_spec_error(obj)
