"""Slurm: function specs as sbatch scripts, and Slurm's answers read back as job states.

``sbatch.to_sbatch`` translates (pure); ``status`` parses sbatch, squeue,
scontrol and sacct output (pure). The executor that runs them on a cluster
builds on these two.
"""

from colonymesh.executors.slurm.sbatch import (
    ContainerRuntime,
    SbatchJob,
    SlurmConfig,
    SlurmConfigError,
    format_time,
    to_sbatch,
)
from colonymesh.executors.slurm.status import (
    JobPhase,
    SlurmJobState,
    SlurmParseError,
    job_state,
    parse_sacct,
    parse_sbatch,
    parse_scontrol_show_job,
    parse_squeue,
    phase_of,
)

__all__ = [
    "ContainerRuntime",
    "JobPhase",
    "SbatchJob",
    "SlurmConfig",
    "SlurmConfigError",
    "SlurmJobState",
    "SlurmParseError",
    "format_time",
    "job_state",
    "parse_sacct",
    "parse_sbatch",
    "parse_scontrol_show_job",
    "parse_squeue",
    "phase_of",
    "to_sbatch",
]
