"""Which executor may run which spec: ColonyOS's conditions, plus GPUs.

Pure functions of a spec, an executor and what the executor is already
running. An executor offers what its certificate declares; a spec that asks
for cpu, memory, storage or GPUs matches only an executor with that much
*free* (declared minus what its running processes asked for). A spec that asks
for nothing fits anywhere its type, name and location allow.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from colonymesh.node.ledger.model import Executor
from colonymesh.node.spec import FunctionSpec


@dataclass(frozen=True, slots=True)
class Resources:
    cpu_millicores: int = 0
    mem_bytes: int = 0
    storage_bytes: int = 0
    gpus: int = 0


def requested(spec: FunctionSpec) -> Resources:
    conditions = spec.conditions
    return Resources(
        cpu_millicores=conditions.cpu_millicores or 0,
        mem_bytes=conditions.mem_bytes or 0,
        storage_bytes=conditions.storage_bytes or 0,
        gpus=conditions.gpu.count,
    )


def free(executor: Executor, running_specs: Iterable[FunctionSpec]) -> Resources:
    capabilities = executor.capabilities
    cpu, mem, storage, gpus = (
        capabilities.cpu_millicores,
        capabilities.mem_bytes,
        capabilities.storage_bytes,
        capabilities.gpu.count,
    )
    for spec in running_specs:
        used = requested(spec)
        cpu -= used.cpu_millicores
        mem -= used.mem_bytes
        storage -= used.storage_bytes
        gpus -= used.gpus
    return Resources(cpu, mem, storage, gpus)


def mismatch(spec: FunctionSpec, executor: Executor, available: Resources) -> str:
    """Why ``executor`` cannot take ``spec`` now; empty when it can."""
    conditions = spec.conditions
    if conditions.executortype != executor.executor_type:
        return f"executor type {executor.executor_type!r} is not {conditions.executortype!r}"
    if conditions.executornames and executor.name not in conditions.executornames:
        return f"executor {executor.name!r} is not among {list(conditions.executornames)}"
    if conditions.locationname and conditions.locationname != executor.location:
        return f"location {executor.location!r} is not {conditions.locationname!r}"
    need = requested(spec)
    for what, wanted, have in (
        ("cpu (millicores)", need.cpu_millicores, available.cpu_millicores),
        ("memory (bytes)", need.mem_bytes, available.mem_bytes),
        ("storage (bytes)", need.storage_bytes, available.storage_bytes),
        ("gpus", need.gpus, available.gpus),
    ):
        if wanted > have:
            return f"needs {wanted} {what}, {max(have, 0)} free"
    gpu = conditions.gpu
    offered = executor.capabilities.gpu
    if gpu.count and gpu.name and gpu.name.lower() != offered.name.lower():
        return f"gpu {offered.name or 'none'!r} is not {gpu.name!r}"
    if gpu.count and gpu.mem_bytes and gpu.mem_bytes > offered.mem_bytes:
        return f"gpu memory {offered.mem_bytes} is less than {gpu.mem_bytes}"
    return ""
