"""Deterministic simulation of colonies: a seeded virtual clock and network driving real cores.

The harness (:mod:`.engine`, :mod:`.network`, :mod:`.disk`, :mod:`.faults`)
runs any sans-I/O core behind a small :class:`~.engine.Adapter`; scenarios
(:mod:`.raft_scenario`, ...) are registered by name in :mod:`.runner`, which
the ``colonymesh simulate`` command calls.
"""

from colonymesh.simulations.disk import SimDisk
from colonymesh.simulations.engine import (
    Adapter,
    InvariantViolation,
    NodeCrashed,
    NodeIO,
    SimStats,
    Simulator,
)
from colonymesh.simulations.faults import FaultInjector, FaultProfile
from colonymesh.simulations.network import LinkSpec, Network
from colonymesh.simulations.runner import (
    ScenarioResult,
    deterministic_view,
    format_failure,
    register_scenario,
    replay_command,
    run_scenario,
    scenario_names,
    sweep,
)

__all__ = [
    "Adapter",
    "FaultInjector",
    "FaultProfile",
    "InvariantViolation",
    "LinkSpec",
    "Network",
    "NodeCrashed",
    "NodeIO",
    "ScenarioResult",
    "SimDisk",
    "SimStats",
    "Simulator",
    "deterministic_view",
    "format_failure",
    "register_scenario",
    "replay_command",
    "run_scenario",
    "scenario_names",
    "sweep",
]
