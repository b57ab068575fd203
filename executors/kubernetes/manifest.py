"""Function spec -> Kubernetes manifests: a batch/v1 Job, or an apps/v1 Deployment for services.

What it owns: the pure translation of a validated ``FunctionSpec`` plus the
executor's ``KubernetesConfig`` into manifest dicts ready for the official
client (``create_namespaced_job(body=...)``) or ``kubectl apply``. It talks
to no cluster.

The mapping (ColonyOS's, with the gaps filled):

==================================  ========================================
spec                                manifest
==================================  ========================================
process id                          ``metadata.name`` (DNS-1123), annotation
                                    ``colonymesh.io/process-id``, env
                                    ``COLONYMESH_PROCESS_ID``
``conditions.nodes`` (> 1)          Job ``completions`` = ``parallelism`` =
                                    nodes, ``completionMode: Indexed`` (each
                                    pod reads its rank from
                                    ``JOB_COMPLETION_INDEX``); Deployment
                                    ``replicas``
``conditions.processespernode``     that many containers in the pod
``conditions.cpu`` (per process)    each container's cpu request = limit
``conditions.mem``/``storage``      memory / ephemeral-storage request =
(per node)                          limit, split evenly over the containers
``conditions.gpu.count`` (per node) ``nvidia.com/gpu`` limits, split evenly
``conditions.gpu.name``             ``nodeSelector`` on the configured GPU
                                    label (NVIDIA GPU feature discovery's
                                    ``nvidia.com/gpu.product`` by default)
``conditions.walltime`` (s)         Job ``activeDeadlineSeconds``
``maxretries``                      Job ``backoffLimit`` (-1: Kubernetes'
                                    default, 6)
``env``                             container ``env``
``fs.mount``                        a volume (the configured PVC, else an
                                    ``emptyDir``) mounted there
``kwargs["docker-image"]``          container ``image`` (else the config's)
funcname + args                     container ``command``
                                    (``node/spec/command.py``)
==================================  ========================================

Jobs get ``restartPolicy: Never``: a failed pod is retried by the Job's
``backoffLimit``, never restarted in place, so logs and exit codes of every
attempt stay visible. Requests equal limits, which gives the pod the
Guaranteed QoS class when cpu and mem are both asked for. The shape follows
``kubectl create job|deployment --dry-run=client -o yaml`` field by field
(tests/executors/test_kubernetes_kubectl.py) and validates against the
official OpenAPI schemas in strict mode (test_kubernetes_schema.py).
``gpu.mem`` and ``gpu.nodecount`` have no Kubernetes field; ``walltime``
does not apply to a Deployment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from colonymesh.executors.kubernetes.names import (
    container_name_from_image,
    is_dns1123_label,
    is_label_value,
    numbered,
    workload_name,
)
from colonymesh.node.spec import (
    FunctionSpec,
    SpecError,
    format_bytes,
    format_millicores,
    resolve_command,
    validate_function_spec,
)

__all__ = [
    "FS_VOLUME_NAME",
    "KubernetesConfig",
    "KubernetesConfigError",
    "deployment_manifest",
    "job_manifest",
    "manifest_for",
]

FS_VOLUME_NAME = "colonymesh-fs"
PROCESS_ID_ANNOTATION = "colonymesh.io/process-id"
FUNCNAME_ANNOTATION = "colonymesh.io/funcname"
MANAGED_BY = {"app.kubernetes.io/managed-by": "colonymesh"}
CONTAINERS_PER_POD_MAX = 64
INDEXED_COMPLETIONS_MAX = 100_000  # the API server's limit for completionMode: Indexed
_PULL_POLICIES = ("", "Always", "IfNotPresent", "Never")
_QUALIFIED_KEY = re.compile(
    r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?\Z"
)


class KubernetesConfigError(ValueError):
    """The executor's Kubernetes configuration (not the spec) is unusable."""


