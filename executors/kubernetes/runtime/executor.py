"""The Kubernetes executor kind: a function spec as a Job (or Deployment) on a cluster.

What it owns: the I/O around the pure translator next to it
(``manifest.manifest_for``), through the official ``kubernetes`` client
(synchronous: every call runs in a worker thread, so the trio loop never
blocks). One process is one workload:

1. the manifest: ``manifest_for`` with the executor's ``KubernetesConfig``;
   when the spec names no image, the image configured for its ``funcname``
   (``images``), else the config's ``default_image``. The parents' outputs
   (``context.input``) reach every container as the JSON text of the
   environment variable ``COLONYMESH_INPUT`` (at most ``input_bytes_max``);
2. ``create_namespaced_job`` (or ``..._deployment``), shielded from
   cancellation so that a workload that may exist is always deleted;
3. waiting: ``read_namespaced_job_status``, then a watch on the Job
   (``list_namespaced_job`` with ``watch``, from the read's
   ``resourceVersion``, ``fieldSelector=metadata.name=NAME``), re-read when
   the watch ends, until a ``Complete`` or ``Failed`` condition is ``True``;
4. logs: the Job's pods (``labelSelector=job-name=NAME``) are listed every
   ``poll_interval_s``; each container that is running or has terminated gets
   a follower streaming ``read_namespaced_pod_log(follow=True)`` into the
   process logs (with several pods or containers each line is prefixed
   ``[pod/container]``). The pod names become the attribute
   ``kubernetes.pods``;
5. the end: ``Complete`` -> the output, read by the local-process rules
   (``executors.process.output_from_stdout``) from the last non-empty log line
   of the first container of the succeeded pod with the lowest completion
   index (a pod's log merges stdout and stderr, so print the output last);
   ``Failed`` -> ``ProcessFailed`` with the condition's reason and message,
   each failed container's exit status and its log tail;
6. deletion: after the end, ``delete_namespaced_job`` with
   ``propagationPolicy=Background`` when ``delete_after``; when the run is
   cancelled (``maxexectime``, a cancelled process, shutdown) always, with
   ``Foreground`` (the API's default for Jobs orphans their pods).

A Deployment (a spec with ColonyOS's ``service``) runs until its process is
cancelled; its pods' logs are streamed the same way, and it is deleted with
``Foreground`` at the end.

Without a cluster this is tested against an HTTP server that implements the
endpoints above with the official OpenAPI schemas (see docs/running.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import json
import logging
import socket
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import trio

from colonymesh.executors.base import ProcessContext, ProcessFailed
from colonymesh.executors.kubernetes.manifest import (
    KubernetesConfig,
    KubernetesConfigError,
    manifest_for,
)
from colonymesh.executors.process import LineReader, LogBatcher, output_from_stdout
from colonymesh.node.spec import SpecError, resolve_command

__all__ = [
    "ATTRIBUTE_NAMESPACE",
    "ATTRIBUTE_PODS",
    "ATTRIBUTE_WORKLOAD",
    "INPUT_ENV",
    "KubernetesExecutor",
    "KubernetesRuntimeConfig",
]

log = logging.getLogger("colonymesh.executors.kubernetes")

ATTRIBUTE_WORKLOAD = "kubernetes.workload"
ATTRIBUTE_NAMESPACE = "kubernetes.namespace"
ATTRIBUTE_PODS = "kubernetes.pods"
INPUT_ENV = "COLONYMESH_INPUT"
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
LOG_READ_BYTES = 16 * 1024
PODS_LISTED_MAX = 1000


@dataclass(frozen=True, slots=True)
class KubernetesRuntimeConfig:
    """How the executor drives a cluster; the translation itself is ``KubernetesConfig``."""

    manifest: KubernetesConfig
    images: Mapping[str, str] = field(default_factory=dict)  # funcname -> image
    descriptions: Mapping[str, str] = field(default_factory=dict)
    kubeconfig: str = ""  # "" = the client's default (~/.kube/config)
    context: str = ""  # "" = the kubeconfig's current context
    delete_after: bool = True
    poll_interval_s: float = 1.0
    watch_timeout_s: int = 30
    request_timeout_s: float = 30.0
    log_drain_s: float = 5.0  # after the end, how long the log streams may still finish
    unreachable_for_s_max: float = 120.0  # API errors this long in a row fail the process
    input_bytes_max: int = 64 * 1024
    log_interval_s: float = 0.5
    log_bytes_max: int = 1 << 20
    log_tail_lines: int = 20

    def check(self) -> None:
        self.manifest.check()
        if self.poll_interval_s <= 0 or self.request_timeout_s <= 0 or self.log_drain_s < 0:
            raise KubernetesConfigError(
                "poll_interval_s and request_timeout_s must be > 0, log_drain_s >= 0"
            )
        if self.watch_timeout_s < 1:
            raise KubernetesConfigError("watch_timeout_s: must be at least 1")
        for funcname in self.images:
            if funcname not in self.manifest.commands:
                raise KubernetesConfigError(f"images.{funcname}: no command of that name")


class _Stream:
    """One container's log: its reader, its tail, and whether its follower is done."""

    def __init__(self, emit: Callable[[str], None], tail_lines: int) -> None:
        self.tail: deque[str] = deque(maxlen=tail_lines)

        def line(text: str) -> None:
            self.tail.append(text[:4096])
            emit(text)

        self.reader = LineReader(line, keep_last=True)
        self.done = trio.Event()


