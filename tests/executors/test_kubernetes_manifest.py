"""Spec -> Job/Deployment: the ColonyOS mapping, names, and field-named refusals."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from colonymesh.executors.kubernetes import (
    KubernetesConfig,
    KubernetesConfigError,
    deployment_manifest,
    job_manifest,
    manifest_for,
    workload_name,
)
from colonymesh.executors.kubernetes.names import (
    container_name_from_image,
    is_dns1123_label,
    is_label_value,
    numbered,
)
from colonymesh.node.spec import SpecError, parse_function_spec

CONFIG = KubernetesConfig(commands={"train": ("python3", "-m", "train")})
IMAGE = {"docker-image": "tensorflow/tensorflow:2.14.0-gpu"}


def spec(conditions: dict[str, Any] | None = None, **extra: Any) -> Any:
    extra.setdefault("kwargs", IMAGE)
    return parse_function_spec(
        {"funcname": "train", "conditions": {"executortype": "k8s", **(conditions or {})}, **extra}
    )


def pod_of(manifest: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = manifest["spec"]["template"]["spec"]
    return pod


def test_minimal_job() -> None:
    job: Any = job_manifest(spec(args=["--epochs", 3]), "p1", CONFIG)
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    assert job["metadata"]["name"] == "colonymesh-p1"
    assert job["metadata"]["annotations"]["colonymesh.io/process-id"] == "p1"
    assert job["spec"]["backoffLimit"] == 0  # maxretries defaults to 0
    assert "completions" not in job["spec"] and "activeDeadlineSeconds" not in job["spec"]
    pod = pod_of(job)
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["name"] == "colonymesh-p1"
    assert container["image"] == "tensorflow/tensorflow:2.14.0-gpu"
    assert container["command"] == ["python3", "-m", "train", "--epochs", "3"]
    assert container["env"] == [{"name": "COLONYMESH_PROCESS_ID", "value": "p1"}]
    assert container["resources"] == {}


def test_full_mapping() -> None:
    job: Any = job_manifest(
        spec(
            {
                "nodes": 4,
                "processespernode": 2,
                "cpu": "1500m",
                "mem": "3Gi",
                "storage": "10G",
                "walltime": 3600,
                "gpu": {"name": "NVIDIA-A100-SXM4-40GB", "count": 3},
            },
            maxretries=5,
            env={"OMP_NUM_THREADS": "4"},
            fs={"mount": "/cfs"},
        ),
        "p2",
        KubernetesConfig(commands=CONFIG.commands, fs_claim_name="cfs", namespace="colony"),
    )
    s = job["spec"]
    assert (s["completions"], s["parallelism"], s["completionMode"]) == (4, 4, "Indexed")
    assert s["backoffLimit"] == 5
    assert s["activeDeadlineSeconds"] == 3600
    assert job["metadata"]["namespace"] == "colony"
    pod = pod_of(job)
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB"}
    assert pod["volumes"] == [
        {"name": "colonymesh-fs", "persistentVolumeClaim": {"claimName": "cfs"}}
    ]
    first, second = pod["containers"]
    assert (first["name"], second["name"]) == ("colonymesh-p2-0", "colonymesh-p2-1")
    # cpu is per process; mem, storage and GPUs are per node, split over the containers
    assert first["resources"] == {
        "limits": {
            "cpu": "1500m",
            "memory": "1536Mi",
            "ephemeral-storage": "5G",
            "nvidia.com/gpu": "2",
        },
        "requests": {"cpu": "1500m", "memory": "1536Mi", "ephemeral-storage": "5G"},
    }
    assert second["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert first["volumeMounts"] == [{"mountPath": "/cfs", "name": "colonymesh-fs"}]
    assert first["env"] == [
        {"name": "COLONYMESH_PROCESS_ID", "value": "p2"},
        {"name": "OMP_NUM_THREADS", "value": "4"},
    ]


def test_emptydir_when_no_claim_and_unlimited_retries_keep_kubernetes_default() -> None:
    job: Any = job_manifest(spec(fs={"mount": "/cfs"}, maxretries=-1), "p", CONFIG)
    assert pod_of(job)["volumes"] == [{"name": "colonymesh-fs", "emptyDir": {}}]
    assert "backoffLimit" not in job["spec"]


def test_deployment_for_services() -> None:
    service = spec({"nodes": 3}, service={"port": 8080})
    dep: Any = manifest_for(service, "web1", CONFIG)
    assert dep["kind"] == "Deployment" and dep["apiVersion"] == "apps/v1"
    assert dep["spec"]["replicas"] == 3
    assert dep["spec"]["selector"] == {"matchLabels": {"app": "colonymesh-web1"}}
    assert dep["spec"]["template"]["metadata"]["labels"]["app"] == "colonymesh-web1"
    assert "restartPolicy" not in pod_of(dep)  # a Deployment restarts: Kubernetes' default Always
    assert pod_of(dep)["containers"][0]["name"] == "tensorflow"  # kubectl's rule
    assert manifest_for(spec(), "j", CONFIG)["kind"] == "Job"
    assert deployment_manifest(spec(), "x", CONFIG)["spec"]["replicas"] == 1  # type: ignore[index]


def test_image_from_config_and_colonyos_cmd() -> None:
    config = KubernetesConfig(default_image="ubuntu:22.04", allow_spec_commands=True)
    job: Any = job_manifest(spec(kwargs={"cmd": "echo hi", "args": ["x", 1]}), "p", config)
    (container,) = pod_of(job)["containers"]
    assert container["image"] == "ubuntu:22.04"
    assert container["command"] == ["echo", "hi", "x", "1"]


@pytest.mark.parametrize(
    ("kwargs", "extra", "path"),
    [
        ({}, {}, "kwargs.docker-image"),
        ({"docker-image": "-v /:/host"}, {}, "kwargs.docker-image"),
        (
            IMAGE,
            {"conditions": {"executortype": "k8s", "gpu": {"name": "a100 x", "count": 1}}},
            "conditions.gpu.name",
        ),
        (IMAGE, {"fs": {"mount": "cfs"}}, "fs.mount"),
        (
            IMAGE,
            {"conditions": {"executortype": "k8s", "processespernode": 65}},
            "conditions.processespernode",
        ),
        (IMAGE, {"funcname": "unregistered"}, "funcname"),
        (IMAGE, {"conditions": {"executortype": "k8s", "nodes": 100_001}}, "conditions.nodes"),
    ],
)
def test_inexpressible_specs_are_refused_by_field(
    kwargs: dict[str, Any], extra: dict[str, Any], path: str
) -> None:
    obj = {"funcname": "train", "conditions": {"executortype": "k8s"}, "kwargs": kwargs, **extra}
    with pytest.raises(SpecError) as caught:
        job_manifest(parse_function_spec(obj), "p", CONFIG)
    assert caught.value.path == path


@pytest.mark.parametrize(
    "config",
    [
        KubernetesConfig(namespace="Bad_NS"),
        KubernetesConfig(fs_claim_name="a b"),
        KubernetesConfig(name_prefix="-x"),
        KubernetesConfig(gpu_resource="nvidia.com/gpu x"),
        KubernetesConfig(image_pull_policy="Sometimes"),
        KubernetesConfig(ttl_seconds_after_finished=-1),
    ],
)
def test_bad_config_is_refused(config: KubernetesConfig) -> None:
    with pytest.raises(KubernetesConfigError):
        job_manifest(spec(), "p", config)


def test_bad_process_id_is_refused() -> None:
    for bad in ("", "a\nb", "x" * 300):
        with pytest.raises(ValueError):
            job_manifest(spec(), bad, CONFIG)


def test_names() -> None:
    assert workload_name("colonymesh", "abc") == "colonymesh-abc"
    long_id = "f" * 64
    name = workload_name("colonymesh", long_id)
    assert len(name) <= 63 and is_dns1123_label(name)
    assert name != workload_name("colonymesh", "f" * 63 + "e")
    assert workload_name("colonymesh", "ABC") != workload_name(
        "colonymesh", "abc"
    )  # case is kept apart
    assert is_dns1123_label(workload_name("", "___"))
    assert numbered("a" * 63, 12) == "a" * 60 + "-12"
    assert container_name_from_image("ghcr.io/org/web-server:2.0") == "web-server"
    assert container_name_from_image("busybox@sha256:" + "0" * 64) == "busybox"
    assert container_name_from_image("localhost:5000/App.Server") is None
    assert (
        is_label_value("NVIDIA-A100_40GB.x")
        and not is_label_value("-x")
        and not is_label_value("a" * 64)
    )


@given(
    st.text(min_size=1, max_size=200).filter(str.isprintable),
    st.sampled_from(["", "colonymesh", "cm"]),
)
def test_workload_names_are_always_dns1123(process_id: str, prefix: str) -> None:
    assert is_dns1123_label(workload_name(prefix, process_id))
