"""The Kubernetes executor kind's I/O driver: applies manifests through the official client.

Its own subpackage so that the modules directly under ``executors/kubernetes/``
stay the pure translator (no I/O, checked by
``tests/executors/test_imports.py``). See ``executor.py``.
"""

from colonymesh.executors.kubernetes.runtime.executor import (
    ATTRIBUTE_NAMESPACE,
    ATTRIBUTE_PODS,
    ATTRIBUTE_WORKLOAD,
    INPUT_ENV,
    KubernetesExecutor,
    KubernetesRuntimeConfig,
)

__all__ = [
    "ATTRIBUTE_NAMESPACE",
    "ATTRIBUTE_PODS",
    "ATTRIBUTE_WORKLOAD",
    "INPUT_ENV",
    "KubernetesExecutor",
    "KubernetesRuntimeConfig",
]