@dataclass(frozen=True, slots=True)
class KubernetesConfig:
    """What the executor's owner decides; the spec cannot change any of it."""

    namespace: str = ""
    # funcname -> argv prefix; the spec's args are appended (see node/spec/command.py)
    commands: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    allow_spec_commands: bool = False
    default_image: str = ""
    name_prefix: str = "colonymesh"
    gpu_resource: str = "nvidia.com/gpu"
    gpu_node_label: str = "nvidia.com/gpu.product"
    fs_claim_name: str = ""
    image_pull_policy: str = ""
    service_account: str = ""
    ttl_seconds_after_finished: int | None = None

    def check(self) -> None:
        """Raise ``KubernetesConfigError`` for values the API server would refuse."""
        for name in ("namespace", "fs_claim_name", "service_account"):
            value = getattr(self, name)
            if value and not is_dns1123_label(value):
                raise KubernetesConfigError(f"{name}: {value!r} is not a DNS-1123 label")
        if self.name_prefix and not is_dns1123_label(self.name_prefix):
            raise KubernetesConfigError(
                f"name_prefix: {self.name_prefix!r} is not a DNS-1123 label"
            )
        for name in ("gpu_resource", "gpu_node_label"):
            if not _QUALIFIED_KEY.match(getattr(self, name)):
                raise KubernetesConfigError(f"{name}: not a qualified Kubernetes name")
        if self.image_pull_policy not in _PULL_POLICIES:
            raise KubernetesConfigError(f"image_pull_policy: must be one of {_PULL_POLICIES[1:]}")
        ttl = self.ttl_seconds_after_finished
        if ttl is not None and not 0 <= ttl <= 2**31 - 1:
            raise KubernetesConfigError("ttl_seconds_after_finished: must be a non-negative int32")


def _split(total: int, parts: int, index: int) -> int:
    """``total`` shared by ``parts``, remainder to the first ones."""
    base, extra = divmod(total, parts)
    return base + (1 if index < extra else 0)


def _resources(
    spec: FunctionSpec, config: KubernetesConfig, index: int, count: int
) -> dict[str, object]:
    c = spec.conditions
    amounts: dict[str, str] = {}
    if c.cpu_millicores:
        amounts["cpu"] = format_millicores(c.cpu_millicores)
    for key, total in (("memory", c.mem_bytes), ("ephemeral-storage", c.storage_bytes)):
        share = _split(total or 0, count, index)
        if share:
            amounts[key] = format_bytes(share)
    resources: dict[str, object] = {}
    if amounts:
        resources = {"limits": dict(amounts), "requests": dict(amounts)}
    gpus = _split(c.gpu.count, count, index)
    if gpus:
        limits = resources.setdefault("limits", {})
        if isinstance(limits, dict):
            limits[config.gpu_resource] = str(gpus)
    return resources


def _containers(
    spec: FunctionSpec, process_id: str, config: KubernetesConfig, name: str, *, single_name: str
) -> list[dict[str, object]]:
    command = resolve_command(
        spec,
        config.commands,
        allow_spec_commands=config.allow_spec_commands,
        default_image=config.default_image,
    )
    if not command.image:
        raise SpecError(
            "kwargs.docker-image",
            "is required to run on Kubernetes (or set default_image in the executor's config)",
        )
    count = max(1, spec.conditions.processespernode)
    if count > CONTAINERS_PER_POD_MAX:
        raise SpecError(
            "conditions.processespernode",
            f"is more than {CONTAINERS_PER_POD_MAX} containers per pod",
        )
    env = [{"name": "COLONYMESH_PROCESS_ID", "value": process_id}]
    env += [{"name": key, "value": value} for key, value in spec.env]
    containers: list[dict[str, object]] = []
    for index in range(count):
        container: dict[str, object] = {
            "command": list(command.argv),
            "env": env,
            "image": command.image,
            "name": single_name if count == 1 else numbered(name, index),
            "resources": _resources(spec, config, index, count),
        }
        if config.image_pull_policy:
            container["imagePullPolicy"] = config.image_pull_policy
        if spec.fs.mount:
            container["volumeMounts"] = [{"mountPath": spec.fs.mount, "name": FS_VOLUME_NAME}]
        containers.append(container)
    return containers