class _Run:
    """What one run has seen of its pods."""

    def __init__(self, name: str, prefix_lines: bool, logs: LogBatcher, tail_lines: int) -> None:
        self.name = name
        self.prefix_lines = prefix_lines
        self.logs = logs
        self.tail_lines = tail_lines
        self.pods: dict[str, Any] = {}  # name -> V1Pod (latest seen)
        self.streams: dict[tuple[str, str], _Stream] = {}

    def stream(self, pod: str, container: str) -> _Stream:
        prefix = f"[{pod}/{container}] " if self.prefix_lines else ""
        created = _Stream(lambda text: self.logs.add(prefix + text), self.tail_lines)
        self.streams[(pod, container)] = created
        return created


def _api_error(error: Exception) -> str:
    """An ``ApiException``'s Status message (or its reason), one line."""
    status = getattr(error, "status", None)
    body = getattr(error, "body", None)
    message = ""
    if isinstance(body, str | bytes) and body:
        try:
            message = str(json.loads(body).get("message", ""))
        except (ValueError, AttributeError):
            message = ""
    reason = getattr(error, "reason", "") or type(error).__name__
    text = f"{status} {reason}" if status is not None else f"{reason}: {error}"
    return f"{text}: {message}" if message else text


def _condition(job: Any) -> tuple[str, str, str] | None:
    """``(type, reason, message)`` of the Job's ``Complete``/``Failed`` condition, if any."""
    status = getattr(job, "status", None)
    for condition in getattr(status, "conditions", None) or []:
        if condition.type in ("Complete", "Failed") and condition.status == "True":
            return condition.type, condition.reason or "", condition.message or ""
    return None


def _kubernetes() -> Any:
    """The official client, imported when used (an optional dependency), untyped."""
    try:
        return importlib.import_module("kubernetes")
    except ImportError as error:
        raise KubernetesConfigError(
            "the kubernetes package is needed to apply Jobs: pip install kubernetes"
        ) from error


