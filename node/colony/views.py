"""JSON documents of ledger records, shaped like ColonyOS's, for the CLI and the SDK."""

from __future__ import annotations

from typing import Any

from colonymesh.node.identity import peer_id_of
from colonymesh.node.ledger.ledger import Ledger
from colonymesh.node.ledger.model import Executor, Process, Workflow


def _peer(key: bytes | None) -> str:
    return peer_id_of(key) if key else ""


def process_view(process: Process, *, logs: bool = False) -> dict[str, Any]:
    view: dict[str, Any] = {
        "processid": process.id,
        "state": process.state.value,
        "spec": process.spec.to_json_obj(),
        "funcname": process.spec.funcname,
        "executortype": process.spec.conditions.executortype,
        "submitter": _peer(process.submitter),
        "executor": _peer(process.executor),
        "workflowid": process.workflow_id,
        "parents": list(process.parents),
        "children": list(process.children),
        "submissiontime_ms": process.submitted_ms,
        "starttime_ms": process.assigned_ms,
        "endtime_ms": process.ended_ms,
        "retries": process.retries,
        "input": process.input,
        "output": process.output,
        "errors": list(process.errors),
        "attributes": dict(process.attributes),
        "log_lines": len(process.logs) + process.logs_dropped,
    }
    if logs:
        view["logs"] = [{"time_ms": t, "message": m} for t, m in process.logs]
        view["logs_dropped"] = process.logs_dropped
    return view


def workflow_view(workflow: Workflow, ledger: Ledger) -> dict[str, Any]:
    return {
        "workflowid": workflow.id,
        "state": workflow.state.value,
        "submitter": _peer(workflow.submitter),
        "submissiontime_ms": workflow.submitted_ms,
        "endtime_ms": workflow.ended_ms,
        "processes": [process_view(ledger.processes[p]) for p in workflow.process_ids],
    }


def executor_view(executor: Executor) -> dict[str, Any]:
    capabilities = executor.capabilities
    return {
        "name": executor.name,
        "peer_id": _peer(executor.key),
        "executortype": executor.executor_type,
        "location": executor.location,
        "cpu_millicores": capabilities.cpu_millicores,
        "mem_bytes": capabilities.mem_bytes,
        "storage_bytes": capabilities.storage_bytes,
        "gpu": {"name": capabilities.gpu.name, "count": capabilities.gpu.count},
        "running": list(executor.running),
        "functions": sorted(executor.functions),
    }


def status_view(ledger: Ledger, raft: dict[str, Any]) -> dict[str, Any]:
    return {
        "colony": ledger.colony.name,
        "colony_id": ledger.colony.colony_id.hex(),
        "ledger_time_ms": ledger.now_ms,
        "applied_index": ledger.applied_index,
        "processes": ledger.counts(),
        "workflows": len(ledger.workflows),
        "executors": [executor_view(e) for e in ledger.executors.values()],
        "members": len(ledger.membership.members()),
        "raft": raft,
        "functions": [
            {
                "executortype": s.executor_type,
                "funcname": s.funcname,
                "submitted": s.submitted,
                "succeeded": s.succeeded,
                "failed": s.failed,
                "wait_ms": {
                    "min": s.wait.min_ms,
                    "avg": round(s.wait.avg_ms, 3),
                    "max": s.wait.max_ms,
                },
                "run_ms": {"min": s.run.min_ms, "avg": round(s.run.avg_ms, 3), "max": s.run.max_ms},
            }
            for s in ledger.functions.values()
        ],
    }
