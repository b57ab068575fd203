"""The Slurm executor kind's I/O driver: runs sbatch/squeue/scontrol/sacct/scancel for real.

It lives in its own subpackage so that the modules directly under
``executors/slurm/`` stay the pure translator and parsers (no I/O, checked
by ``tests/executors/test_imports.py``); this driver is their only user
that touches processes, files and the clock. See ``executor.py``.
"""

from colonymesh.executors.slurm.runtime.executor import (
    ATTRIBUTE_JOB_ID,
    ATTRIBUTE_NODE_LIST,
    JobOutcome,
    SlurmCommandError,
    SlurmExecutor,
    SlurmRuntimeConfig,
)

__all__ = [
    "ATTRIBUTE_JOB_ID",
    "ATTRIBUTE_NODE_LIST",
    "JobOutcome",
    "SlurmCommandError",
    "SlurmExecutor",
    "SlurmRuntimeConfig",
]
