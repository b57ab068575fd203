"""Field-by-field comparison with ``kubectl create job|deployment --dry-run=client``.

For specs that kubectl can express (an image, a command, a replica count),
every field kubectl writes must appear in colonymesh's manifest with the
same value, and every field colonymesh adds must be one of the documented,
deliberate additions below.

kubectl's output is recorded in ``fixtures/kubectl/*.json``, made by a real
kubectl (the client version is stored with each fixture), so the comparison
runs on machines without kubectl. Where kubectl is on PATH, the live test
runs it again and compares against it directly; setting
``COLONYMESH_REWRITE_FIXTURES=1`` rewrites the fixtures from it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from colonymesh.executors.kubernetes import (
    KubernetesConfig,
    deployment_manifest,
    job_manifest,
    workload_name,
)
from colonymesh.node.spec import parse_function_spec

FIXTURES = Path(__file__).parent / "fixtures" / "kubectl"
CONFIG = KubernetesConfig(commands={"echo": ("echo",), "nginx": ("nginx",), "sh": ("sh", "-c")})

# Fields kubectl prints that the API server fills in, not the client.
IGNORED = ("metadata.creationTimestamp", "spec.template.metadata.creationTimestamp", "status")

# What colonymesh adds on purpose (see executors/kubernetes/manifest.py).
ADDITIONS = (
    "metadata.annotations.",  # colonymesh.io/process-id, colonymesh.io/funcname
    "metadata.labels.",  # app.kubernetes.io/managed-by, colonymesh.io/workload
    "spec.template.metadata.labels.",
    "spec.backoffLimit",  # from maxretries
    "spec.template.spec.containers[0].env",  # COLONYMESH_PROCESS_ID and the spec's env
)

LONG_ID = "0123456789abcdef" * 4

CASES: dict[str, tuple[str, str, dict[str, Any], list[str]]] = {
    # name: (kind, process id, spec, kubectl arguments after "create")
    "job_echo": (
        "job",
        "p1",
        {
            "funcname": "echo",
            "args": ["hello", "two words", "$(id)", 3],
            "kwargs": {"docker-image": "busybox:1.36"},
        },
        ["job", "{name}", "--image=busybox:1.36", "--", "echo", "hello", "two words", "$(id)", "3"],
    ),
    "job_long_id": (
        "job",
        LONG_ID,
        {"funcname": "sh", "args": ["echo $HOME; ls"], "kwargs": {"docker-image": "ubuntu:22.04"}},
        ["job", "{name}", "--image=ubuntu:22.04", "--", "sh", "-c", "echo $HOME; ls"],
    ),
    "deployment_replicas": (
        "deployment",
        "web1",
        {
            "funcname": "nginx",
            "args": ["-g", "daemon off;"],
            "service": {},
            "conditions": {"executortype": "k8s", "nodes": 3},
            "kwargs": {"docker-image": "nginx:1.25"},
        },
        [
            "deployment",
            "{name}",
            "--image=nginx:1.25",
            "--replicas=3",
            "--",
            "nginx",
            "-g",
            "daemon off;",
        ],
    ),
    "deployment_registry_image": (
        "deployment",
        "web2",
        {
            "funcname": "echo",
            "args": ["up"],
            "service": {},
            "kwargs": {"docker-image": "ghcr.io/org/web-server:2.0"},
        },
        ["deployment", "{name}", "--image=ghcr.io/org/web-server:2.0", "--", "echo", "up"],
    ),
}


def ours(case: str) -> dict[str, Any]:
    kind, process_id, obj, _ = CASES[case]
    spec = parse_function_spec({"conditions": {"executortype": "k8s"}, **obj})
    build = job_manifest if kind == "job" else deployment_manifest
    manifest: dict[str, Any] = build(spec, process_id, CONFIG)
    return manifest


def kubectl_argv(case: str) -> list[str]:
    _, process_id, _, args = CASES[case]
    name = workload_name(CONFIG.name_prefix, process_id)
    words = [a.replace("{name}", name) for a in args]
    split = words.index("--")  # kubectl's own flags must come before the command
    return ["kubectl", "create", *words[:split], "--dry-run=client", "-o", "json", *words[split:]]


def leaves(value: Any, path: str = "") -> dict[str, Any]:
    """Flatten to {dotted path: leaf}; empty objects and lists are leaves too."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(leaves(item, f"{path}.{key}" if path else key))
        return out
    if isinstance(value, list) and value:
        out = {}
        for index, item in enumerate(value):
            out.update(leaves(item, f"{path}[{index}]"))
        return out
    return {path: value}


def compare(theirs: dict[str, Any], mine: dict[str, Any]) -> None:
    expected = {p: v for p, v in leaves(theirs).items() if not p.startswith(IGNORED)}
    actual = leaves(mine)
    for path, value in expected.items():
        assert path in actual, f"kubectl writes {path}={value!r}; colonymesh does not"
        assert actual[path] == value, f"{path}: kubectl {value!r}, colonymesh {actual[path]!r}"
    for path in actual.keys() - expected.keys():
        assert path.startswith(ADDITIONS), (
            f"colonymesh adds {path}, which is not a documented addition"
        )


def load_fixture(case: str) -> dict[str, Any]:
    fixture: dict[str, Any] = json.loads((FIXTURES / f"{case}.json").read_text())
    return fixture


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_recorded_kubectl_output(case: str) -> None:
    fixture = load_fixture(case)
    assert fixture["argv"] == kubectl_argv(case), "fixture is stale: rewrite it"
    compare(fixture["output"], ours(case))


def test_comparison_catches_a_difference() -> None:
    fixture = load_fixture("job_echo")
    changed = ours("job_echo")
    changed["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    with pytest.raises(AssertionError, match="restartPolicy"):
        compare(fixture["output"], changed)
    extra = ours("job_echo")
    extra["spec"]["suspend"] = True
    with pytest.raises(AssertionError, match="not a documented addition"):
        compare(fixture["output"], extra)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_live_kubectl(case: str) -> None:
    argv = kubectl_argv(case)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    output = json.loads(done.stdout)
    compare(output, ours(case))
    version = subprocess.run(
        ["kubectl", "version", "--client", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    client_version = json.loads(version.stdout)["clientVersion"]["gitVersion"]
    if os.environ.get("COLONYMESH_REWRITE_FIXTURES") == "1":
        record = {"argv": argv, "client_version": client_version, "output": output}
        FIXTURES.mkdir(parents=True, exist_ok=True)
        (FIXTURES / f"{case}.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    elif client_version == load_fixture(case)["client_version"]:
        # Same kubectl as recorded: the fixture must still be exactly what it prints.
        assert output == load_fixture(case)["output"], "live kubectl differs from the fixture"
