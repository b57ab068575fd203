"""Every generated manifest validates against the official Kubernetes OpenAPI schemas, strictly.

Uses the ``kubernetes-validate`` package (a dev dependency), which ships the
schemas of each Kubernetes release; strict mode refuses unknown properties.
Three releases are checked: the oldest the package ships, a middle one, and
the newest.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from colonymesh.executors.kubernetes import (
    KubernetesConfig,
    deployment_manifest,
    job_manifest,
)
from colonymesh.node.spec import SpecError, parse_function_spec

kubernetes_validate = pytest.importorskip("kubernetes_validate")

VERSIONS = ("1.25.0", "1.30.0", "1.37.0")
CONFIG = KubernetesConfig(commands={"train": ("python3", "-m", "train"), "echo": ("echo",)})
FULL_CONFIG = KubernetesConfig(
    namespace="colony",
    commands=CONFIG.commands,
    fs_claim_name="cfs-claim",
    image_pull_policy="IfNotPresent",
    service_account="runner",
    ttl_seconds_after_finished=300,
)

SPECS: dict[str, dict[str, Any]] = {
    "minimal": {
        "funcname": "echo",
        "conditions": {"executortype": "k8s"},
        "kwargs": {"docker-image": "busybox"},
    },
    "full": {
        "funcname": "train",
        "args": ["--lr", 0.01, True, None, {"a": [1]}],
        "env": {"OMP_NUM_THREADS": "4", "MULTI": "line\nvalue"},
        "maxretries": 3,
        "conditions": {
            "executortype": "k8s",
            "nodes": 4,
            "processespernode": 3,
            "cpu": "250m",
            "mem": "10G",
            "storage": "1Ti",
            "walltime": 86_400,
            "gpu": {"name": "NVIDIA-H100-80GB-HBM3", "count": 8, "mem": "80Gi"},
        },
        "fs": {"mount": "/cfs", "dirs": [{"label": "/data", "dir": "/data"}]},
        "kwargs": {"docker-image": "nvcr.io/nvidia/pytorch:24.01-py3"},
    },
    "service": {
        "funcname": "echo",
        "service": {"port": 80},
        "conditions": {"executortype": "k8s", "nodes": 2, "cpu": "1", "mem": "256Mi"},
        "kwargs": {"docker-image": "ghcr.io/org/web-server:2.0"},
    },
}


def validate(manifest: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(manifest, version, strict=True)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("config", [CONFIG, FULL_CONFIG], ids=["plain", "configured"])
def test_job_and_deployment_validate_strictly(
    name: str, version: str, config: KubernetesConfig
) -> None:
    spec = parse_function_spec(SPECS[name])
    validate(job_manifest(spec, "f" * 64, config), version)
    validate(deployment_manifest(spec, "f" * 64, config), version)


@pytest.mark.parametrize("version", VERSIONS)
def test_strict_mode_really_refuses_unknown_fields(version: str) -> None:
    manifest: Any = job_manifest(parse_function_spec(SPECS["minimal"]), "p", CONFIG)
    broken = copy.deepcopy(manifest)
    broken["spec"]["template"]["spec"]["containers"][0]["commands"] = ["oops"]
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken, version)
    wrong_type = copy.deepcopy(manifest)
    wrong_type["spec"]["backoffLimit"] = "3"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(wrong_type, version)


quantities = st.sampled_from(["", "1", "100m", "1500m", "2", "64"])
byte_quantities = st.sampled_from(["", "1", "1k", "512Mi", "10G", "3Gi", "1.5Ki", "7"])


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "funcname": "train",
        "args": draw(
            st.lists(
                # NUL cannot travel in an argv: the translators refuse it by field name
                # (tested elsewhere), so the specs that must validate avoid it.
                st.text(max_size=10).filter(lambda v: "\x00" not in v)
                | st.integers(-(2**63) + 1, 2**63 - 1)
                | st.booleans(),
                max_size=4,
            )
        ),
        "maxretries": draw(st.integers(-1, 20)),
        "env": draw(
            st.dictionaries(
                st.from_regex(r"[A-Z_][A-Z0-9_]{0,6}", fullmatch=True).filter(
                    lambda k: not k.startswith("COLONYMESH_")
                ),
                st.text(max_size=8).filter(lambda v: "\x00" not in v),
                max_size=3,
            )
        ),
        "conditions": {
            "executortype": "k8s",
            "nodes": draw(st.integers(0, 10)),
            "processespernode": draw(st.integers(0, 4)),
            "cpu": draw(quantities),
            "mem": draw(byte_quantities),
            "storage": draw(byte_quantities),
            "walltime": draw(st.integers(0, 10**6)),
            "gpu": {
                "count": draw(st.integers(0, 8)),
                "name": draw(st.sampled_from(["", "a100", "NVIDIA-L4"])),
            },
        },
        "fs": {"mount": draw(st.sampled_from(["", "/cfs", "/mnt/data"]))},
        "kwargs": {
            "docker-image": draw(
                st.sampled_from(["busybox", "ghcr.io/a/b:1", "localhost:5000/x@sha256:" + "a" * 64])
            )
        },
    }


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs(), st.text(min_size=1, max_size=80).filter(str.isprintable))
def test_random_specs_validate_strictly(obj: dict[str, Any], process_id: str) -> None:
    spec = parse_function_spec(obj)
    for version in (VERSIONS[0], VERSIONS[-1]):
        validate(job_manifest(spec, process_id, FULL_CONFIG), version)
        validate(deployment_manifest(spec, process_id, FULL_CONFIG), version)


def test_a_nul_in_an_argument_is_refused_by_field_name() -> None:
    spec = parse_function_spec({**SPECS["minimal"], "args": ["ok", "bad\x00arg"]})
    with pytest.raises(SpecError, match=r"argv\[\d+\]"):
        job_manifest(spec, "p", CONFIG)