def _pod_spec(
    spec: FunctionSpec, config: KubernetesConfig, containers: list[dict[str, object]]
) -> dict[str, object]:
    pod: dict[str, object] = {"containers": containers}
    gpu_name = spec.conditions.gpu.name
    if gpu_name:
        if not is_label_value(gpu_name):
            raise SpecError(
                "conditions.gpu.name", "is not a Kubernetes label value ([A-Za-z0-9._-], ≤ 63)"
            )
        pod["nodeSelector"] = {config.gpu_node_label: gpu_name}
    if spec.fs.mount:
        if not spec.fs.mount.startswith("/") or ":" in spec.fs.mount:
            raise SpecError(
                "fs.mount", "must be an absolute path without ':' to mount on Kubernetes"
            )
        source: dict[str, object] = (
            {"persistentVolumeClaim": {"claimName": config.fs_claim_name}}
            if config.fs_claim_name
            else {"emptyDir": {}}
        )
        pod["volumes"] = [{"name": FS_VOLUME_NAME, **source}]
    if config.service_account:
        pod["serviceAccountName"] = config.service_account
    return pod


def _metadata(
    spec: FunctionSpec, process_id: str, config: KubernetesConfig, name: str, labels: dict[str, str]
) -> dict[str, object]:
    metadata: dict[str, object] = {
        "annotations": {PROCESS_ID_ANNOTATION: process_id, FUNCNAME_ANNOTATION: spec.funcname},
        "labels": labels,
        "name": name,
    }
    if config.namespace:
        metadata["namespace"] = config.namespace
    return metadata


def _check_process_id(process_id: str) -> None:
    if not process_id or len(process_id) > 256 or not process_id.isprintable():
        raise ValueError("process_id must be 1 to 256 printable characters")


def job_manifest(
    spec: FunctionSpec, process_id: str, config: KubernetesConfig
) -> dict[str, object]:
    """The batch/v1 Job running ``spec`` as process ``process_id``.

    Raises ``SpecError`` (field-named) when the spec asks for something this
    executor cannot express, ``KubernetesConfigError`` for a bad config.
    """
    _check_process_id(process_id)
    config.check()
    spec = validate_function_spec(spec)
    name = workload_name(config.name_prefix, process_id)
    labels = {**MANAGED_BY, "colonymesh.io/workload": name}
    containers = _containers(spec, process_id, config, name, single_name=name)
    pod = _pod_spec(spec, config, containers)
    pod["restartPolicy"] = "Never"
    job_spec: dict[str, object] = {"template": {"metadata": {"labels": dict(labels)}, "spec": pod}}
    nodes = spec.conditions.nodes
    if nodes > INDEXED_COMPLETIONS_MAX:
        raise SpecError(
            "conditions.nodes", f"is more than {INDEXED_COMPLETIONS_MAX} pods of an Indexed Job"
        )
    if nodes > 1:
        job_spec.update(completions=nodes, parallelism=nodes, completionMode="Indexed")
    if spec.maxretries >= 0:
        job_spec["backoffLimit"] = spec.maxretries
    if spec.conditions.walltime:
        job_spec["activeDeadlineSeconds"] = spec.conditions.walltime
    if config.ttl_seconds_after_finished is not None:
        job_spec["ttlSecondsAfterFinished"] = config.ttl_seconds_after_finished
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(spec, process_id, config, name, labels),
        "spec": job_spec,
    }


def deployment_manifest(
    spec: FunctionSpec, process_id: str, config: KubernetesConfig
) -> dict[str, object]:
    """The apps/v1 Deployment running ``spec`` as a long-lived service (``replicas`` = nodes)."""
    _check_process_id(process_id)
    config.check()
    spec = validate_function_spec(spec)
    name = workload_name(config.name_prefix, process_id)
    labels = {"app": name, **MANAGED_BY}
    image_probe = resolve_command(
        spec,
        config.commands,
        allow_spec_commands=config.allow_spec_commands,
        default_image=config.default_image,
    )
    single = container_name_from_image(image_probe.image) or name
    containers = _containers(spec, process_id, config, name, single_name=single)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(spec, process_id, config, name, labels),
        "spec": {
            "replicas": max(1, spec.conditions.nodes),
            "selector": {"matchLabels": {"app": name}},
            "strategy": {},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": _pod_spec(spec, config, containers),
            },
        },
    }


def manifest_for(
    spec: FunctionSpec, process_id: str, config: KubernetesConfig
) -> dict[str, object]:
    """A Deployment when the spec carries ColonyOS's ``service`` object, else a Job."""
    if spec.service is not None:
        return deployment_manifest(spec, process_id, config)
    return job_manifest(spec, process_id, config)
