"""Kubernetes: function specs as batch/v1 Jobs (or apps/v1 Deployments for services).

``manifest`` translates (pure); ``names`` makes DNS-1123-safe names. The
executor that applies manifests through the official client builds on these.
"""

from colonymesh.executors.kubernetes.manifest import (
    KubernetesConfig,
    KubernetesConfigError,
    deployment_manifest,
    job_manifest,
    manifest_for,
)
from colonymesh.executors.kubernetes.names import workload_name

__all__ = [
    "KubernetesConfig",
    "KubernetesConfigError",
    "deployment_manifest",
    "job_manifest",
    "manifest_for",
    "workload_name",
]
