"""A malformed spec for each kind of executor is refused with a message naming the field.

Twice over: at submission (``parse_function_spec``, the same for every
kind), and again inside the Slurm and Kubernetes translators for a spec
that was built by hand and never parsed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from colonymesh.executors.kubernetes import KubernetesConfig, deployment_manifest, job_manifest
from colonymesh.executors.slurm import SlurmConfig, to_sbatch
from colonymesh.node.spec import FunctionSpec, Gpu, SpecError, parse_function_spec

KINDS = ("python", "process", "slurm", "kubernetes")

# (JSON change to a good spec's conditions, error path, words in the message)
MALFORMED = [
    ({"cpu": "2 cores"}, "conditions.cpu", "not a Kubernetes quantity"),
    ({"cpu": "-500m"}, "conditions.cpu", "negative"),
    ({"mem": "lots"}, "conditions.mem", "not a Kubernetes quantity"),
    ({"walltime": -60}, "conditions.walltime", "non-negative number of seconds"),
    ({"gpu": {"count": 1, "model": "a100"}}, "conditions.gpu.model", "unknown field"),
    ({"gpu": {"cont": 1}}, "conditions.gpu.cont", "did you mean 'count'"),
    ({"gpu": {"count": -2}}, "conditions.gpu.count", "non-negative integer"),
]


def good(kind: str) -> dict[str, Any]:
    return {
        "funcname": "run",
        "conditions": {
            "executortype": f"{kind}-executor",
            "cpu": "1",
            "mem": "1Gi",
            "walltime": 60,
        },
        "kwargs": {"docker-image": "busybox"},
    }


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("change", "path", "words"), MALFORMED)
def test_refused_at_submission(kind: str, change: dict[str, Any], path: str, words: str) -> None:
    obj = good(kind)
    obj["conditions"].update(change)
    with pytest.raises(SpecError) as caught:
        parse_function_spec(obj)
    assert caught.value.path == path
    assert words in caught.value.reason
    assert str(caught.value).startswith(path + ":")


Translate = Callable[[FunctionSpec], object]
TRANSLATORS: dict[str, Translate] = {
    "slurm": lambda s: to_sbatch(
        s, "p1", SlurmConfig(log_dir="/logs", commands={"run": ("true",)})
    ),
    "kubernetes-job": lambda s: job_manifest(
        s, "p1", KubernetesConfig(commands={"run": ("true",)})
    ),
    "kubernetes-deployment": lambda s: deployment_manifest(
        s, "p1", KubernetesConfig(commands={"run": ("true",)})
    ),
}


def hand_built(field: str, value: object) -> FunctionSpec:
    spec = parse_function_spec(good("slurm"))
    if field == "gpu.count":
        gpu = dataclasses.replace(spec.conditions.gpu, count=value)  # type: ignore[arg-type]
        return dataclasses.replace(spec, conditions=dataclasses.replace(spec.conditions, gpu=gpu))
    return dataclasses.replace(
        spec, conditions=dataclasses.replace(spec.conditions, **{field: value})
    )


@pytest.mark.parametrize("translator", sorted(TRANSLATORS))
@pytest.mark.parametrize(
    ("field", "value", "path"),
    [
        ("cpu", "2 cores", "conditions.cpu"),
        ("mem", "-1Gi", "conditions.mem"),
        ("walltime", -60, "conditions.walltime"),
        ("gpu.count", -1, "conditions.gpu.count"),
        ("executortype", "", "conditions.executortype"),
    ],
)
def test_hand_built_specs_are_refused_by_translators(
    translator: str, field: str, value: object, path: str
) -> None:
    with pytest.raises(SpecError) as caught:
        TRANSLATORS[translator](hand_built(field, value))
    assert caught.value.path.startswith(path)


@pytest.mark.parametrize("translator", sorted(TRANSLATORS))
def test_good_spec_translates(translator: str) -> None:
    assert TRANSLATORS[translator](parse_function_spec(good("any"))) is not None
    assert isinstance(parse_function_spec(good("any")).conditions.gpu, Gpu)
