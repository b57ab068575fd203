"""A Kubernetes API server for tests: the endpoints the executor uses, with real validation.

No cluster can run here (no kind, k3s or minikube offline), so this server
stands in for one, as honestly as it can:

* every Job and Deployment body POSTed is validated against the official
  OpenAPI schema of ``version`` in strict mode (``kubernetes-validate``, the
  same check as tests/executors/test_kubernetes_schema.py); a refusal is the
  API server's 422 ``Status`` with reason ``Invalid``; the body's namespace
  must match the URL's (400), a name already taken is a 409;
* requests need the kubeconfig's bearer token (401 otherwise); DELETE bodies
  must be ``DeleteOptions`` with a known ``propagationPolicy``;
* a small controller plays the Job controller and the kubelet: it makes the
  pods a Job asks for (``completions``/``parallelism``, Indexed completion
  index annotation and ``JOB_COMPLETION_INDEX``), keeps them ``Pending`` for
  ``start_delay_s``, then RUNS each container's ``command`` as a local process
  (the image is not pulled: the host's programs stand in for it) with the
  container's ``env``, its stdout and stderr merged into the pod log as the
  kubelet does; exit codes give ``Succeeded``/``Failed`` pods, the Job gets
  ``Complete`` or ``Failed`` (``BackoffLimitExceeded`` after ``backoffLimit``
  replacement pods, ``DeadlineExceeded`` past ``activeDeadlineSeconds``);
* watches stream ``ADDED``/``MODIFIED``/``DELETED`` events after a
  ``resourceVersion`` until ``timeoutSeconds``; pod logs follow while the
  container runs and a waiting container's log is a 400, as for real;
* deleting a Job with ``Background`` or ``Foreground`` kills its pods; with
  ``Orphan`` or no policy (the API's default for Jobs) they keep running.

What it is not: a scheduler, resource quotas, admission webhooks, image
pulls, RBAC, node selection (GPU labels), volumes. Those need a cluster.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kubernetes_validate

TICK_S = 0.05


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


@dataclass
class Container:
    name: str
    command: list[str]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    started_at: str = ""
    finished_at: str = ""
    exit_code: int | None = None


@dataclass
class Pod:
    namespace: str
    name: str
    owner: str  # "job/NAME" or "deployment/NAME"
    labels: dict[str, str]
    annotations: dict[str, str]
    containers: list[Container]
    created: float
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    phase: str = "Pending"
    deleted: bool = False

    def to_json(self) -> dict[str, Any]:
        statuses = []
        for c in self.containers:
            if c.exit_code is not None:
                state: dict[str, Any] = {
                    "terminated": {
                        "exitCode": c.exit_code,
                        "reason": "Completed" if c.exit_code == 0 else "Error",
                        "startedAt": c.started_at,
                        "finishedAt": c.finished_at,
                    }
                }
            elif c.process is not None:
                state = {"running": {"startedAt": c.started_at}}
            else:
                state = {"waiting": {"reason": "ContainerCreating"}}
            statuses.append(
                {
                    "name": c.name,
                    "image": "fake",
                    "imageID": "",
                    "ready": c.process is not None and c.exit_code is None,
                    "restartCount": 0,
                    "state": state,
                }
            )
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "uid": self.uid,
                "labels": dict(self.labels),
                "annotations": dict(self.annotations),
            },
            "spec": {"containers": [{"name": c.name, "image": "fake"} for c in self.containers]},
            "status": {"phase": self.phase, "containerStatuses": statuses},
        }


@dataclass
class Workload:
    kind: str  # "Job" | "Deployment"
    body: dict[str, Any]
    created: float
    pods: list[Pod] = field(default_factory=list)
    started: float | None = None
    final: tuple[str, str, str] | None = None  # condition type, reason, message
    next_index_attempt: dict[int, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.body["metadata"]["namespace"])


class FakeCluster:
    """The state, the controller thread and the HTTP server (``url``)."""

    def __init__(self, root: Path, *, version: str = "1.30.0", token: str = "t0ken") -> None:
        self.root = root
        self.version = version
        self.token = token
        self.start_delay_s = 0.3
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.resource_version = 1
        self.workloads: dict[tuple[str, str, str], Workload] = {}
        self.orphans: list[Workload] = []  # deleted without propagation: pods live on
        self.events: list[tuple[int, str, str, str, dict[str, Any]]] = []  # rv, kind, ns, type, obj
        self.requests: list[tuple[str, str]] = []
        self.deletions: list[tuple[str, str, str]] = []  # kind, name, propagationPolicy
        self.refusals: list[str] = []
        self._stop = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self._threads = [
            threading.Thread(target=self.server.serve_forever, daemon=True),
            threading.Thread(target=self._control, daemon=True),
        ]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        document = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": "fake",
                    "context": {"cluster": "fake", "user": "tester", "namespace": namespace},
                }
            ],
            "current-context": "fake",
        }
        path.write_text(json.dumps(document))  # JSON is YAML
        return path

    def __enter__(self) -> FakeCluster:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()
        with self.lock:
            for workload in [*self.workloads.values(), *self.orphans]:
                for pod in workload.pods:
                    self._kill(pod)

    # ------------------------------------------------------------ state

    def _bump(self, kind: str, namespace: str, kind_of_event: str, obj: dict[str, Any]) -> None:
        self.resource_version += 1
        obj["metadata"]["resourceVersion"] = str(self.resource_version)
        self.events.append(
            (self.resource_version, kind, namespace, kind_of_event, copy.deepcopy(obj))
        )
        self.changed.notify_all()

    def workload_json(self, workload: Workload) -> dict[str, Any]:
        body = workload.body
        if workload.kind == "Deployment":
            running = sum(1 for p in workload.pods if p.phase == "Running")
            body["status"] = {"replicas": len(workload.pods), "readyReplicas": running}
            return body
        status: dict[str, Any] = {}
        active = sum(1 for p in workload.pods if p.phase in ("Pending", "Running"))
        succeeded = sum(1 for p in workload.pods if p.phase == "Succeeded")
        failed = sum(1 for p in workload.pods if p.phase == "Failed")
        if workload.started is not None:
            status["startTime"] = body["metadata"]["creationTimestamp"]
        if active:
            status["active"] = active
        if succeeded:
            status["succeeded"] = succeeded
        if failed:
            status["failed"] = failed
        if workload.final is not None:
            kind, reason, message = workload.final
            condition = {"type": kind, "status": "True", "lastTransitionTime": _now()}
            if reason:
                condition.update(reason=reason, message=message)
            status["conditions"] = [condition]
            if kind == "Complete":
                status["completionTime"] = _now()
        body["status"] = status
        return body

    def pods_of(self, namespace: str, selector: str) -> list[Pod]:
        key, _, value = selector.partition("=")
        with self.lock:
            return [
                pod
                for w in [*self.workloads.values(), *self.orphans]
                if w.namespace == namespace
                for pod in w.pods
                if not pod.deleted and pod.labels.get(key) == value
            ]

    def pod(self, namespace: str, name: str) -> Pod | None:
        for w in [*self.workloads.values(), *self.orphans]:
            for pod in w.pods:
                if pod.namespace == namespace and pod.name == name and not pod.deleted:
                    return pod
        return None

    # ------------------------------------------------------------ the controller

    def _control(self) -> None:
        while not self._stop.wait(TICK_S):
            with self.lock:
                for workload in self.orphans:
                    self._reconcile(workload)
                for workload in list(self.workloads.values()):
                    if self._reconcile(workload):
                        kind = workload.kind
                        self._bump(
                            kind, workload.namespace, "MODIFIED", self.workload_json(workload)
                        )

    def _new_pod(self, workload: Workload, index: int) -> Pod:
        spec = workload.body["spec"]
        template = spec["template"]
        labels = dict(template.get("metadata", {}).get("labels", {}))
        annotations: dict[str, str] = {}
        extra_env: dict[str, str] = {}
        attempt = workload.next_index_attempt.get(index, 0)
        workload.next_index_attempt[index] = attempt + 1
        suffix = uuid.uuid4().hex[:5]
        if workload.kind == "Job":
            labels.update(
                {"job-name": workload.name, "batch.kubernetes.io/job-name": workload.name}
            )
            if spec.get("completionMode") == "Indexed":
                annotations["batch.kubernetes.io/job-completion-index"] = str(index)
                extra_env["JOB_COMPLETION_INDEX"] = str(index)
                name = f"{workload.name}-{index}-{suffix}"
            else:
                name = f"{workload.name}-{suffix}"
        else:
            name = f"{workload.name}-{uuid.uuid4().hex[:10]}-{suffix}"
        folder = self.root / workload.namespace / name
        folder.mkdir(parents=True)
        containers = []
        for c in template["spec"]["containers"]:
            env = {e["name"]: e.get("value", "") for e in c.get("env", [])}
            containers.append(
                Container(
                    c["name"], list(c["command"]), {**env, **extra_env}, folder / f"{c['name']}.log"
                )
            )
        return Pod(
            workload.namespace, name, f"{workload.kind.lower()}/{workload.name}", labels,
            annotations, containers, time.monotonic(),
        )  # fmt: skip

    def _start(self, pod: Pod) -> None:
        for c in pod.containers:
            base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
            with open(c.log, "wb") as out:
                c.process = subprocess.Popen(
                    c.command,
                    env={**base, **c.env, "HOSTNAME": pod.name},
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            c.started_at = _now()
        pod.phase = "Running"

    def _kill(self, pod: Pod) -> None:
        for c in pod.containers:
            if c.process is not None and c.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(c.process.pid, signal.SIGKILL)
                c.process.wait()
                c.exit_code, c.finished_at = 137, _now()
        if pod.phase in ("Pending", "Running"):
            pod.phase = "Failed"

    def _reconcile(self, workload: Workload) -> bool:
        """One controller step; whether the workload's status changed."""
        changed = False
        now = time.monotonic()
        spec = workload.body["spec"]
        if workload.started is None:
            workload.started = now
            count = (
                spec.get("replicas", 1) if workload.kind == "Deployment" else spec["parallelism"]
            )
            workload.pods = [self._new_pod(workload, i) for i in range(count)]
            changed = True
        for pod in workload.pods:
            if pod.deleted:
                continue
            if pod.phase == "Pending" and now - pod.created >= self.start_delay_s:
                self._start(pod)
                changed = True
            if pod.phase == "Running":
                for c in pod.containers:
                    if c.exit_code is None and c.process is not None:
                        code = c.process.poll()
                        if code is not None:
                            c.exit_code = code if code >= 0 else 128 - code
                            c.finished_at = _now()
                if all(c.exit_code is not None for c in pod.containers):
                    ok = all(c.exit_code == 0 for c in pod.containers)
                    pod.phase = "Succeeded" if ok else "Failed"
                    changed = True
        if workload.kind == "Job" and workload.final is None:
            changed |= self._job_step(workload, now)
        return changed

    def _job_step(self, workload: Workload, now: float) -> bool:
        spec = workload.body["spec"]
        deadline = spec.get("activeDeadlineSeconds")
        if (
            deadline is not None
            and workload.started is not None
            and now - workload.started > deadline
        ):
            for pod in workload.pods:
                self._kill(pod)
            workload.final = ("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")  # fmt: skip
            return True
        indexed = spec.get("completionMode") == "Indexed"
        done = {
            (int(p.annotations.get("batch.kubernetes.io/job-completion-index", "0")) if indexed else 0)
            for p in workload.pods
            if p.phase == "Succeeded"
        }  # fmt: skip
        if len(done) >= spec["completions"] or (not indexed and done):
            workload.final = ("Complete", "", "")
            return True
        failed = sum(1 for p in workload.pods if p.phase == "Failed")
        if failed > spec["backoffLimit"]:
            for pod in workload.pods:
                self._kill(pod)
            workload.final = ("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")  # fmt: skip
            return True
        active_indices = {
            int(p.annotations.get("batch.kubernetes.io/job-completion-index", "0"))
            for p in workload.pods
            if p.phase in ("Pending", "Running", "Succeeded")
        }
        replaced = False
        for index in range(spec["completions"] if indexed else 1):
            if index not in active_indices and index not in done:
                workload.pods.append(self._new_pod(workload, index))
                replaced = True
        return replaced

    # ------------------------------------------------------------ API operations

    def create(self, kind: str, namespace: str, body: Any) -> tuple[int, dict[str, Any]]:
        if not isinstance(body, dict) or body.get("kind") != kind:
            return 400, _status(400, "BadRequest", f"the body is not a {kind}")
        try:
            kubernetes_validate.validate(body, self.version, strict=True)
        except kubernetes_validate.ValidationError as error:
            name = body.get("metadata", {}).get("name", "")
            self.refusals.append(error.message)
            group = "batch" if kind == "Job" else "apps"
            return 422, _status(
                422, "Invalid", f'{kind}.{group} "{name}" is invalid: {error.message}'
            )
        body = copy.deepcopy(body)
        metadata = body["metadata"]
        if metadata.get("namespace", namespace) != namespace:
            return 400, _status(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on the request",
            )
        key = (kind, namespace, metadata["name"])
        with self.lock:
            if key in self.workloads:
                return 409, _status(
                    409, "AlreadyExists", f'{kind} "{metadata["name"]}" already exists'
                )
            uid = str(uuid.uuid4())
            metadata.update(namespace=namespace, uid=uid, creationTimestamp=_now(), generation=1)
            spec = body["spec"]
            if kind == "Job":  # the API server's defaults
                spec.setdefault("completions", 1)
                spec.setdefault("parallelism", 1)
                spec.setdefault("backoffLimit", 6)
                spec.setdefault("completionMode", "NonIndexed")
                spec.setdefault("suspend", False)
                spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
                labels = spec["template"].setdefault("metadata", {}).setdefault("labels", {})
                labels.update({"batch.kubernetes.io/controller-uid": uid, "controller-uid": uid})
            workload = Workload(kind, body, time.monotonic())
            self.workloads[key] = workload
            obj = self.workload_json(workload)
            self._bump(kind, namespace, "ADDED", obj)
            return 201, copy.deepcopy(obj)

    def delete(
        self, kind: str, namespace: str, name: str, body: Any, query: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        options = body if isinstance(body, dict) else {}
        allowed = {"kind", "apiVersion", "propagationPolicy", "gracePeriodSeconds",
                   "orphanDependents", "preconditions", "dryRun"}  # fmt: skip
        unknown = sorted(set(options) - allowed)
        if unknown:
            return 400, _status(400, "BadRequest", f"DeleteOptions: unknown fields {unknown}")
        # The client sends the policy as a query parameter; the API also takes it in the body.
        policy = options.get("propagationPolicy", query.get("propagationPolicy", ""))
        if policy not in ("", "Orphan", "Background", "Foreground"):
            return 422, _status(422, "Invalid", f"propagationPolicy: Unsupported value: {policy!r}")
        with self.lock:
            workload = self.workloads.pop((kind, namespace, name), None)
            if workload is None:
                return 404, _status(404, "NotFound", f'{kind.lower()}s "{name}" not found')
            self.deletions.append((kind, name, policy))
            if policy in ("Background", "Foreground"):
                for pod in workload.pods:
                    self._kill(pod)
                    pod.deleted = True
            else:  # orphaned: the pods stay, listable and running
                self.orphans.append(workload)
            self._bump(kind, namespace, "DELETED", self.workload_json(workload))
        return 200, {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {"name": name, "kind": f"{kind.lower()}s", "uid": workload.body["metadata"]["uid"]},
        }  # fmt: skip


def _handler(cluster: FakeCluster) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # streams are chunked, as the API server's are

        def _start_stream(self, content_type: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, code: int, document: Any) -> None:
            data = json.dumps(document).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorised(self) -> bool:
            if self.headers.get("Authorization") == f"Bearer {cluster.token}":
                return True
            self._send(401, _status(401, "Unauthorized", "Unauthorized"))
            return False

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            return json.loads(raw) if raw else None

        def _route(self, method: str) -> None:
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            cluster.requests.append((method, self.path))
            if not self._authorised():
                return
            p = parts.path.strip("/").split("/")
            # /apis/batch/v1/namespaces/NS/jobs[/NAME[/status]], apps/v1 deployments
            if p[:3] in (["apis", "batch", "v1"], ["apis", "apps", "v1"]) and len(p) >= 6:
                kind = "Job" if p[1] == "batch" else "Deployment"
                ns, plural = p[4], p[5]
                if plural != kind.lower() + "s":
                    return self._send(404, _status(404, "NotFound", "no such resource"))
                if method == "POST" and len(p) == 6:
                    return self._send(*cluster.create(kind, ns, self._body()))
                if method == "DELETE" and len(p) == 7:
                    return self._send(*cluster.delete(kind, ns, p[6], self._body(), query))
                if method == "GET" and len(p) in (7, 8):
                    with cluster.lock:
                        w = cluster.workloads.get((kind, ns, p[6]))
                        if w is None:
                            return self._send(404, _status(404, "NotFound", f'{plural} "{p[6]}" not found'))  # fmt: skip
                        return self._send(200, copy.deepcopy(cluster.workload_json(w)))
                if method == "GET" and len(p) == 6:
                    return self._list(kind, ns, query)
            if p[:3] == ["api", "v1", "namespaces"] and len(p) >= 5 and p[4] == "pods":
                ns = p[3]
                if method == "GET" and len(p) == 5:
                    selector = query.get("labelSelector", "")
                    if "=" not in selector:
                        return self._send(400, _status(400, "BadRequest", "labelSelector required"))
                    items = [pod.to_json() for pod in cluster.pods_of(ns, selector)]
                    with cluster.lock:
                        rv = str(cluster.resource_version)
                    return self._send(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": rv}, "items": items})  # fmt: skip
                if method == "GET" and len(p) == 7 and p[6] == "log":
                    return self._log(ns, p[5], query)
            self._send(404, _status(404, "NotFound", f"{method} {parts.path}: not served here"))

        def _list(self, kind: str, ns: str, query: dict[str, str]) -> None:
            selector = query.get("fieldSelector", "")
            wanted = selector.removeprefix("metadata.name=") if selector else None
            if selector and not selector.startswith("metadata.name="):
                return self._send(400, _status(400, "BadRequest", f"field selector {selector!r}"))
            if query.get("watch") not in ("true", "1"):
                with cluster.lock:
                    items = [copy.deepcopy(cluster.workload_json(w)) for (k, n, name), w in cluster.workloads.items() if k == kind and n == ns and wanted in (None, name)]  # fmt: skip
                    rv = str(cluster.resource_version)
                return self._send(200, {"kind": f"{kind}List", "apiVersion": "batch/v1" if kind == "Job" else "apps/v1", "metadata": {"resourceVersion": rv}, "items": items})  # fmt: skip
            since = int(query.get("resourceVersion") or 0)
            deadline = time.monotonic() + float(query.get("timeoutSeconds") or 30)
            self._start_stream("application/json")
            try:
                while time.monotonic() < deadline:
                    with cluster.lock:
                        fresh = [e for e in cluster.events if e[0] > since and e[1] == kind and e[2] == ns and wanted in (None, e[4]["metadata"]["name"])]  # fmt: skip
                        if not fresh:
                            cluster.changed.wait(0.2)
                            continue
                    for rv, _, _, kind_of_event, obj in fresh:
                        self._chunk(json.dumps({"type": kind_of_event, "object": obj}).encode() + b"\n")  # fmt: skip
                        since = rv
                self._chunk(b"")
            except (BrokenPipeError, ConnectionResetError):
                return

        def _log(self, ns: str, name: str, query: dict[str, str]) -> None:
            with cluster.lock:
                pod = cluster.pod(ns, name)
                if pod is None:
                    return self._send(404, _status(404, "NotFound", f'pods "{name}" not found'))
                wanted = query.get("container") or pod.containers[0].name
                container = next((c for c in pod.containers if c.name == wanted), None)
                if container is None:
                    return self._send(400, _status(400, "BadRequest", f"container {wanted} is not valid for pod {name}"))  # fmt: skip
                if container.process is None:
                    return self._send(400, _status(400, "BadRequest", f'container "{wanted}" in pod "{name}" is waiting to start: ContainerCreating'))  # fmt: skip
            follow = query.get("follow") in ("true", "1")
            self._start_stream("text/plain")
            offset = 0
            try:
                while True:
                    finished = container.exit_code is not None or pod.deleted
                    with open(container.log, "rb") as handle:
                        handle.seek(offset)
                        data = handle.read()
                    if data:
                        offset += len(data)
                        self._chunk(data)
                    if not follow or finished:
                        self._chunk(b"")
                        return
                    time.sleep(TICK_S)
            except (BrokenPipeError, ConnectionResetError):
                return

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def do_DELETE(self) -> None:
            self._route("DELETE")

    return Handler
