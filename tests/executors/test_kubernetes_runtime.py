"""The Kubernetes executor kind through the official client, against kubefake's API server.

No cluster is reachable here; ``kubefake.FakeCluster`` serves the endpoints
the executor uses with strict OpenAPI validation of every body and runs
each container's command as a local process (its docstring says what it
does not model). What these tests show: the client calls, the manifests the
API accepts, the watch, the log streaming, the outcomes and the deletions.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from colonymesh.executors.base import ProcessFailed
from colonymesh.executors.kubernetes import KubernetesConfig
from colonymesh.executors.kubernetes.runtime import (
    ATTRIBUTE_NAMESPACE,
    ATTRIBUTE_PODS,
    ATTRIBUTE_WORKLOAD,
    KubernetesExecutor,
    KubernetesRuntimeConfig,
)
from colonymesh.node.spec import FunctionSpec, parse_function_spec

kubefake = pytest.importorskip("kubefake")  # needs kubernetes-validate (a dev dependency)

PY = sys.executable
COMMANDS = {"py": (PY, "-c"), "sh": ("/bin/sh", "-c")}


class Context:
    def __init__(self, spec: dict[str, Any], process_id: str = "p1") -> None:
        self.process_id = process_id
        self.spec: FunctionSpec = parse_function_spec(
            {"conditions": {"executortype": "k8s"}, "kwargs": {"docker-image": "python:3.11"}}
            | spec
        )
        self.input: list[Any] = []
        self.logs: list[str] = []
        self.attributes: dict[str, str] = {}

    async def log(self, message: str) -> None:
        self.logs.append(message)

    async def set_attribute(self, key: str, value: str) -> None:
        self.attributes[key] = value

    async def add_child(self, spec: dict[str, Any], *, insert: bool = True) -> str:
        raise NotImplementedError

    @property
    def lines(self) -> list[str]:
        return [line for message in self.logs for line in message.split("\n")]


@pytest.fixture(params=["1.30.0", "1.37.0"])
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    with kubefake.FakeCluster(tmp_path / "cluster", version=request.param) as fake:
        yield fake


def executor(cluster: Any, tmp_path: Path, **overrides: Any) -> KubernetesExecutor:
    config = KubernetesRuntimeConfig(
        manifest=KubernetesConfig(namespace="colony", commands=COMMANDS),
        kubeconfig=str(cluster.kubeconfig(tmp_path / "kubeconfig")),
        poll_interval_s=0.1,
        watch_timeout_s=5,
        log_interval_s=0.05,
        **overrides,
    )
    return KubernetesExecutor(config)


def posted(cluster: Any) -> list[str]:
    return [path for method, path in cluster.requests if method == "POST"]


async def test_a_job_that_succeeds(cluster: Any, tmp_path: Path) -> None:
    script = (
        "import json, os; xs = json.loads(os.environ['COLONYMESH_INPUT']);"
        "print('hello from', os.environ['COLONYMESH_PROCESS_ID']); print(json.dumps(sum(xs)))"
    )
    ctx = Context({"funcname": "py", "args": [script], "conditions": {"executortype": "k8s", "cpu": "100m", "mem": "64Mi", "walltime": 60}})  # fmt: skip
    ctx.input = [1, 2, 3]
    with trio.fail_after(30):
        output = await executor(cluster, tmp_path).run(ctx)
    assert output == [6]
    assert "hello from p1" in ctx.lines
    name = ctx.attributes[ATTRIBUTE_WORKLOAD].removeprefix("job/")
    assert ctx.attributes[ATTRIBUTE_NAMESPACE] == "colony"
    assert ctx.attributes[ATTRIBUTE_PODS].startswith(name + "-")
    assert posted(cluster) == ["/apis/batch/v1/namespaces/colony/jobs"]
    assert cluster.refusals == []
    assert cluster.deletions == [("Job", name, "Background")]
    # the wait used a watch on this Job, and the logs a followed stream
    assert any("watch=true" in p and f"metadata.name%3D{name}" in p for _, p in cluster.requests)
    assert any("/log?" in p and "follow=true" in p for _, p in cluster.requests)


async def test_a_failing_job_reports_exit_status_and_log_tail(cluster: Any, tmp_path: Path) -> None:
    ctx = Context(
        {"funcname": "sh", "args": ["echo working; echo oops >&2; exit 3"], "maxretries": 1}
    )
    with trio.fail_after(30), pytest.raises(ProcessFailed) as failed:
        await executor(cluster, tmp_path).run(ctx)
    errors = failed.value.errors
    assert errors[0].startswith("Kubernetes Job colonymesh-p1 failed: BackoffLimitExceeded")
    pods = [e for e in errors if e.startswith("pod ")]
    assert len(pods) == 2 and all("exit status 3 (Error)" in e for e in pods)  # backoffLimit 1
    assert "oops" in errors[2]
    assert cluster.deletions == [("Job", "colonymesh-p1", "Background")]


async def test_cancel_deletes_the_job_with_its_pods(cluster: Any, tmp_path: Path) -> None:
    ctx = Context({"funcname": "sh", "args": ["echo started; sleep 300"]})
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(executor(cluster, tmp_path).run, ctx)
            while "started" not in ctx.lines:
                await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
    assert cluster.deletions == [("Job", "colonymesh-p1", "Foreground")]
    [workload] = [w for w in cluster.orphans] or [None]  # nothing orphaned
    assert workload is None
    assert cluster.pods_of("colony", "job-name=colonymesh-p1") == []


async def test_walltime_is_the_jobs_active_deadline(cluster: Any, tmp_path: Path) -> None:
    ctx = Context({"funcname": "sh", "args": ["sleep 300"], "conditions": {"executortype": "k8s", "walltime": 1}})  # fmt: skip
    with trio.fail_after(30), pytest.raises(ProcessFailed, match="DeadlineExceeded"):
        await executor(cluster, tmp_path).run(ctx)


async def test_nodes_make_an_indexed_job_with_one_pod_each(cluster: Any, tmp_path: Path) -> None:
    script = "import os; i = os.environ['JOB_COMPLETION_INDEX']; print('rank', i); print(i)"
    ctx = Context({"funcname": "py", "args": [script], "conditions": {"executortype": "k8s", "nodes": 3}})  # fmt: skip
    with trio.fail_after(30):
        output = await executor(cluster, tmp_path).run(ctx)
    assert output == [0]  # the output is completion index 0's
    pods = ctx.attributes[ATTRIBUTE_PODS].split(",")
    assert len(pods) == 3
    for rank in range(3):
        [pod] = [p for p in pods if p.startswith(f"colonymesh-p1-{rank}-")]
        assert f"[{pod}/colonymesh-p1] rank {rank}" in ctx.lines


async def test_an_image_per_funcname(cluster: Any, tmp_path: Path) -> None:
    ctx = Context({"funcname": "py", "args": ["print(1)"], "kwargs": {}})
    kind = executor(cluster, tmp_path, images={"py": "registry.local/py:1"})
    body = kind.manifest(ctx)
    assert body["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.local/py:1"
    with trio.fail_after(30):
        assert await kind.run(ctx) == [1]


async def test_a_body_the_api_server_refuses_fails_the_process(tmp_path: Path) -> None:
    """The client checks bodies against its own (newest) models; an older API server's
    schema refuses a field it does not know yet: a 422 from the server, named as such."""

    class NewerThanTheServer(KubernetesExecutor):
        def manifest(self, context: Any) -> dict[str, Any]:
            body = super().manifest(context)
            body["spec"]["podReplacementPolicy"] = "Failed"  # Kubernetes 1.28+
            return body

    with kubefake.FakeCluster(tmp_path / "cluster", version="1.25.0") as cluster:
        config = executor(cluster, tmp_path).config
        with trio.fail_after(30), pytest.raises(ProcessFailed) as failed:
            await NewerThanTheServer(config).run(Context({"funcname": "py", "args": ["print(1)"]}))
        assert "Kubernetes refused the Job: 422" in str(failed.value)
        assert "is invalid" in str(failed.value) and "podReplacementPolicy" in str(failed.value)
        assert cluster.deletions == [] and cluster.workloads == {}


async def test_a_wrong_token_is_refused(cluster: Any, tmp_path: Path) -> None:
    kind = executor(cluster, tmp_path)
    cluster.token = "another"
    with trio.fail_after(30), pytest.raises(ProcessFailed, match="401"):
        await kind.run(Context({"funcname": "py", "args": ["print(1)"]}))


async def test_a_service_runs_as_a_deployment_until_cancelled(cluster: Any, tmp_path: Path) -> None:
    spec = {"funcname": "sh", "args": ["echo serving; sleep 300"], "service": {"port": 8080}}
    ctx = Context(spec)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(executor(cluster, tmp_path).run, ctx)
            while "serving" not in ctx.lines:
                await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
    assert ctx.attributes[ATTRIBUTE_WORKLOAD] == "deployment/colonymesh-p1"
    assert cluster.deletions == [("Deployment", "colonymesh-p1", "Foreground")]
    assert cluster.pods_of("colony", "app=colonymesh-p1") == []


async def test_a_job_left_by_an_earlier_run_is_replaced(cluster: Any, tmp_path: Path) -> None:
    """An executor that crashed left its Job; the process runs again under the same name."""
    kind = executor(cluster, tmp_path)
    ctx = Context({"funcname": "sh", "args": ["echo 42"]})
    stale = kind.manifest(Context({"funcname": "sh", "args": ["sleep 300"]}))
    assert cluster.create("Job", "colony", stale)[0] == 201
    with trio.fail_after(30):
        assert await kind.run(ctx) == [42]
    assert cluster.deletions == [
        ("Job", "colonymesh-p1", "Foreground"),
        ("Job", "colonymesh-p1", "Background"),
    ]