def _interrupt(response: Any) -> None:
    """Make a blocked read of ``response`` in another thread return.

    Closing the response from here would wait for the reading thread's buffer
    lock (and block the trio loop); shutting the socket down does not.
    """
    connection = getattr(response, "connection", None) or getattr(response, "_connection", None)
    sock = getattr(connection, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _completion_index(pod: Any) -> int:
    annotations = pod.metadata.annotations or {}
    try:
        return int(annotations.get(COMPLETION_INDEX_ANNOTATION, "0"))
    except ValueError:
        return 0


def _followable(pod: Any) -> list[str]:
    """The containers of ``pod`` whose logs can be read: running or terminated."""
    names: list[str] = []
    for status in getattr(pod.status, "container_statuses", None) or []:
        state = status.state
        if state is not None and (state.running is not None or state.terminated is not None):
            names.append(status.name)
    return names


class KubernetesExecutor:
    """The executor kind that runs specs as Kubernetes Jobs (Deployments for services)."""

    def __init__(self, config: KubernetesRuntimeConfig, api_client: Any | None = None) -> None:
        config.check()
        self.config = config
        kubernetes = _kubernetes()
        if api_client is None:
            api_client = kubernetes.config.new_client_from_config(
                config_file=config.kubeconfig or None,
                context=config.context or None,
                persist_config=False,
            )
        self.api_client = api_client
        self.batch: Any = kubernetes.client.BatchV1Api(api_client)
        self.apps: Any = kubernetes.client.AppsV1Api(api_client)
        self.core: Any = kubernetes.client.CoreV1Api(api_client)
        self.namespace = config.manifest.namespace or "default"

    def functions(self) -> dict[str, str]:
        return {
            name: self.config.descriptions.get(name, " ".join(argv))
            for name, argv in self.config.manifest.commands.items()
        }

    # ------------------------------------------------------------ client calls

    async def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("_request_timeout", self.config.request_timeout_s)
        call = functools.partial(method, *args, **kwargs)
        return await trio.to_thread.run_sync(call, abandon_on_cancel=True)

    def manifest(self, context: ProcessContext) -> dict[str, Any]:
        """The workload's manifest, with the image per funcname and the input env."""
        spec = context.spec
        config = self.config.manifest
        image = self.config.images.get(spec.funcname)
        if image:
            config = dataclasses.replace(config, default_image=image)
        body: dict[str, Any] = manifest_for(spec, context.process_id, config)
        # Resolved again only to refuse early what the manifest could not hold.
        resolve_command(spec, config.commands, allow_spec_commands=config.allow_spec_commands)
        text = json.dumps(context.input, ensure_ascii=False)
        if len(text.encode("utf-8")) > self.config.input_bytes_max:
            raise ProcessFailed(
                f"the process input is over {self.config.input_bytes_max} bytes "
                f"(it travels in the environment variable {INPUT_ENV})"
            )
        for container in body["spec"]["template"]["spec"]["containers"]:
            container["env"] = [*container["env"], {"name": INPUT_ENV, "value": text}]
        return body

    async def run(self, context: ProcessContext) -> list[Any]:
        try:
            body = self.manifest(context)
        except (SpecError, KubernetesConfigError, ValueError, TypeError) as error:
            raise ProcessFailed(f"cannot translate to a Kubernetes manifest: {error}") from error
        name = str(body["metadata"]["name"])
        kind = str(body["kind"])
        config = self.config
        logs = LogBatcher(
            context.log, interval_s=config.log_interval_s, total_bytes_max=config.log_bytes_max
        )
        conditions = context.spec.conditions
        run = _Run(
            name,
            conditions.nodes > 1 or conditions.processespernode > 1,
            logs,
            config.log_tail_lines,
        )
        finished = False
        try:
            # From here on the workload may exist (even when the answer is lost): it is
            # deleted on the way out, which is a harmless 404 when it was never made.
            with trio.CancelScope(shield=True):
                await self._create(kind, body)
            log.info("process %s: %s %s created", context.process_id, kind, name)
            await context.set_attribute(ATTRIBUTE_WORKLOAD, f"{kind.lower()}/{name}")
            await context.set_attribute(ATTRIBUTE_NAMESPACE, self.namespace)
            selector = f"job-name={name}" if kind == "Job" else f"app={name}"
            async with trio.open_nursery() as nursery:
                nursery.start_soon(logs.run)
                nursery.start_soon(self._follow_pods, context, run, selector, nursery)
                if kind == "Job":
                    job = await self._wait_job(name)
                else:
                    job = await self._wait_deployment(name)
                await self._list_pods(context, run, selector, nursery)  # the last ones
                with trio.move_on_after(config.log_drain_s):
                    for stream in list(run.streams.values()):
                        await stream.done.wait()
                nursery.cancel_scope.cancel()
            finished = True
        finally:
            with trio.CancelScope(shield=True):
                if not finished or config.delete_after:
                    await self._delete(kind, name, "Background" if finished else "Foreground")
                for stream in run.streams.values():
                    stream.reader.finish()
                with trio.move_on_after(5):
                    await logs.close()
        return self._result(job, run)

    async def _create(self, kind: str, body: dict[str, Any]) -> None:
        """Create the workload; one left by an earlier run of this process is replaced."""
        ApiException = _kubernetes().client.exceptions.ApiException
        name = str(body["metadata"]["name"])
        create = (
            self.batch.create_namespaced_job
            if kind == "Job"
            else self.apps.create_namespaced_deployment
        )
        for attempt in (1, 2):
            try:
                await trio.to_thread.run_sync(
                    functools.partial(
                        create, self.namespace, body, _request_timeout=self.config.request_timeout_s
                    )
                )
                return
            except ApiException as error:
                if error.status == 409 and attempt == 1:
                    # Left by this executor before a crash (names derive from the process id).
                    log.warning("%s %s exists from an earlier run: replacing it", kind, name)
                    await self._delete(kind, name, "Foreground")
                    await self._wait_gone(kind, name)
                    continue
                raise ProcessFailed(
                    f"Kubernetes refused the {kind}: {_api_error(error)}"
                ) from error
            except Exception as error:  # the answer was lost: it may exist; run() deletes it
                log.warning("creating %s %s: %s: %s", kind, name, type(error).__name__, error)
                raise ProcessFailed(
                    f"creating the {kind} failed: {type(error).__name__}: {error}"
                ) from error

    async def _wait_gone(self, kind: str, name: str) -> None:
        ApiException = _kubernetes().client.exceptions.ApiException
        read = (
            self.batch.read_namespaced_job_status
            if kind == "Job"
            else self.apps.read_namespaced_deployment_status
        )
        with trio.move_on_after(self.config.request_timeout_s):
            while True:
                try:
                    await self._call(read, name, self.namespace)
                except ApiException as error:
                    if error.status == 404:
                        return
                await trio.sleep(self.config.poll_interval_s)

    async def _delete(self, kind: str, name: str, propagation: str) -> None:
        ApiException = _kubernetes().client.exceptions.ApiException

        delete = (
            self.batch.delete_namespaced_job
            if kind == "Job"
            else self.apps.delete_namespaced_deployment
        )
        try:
            with trio.move_on_after(self.config.request_timeout_s):
                await self._call(delete, name, self.namespace, propagation_policy=propagation)
                log.info("%s %s deleted (%s)", kind, name, propagation)
        except ApiException as error:
            if error.status != 404:
                log.warning("deleting %s %s: %s", kind, name, _api_error(error))
        except Exception as error:
            log.warning("deleting %s %s: %s: %s", kind, name, type(error).__name__, error)

    # ------------------------------------------------------------ waiting

    async def _wait_job(self, name: str) -> Any:
        """Read, then watch, until the Job has a final condition; the Job."""
        ApiException = _kubernetes().client.exceptions.ApiException

        failing_since: float | None = None
        while True:
            try:
                job = await self._call(self.batch.read_namespaced_job_status, name, self.namespace)
                if _condition(job) is not None:
                    return job
                watched = await trio.to_thread.run_sync(
                    self._watch_job, name, job.metadata.resource_version, abandon_on_cancel=True
                )
                if watched is not None:
                    return watched
                failing_since = None
            except ApiException as error:
                if error.status == 404:
                    raise ProcessFailed(
                        f"Kubernetes Job {name} was deleted by someone else"
                    ) from None
                failing_since = await self._api_trouble(name, error, failing_since)
            except (OSError, ValueError) as error:  # urllib3's errors are OSErrors
                failing_since = await self._api_trouble(name, error, failing_since)

    def _watch_job(self, name: str, resource_version: str | None) -> Any:
        """Blocking, in a thread: watch the Job until final (the Job) or the watch ends (None)."""
        kubernetes = _kubernetes()
        ApiException = kubernetes.client.exceptions.ApiException

        watcher = kubernetes.watch.Watch()
        try:
            for event in watcher.stream(
                self.batch.list_namespaced_job,
                self.namespace,
                field_selector=f"metadata.name={name}",
                resource_version=resource_version,
                timeout_seconds=self.config.watch_timeout_s,
                _request_timeout=self.config.watch_timeout_s + self.config.request_timeout_s,
            ):
                if event["type"] == "DELETED":
                    raise ApiException(status=404, reason="Not Found")
                if event["type"] in ("ADDED", "MODIFIED") and _condition(event["object"]):
                    return event["object"]
        except ApiException as error:
            if error.status == 410:  # resourceVersion too old: read again
                return None
            raise
        finally:
            watcher.stop()
        return None

    async def _wait_deployment(self, name: str) -> Any:
        """A service runs until cancelled; a Deployment deleted by someone else fails it."""
        ApiException = _kubernetes().client.exceptions.ApiException

        failing_since: float | None = None
        while True:
            await trio.sleep(self.config.poll_interval_s)
            try:
                await self._call(self.apps.read_namespaced_deployment_status, name, self.namespace)
                failing_since = None
            except ApiException as error:
                if error.status == 404:
                    raise ProcessFailed(f"Deployment {name} was deleted by someone else") from None
                failing_since = await self._api_trouble(name, error, failing_since)
            except (OSError, ValueError) as error:
                failing_since = await self._api_trouble(name, error, failing_since)

    async def _api_trouble(self, name: str, error: Exception, since: float | None) -> float:
        now = trio.current_time()
        since = now if since is None else since
        text = _api_error(error)
        if now - since > self.config.unreachable_for_s_max:
            raise ProcessFailed(f"the Kubernetes API failed for too long on {name}: {text}")
        log.warning("workload %s: %s; trying again", name, text)
        await trio.sleep(self.config.poll_interval_s)
        return since

    # ------------------------------------------------------------ pods and logs

    async def _follow_pods(
        self, context: ProcessContext, run: _Run, selector: str, nursery: trio.Nursery
    ) -> None:
        while True:
            try:
                await self._list_pods(context, run, selector, nursery)
            except Exception as error:  # a missed listing only delays the logs
                log.warning("workload %s: listing pods: %s", run.name, _api_error(error))
            await trio.sleep(self.config.poll_interval_s)

    async def _list_pods(
        self, context: ProcessContext, run: _Run, selector: str, nursery: trio.Nursery
    ) -> None:
        listed = await self._call(
            self.core.list_namespaced_pod,
            self.namespace,
            label_selector=selector,
            limit=PODS_LISTED_MAX,
        )
        known = len(run.pods)
        for pod in listed.items:
            pod_name = pod.metadata.name
            run.pods[pod_name] = pod
            for container in _followable(pod):
                if (pod_name, container) not in run.streams:
                    stream = run.stream(pod_name, container)
                    nursery.start_soon(self._stream_log, pod_name, container, stream)
        if len(run.pods) != known:
            await context.set_attribute(ATTRIBUTE_PODS, ",".join(sorted(run.pods)))

    async def _stream_log(self, pod: str, container: str, stream: _Stream) -> None:
        try:
            response = await self._call(
                self.core.read_namespaced_pod_log,
                pod,
                self.namespace,
                container=container,
                follow=True,
                _preload_content=False,
                _request_timeout=None,
            )
            try:
                # Abandoned on cancel (a followed log ends only with its container).
                await trio.to_thread.run_sync(
                    self._pump_log,
                    response,
                    stream.reader,
                    trio.lowlevel.current_trio_token(),
                    abandon_on_cancel=True,
                )
            except trio.Cancelled:
                _interrupt(response)  # its thread's read returns; the thread closes it
                raise
        except trio.Cancelled:
            raise
        except Exception as error:
            log.warning("pod %s/%s: reading its log: %s", pod, container, _api_error(error))
        finally:
            stream.done.set()

    @staticmethod
    def _pump_log(response: Any, reader: LineReader, token: trio.lowlevel.TrioToken) -> None:
        try:
            for chunk in response.stream(LOG_READ_BYTES):
                trio.from_thread.run_sync(reader.feed, chunk, trio_token=token)
        except (OSError, ValueError, trio.RunFinishedError) as error:
            log.debug("log stream ended: %s: %s", type(error).__name__, error)
        finally:
            response.close()

    # ------------------------------------------------------------ the result

    def _result(self, job: Any, run: _Run) -> list[Any]:
        verdict = _condition(job)
        if verdict is None:
            raise RuntimeError("the Job was followed to no final condition")
        kind, reason, message = verdict
        pods = sorted(run.pods.values(), key=lambda p: (_completion_index(p), p.metadata.name))
        if kind == "Complete":
            for pod in pods:
                if pod.status.phase != "Succeeded":
                    continue
                first = pod.spec.containers[0].name
                stream = run.streams.get((pod.metadata.name, first))
                if stream is None:
                    raise ProcessFailed(f"no log was read from pod {pod.metadata.name}")
                return output_from_stdout(stream.reader.last_line)
            raise ProcessFailed(
                f"Kubernetes Job {run.name} completed but no succeeded pod was seen"
            )
        errors = [f"Kubernetes Job {run.name} failed: {reason or 'Failed'}: {message}".rstrip(": ")]
        for pod in pods:
            for status in pod.status.container_statuses or []:
                terminated = status.state.terminated if status.state else None
                if terminated is None or terminated.exit_code == 0:
                    continue
                errors.append(
                    f"pod {pod.metadata.name} container {status.name}: exit status "
                    f"{terminated.exit_code} ({terminated.reason or 'Error'})"
                )
                stream = run.streams.get((pod.metadata.name, status.name))
                if stream is not None and stream.tail:
                    errors.append("log tail:\n" + "\n".join(stream.tail))
        raise ProcessFailed(*errors)
