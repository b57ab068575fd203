"""Parsers for what Slurm's commands print: sbatch, squeue, scontrol show job, sacct.

Pure functions over text. The Slurm executor runs the commands (with the
argv given here, so the format is the one the parser expects) and feeds
their stdout in. Output is treated as untrusted: anything unexpected raises
``SlurmParseError``, never another exception; sizes are capped.

Job states are Slurm's base states (``man squeue``, JOB STATE CODES), read
from long names (``RUNNING``), squeue's short codes (``R``), and sacct's
decorated forms (``CANCELLED by 1000``, ``RUNNING+``). ``phase_of`` folds
them into the six phases a colony process cares about.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import assert_never

__all__ = [
    "SACCT_FIELDS",
    "SQUEUE_FORMAT",
    "ExitCode",
    "JobPhase",
    "SacctRow",
    "ScontrolJob",
    "SlurmJobState",
    "SlurmParseError",
    "SqueueRow",
    "job_state",
    "parse_exit_code",
    "parse_sacct",
    "parse_sbatch",
    "parse_scontrol_show_job",
    "parse_squeue",
    "phase_of",
    "sacct_argv",
    "squeue_argv",
]

OUTPUT_CHARS_MAX = 4 << 20
SQUEUE_FORMAT = "%i|%T|%r|%N"
SACCT_FIELDS = ("JobID", "JobName", "State", "ExitCode", "NodeList", "Elapsed")
_JOB_ID = re.compile(r"[0-9]+(?:[_+][0-9]+)?\Z")


class SlurmParseError(ValueError):
    """Slurm printed something these parsers do not understand."""


class SlurmJobState(enum.Enum):
    BOOT_FAIL = "BOOT_FAIL"
    CANCELLED = "CANCELLED"
    COMPLETED = "COMPLETED"
    COMPLETING = "COMPLETING"
    CONFIGURING = "CONFIGURING"
    DEADLINE = "DEADLINE"
    FAILED = "FAILED"
    NODE_FAIL = "NODE_FAIL"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    PENDING = "PENDING"
    PREEMPTED = "PREEMPTED"
    REQUEUED = "REQUEUED"
    REQUEUE_FED = "REQUEUE_FED"
    REQUEUE_HOLD = "REQUEUE_HOLD"
    RESIZING = "RESIZING"
    RESV_DEL_HOLD = "RESV_DEL_HOLD"
    REVOKED = "REVOKED"
    RUNNING = "RUNNING"
    SIGNALING = "SIGNALING"
    SPECIAL_EXIT = "SPECIAL_EXIT"
    STAGE_OUT = "STAGE_OUT"
    STOPPED = "STOPPED"
    SUSPENDED = "SUSPENDED"
    TIMEOUT = "TIMEOUT"


# squeue's compact state codes (man squeue, JOB STATE CODES).
_SHORT = {
    "BF": SlurmJobState.BOOT_FAIL,
    "CA": SlurmJobState.CANCELLED,
    "CD": SlurmJobState.COMPLETED,
    "CF": SlurmJobState.CONFIGURING,
    "CG": SlurmJobState.COMPLETING,
    "DL": SlurmJobState.DEADLINE,
    "F": SlurmJobState.FAILED,
    "NF": SlurmJobState.NODE_FAIL,
    "OOM": SlurmJobState.OUT_OF_MEMORY,
    "PD": SlurmJobState.PENDING,
    "PR": SlurmJobState.PREEMPTED,
    "R": SlurmJobState.RUNNING,
    "RD": SlurmJobState.RESV_DEL_HOLD,
    "RF": SlurmJobState.REQUEUE_FED,
    "RH": SlurmJobState.REQUEUE_HOLD,
    "RQ": SlurmJobState.REQUEUED,
    "RS": SlurmJobState.RESIZING,
    "RV": SlurmJobState.REVOKED,
    "SI": SlurmJobState.SIGNALING,
    "SE": SlurmJobState.SPECIAL_EXIT,
    "SO": SlurmJobState.STAGE_OUT,
    "ST": SlurmJobState.STOPPED,
    "S": SlurmJobState.SUSPENDED,
    "TO": SlurmJobState.TIMEOUT,
}


class JobPhase(enum.Enum):
    """Where a Slurm job stands, in colony terms."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def is_terminal(self) -> bool:
        return self not in (JobPhase.QUEUED, JobPhase.RUNNING)


def job_state(text: str) -> SlurmJobState:
    """A Slurm state in any of its printed forms."""
    word = text.strip().split(" ", 1)[0].rstrip("+")  # "CANCELLED by 1000", "RUNNING+"
    if word in _SHORT:
        return _SHORT[word]
    try:
        return SlurmJobState(word)
    except ValueError:
        raise SlurmParseError(f"unknown Slurm job state {text[:40]!r}") from None


def phase_of(state: SlurmJobState) -> JobPhase:
    """Fold Slurm's states into colony phases (requeues count as queued)."""
    match state:
        case (
            SlurmJobState.PENDING
            | SlurmJobState.CONFIGURING
            | SlurmJobState.REQUEUED
            | SlurmJobState.REQUEUE_FED
            | SlurmJobState.REQUEUE_HOLD
            | SlurmJobState.RESV_DEL_HOLD
        ):
            return JobPhase.QUEUED
        case (
            SlurmJobState.RUNNING
            | SlurmJobState.COMPLETING
            | SlurmJobState.RESIZING
            | SlurmJobState.SIGNALING
            | SlurmJobState.STAGE_OUT
            | SlurmJobState.STOPPED
            | SlurmJobState.SUSPENDED
        ):
            return JobPhase.RUNNING
        case SlurmJobState.COMPLETED:
            return JobPhase.SUCCEEDED
        case SlurmJobState.CANCELLED:
            return JobPhase.CANCELLED
        case SlurmJobState.TIMEOUT | SlurmJobState.DEADLINE:
            return JobPhase.TIMED_OUT
        case (
            SlurmJobState.FAILED
            | SlurmJobState.NODE_FAIL
            | SlurmJobState.BOOT_FAIL
            | SlurmJobState.OUT_OF_MEMORY
            | SlurmJobState.PREEMPTED
            | SlurmJobState.REVOKED
            | SlurmJobState.SPECIAL_EXIT
        ):
            return JobPhase.FAILED
        case _:
            assert_never(state)


@dataclass(frozen=True, slots=True)
class ExitCode:
    """Slurm's ``status:signal`` pair (``"1:0"`` exited 1; ``"0:15"`` killed by SIGTERM)."""

    status: int
    signal: int


def parse_exit_code(text: str) -> ExitCode:
    match = re.fullmatch(r"([0-9]{1,3}):([0-9]{1,3})", text.strip())
    if match is None:
        raise SlurmParseError(f"bad ExitCode {text[:20]!r}")
    return ExitCode(status=int(match[1]), signal=int(match[2]))


def _checked(text: str) -> str:
    if not isinstance(text, str):
        raise SlurmParseError("Slurm output must be text")
    if len(text) > OUTPUT_CHARS_MAX:
        raise SlurmParseError(f"Slurm output longer than {OUTPUT_CHARS_MAX} characters")
    return text


# ---------------------------------------------------------------- sbatch


def parse_sbatch(text: str) -> int:
    """The job id from ``sbatch`` (``Submitted batch job 42``) or ``sbatch --parsable`` (``42[;cluster]``)."""
    out = _checked(text).strip()
    match = re.fullmatch(r"Submitted batch job ([0-9]{1,12})(?: on cluster \S+)?", out)
    if match is None:
        match = re.fullmatch(r"([0-9]{1,12})(?:;\S+)?", out)
    if match is None:
        raise SlurmParseError(f"unexpected sbatch output {out[:80]!r}")
    return int(match[1])


# ---------------------------------------------------------------- squeue


def squeue_argv(job_ids: list[int]) -> list[str]:
    """The squeue invocation whose output ``parse_squeue`` reads."""
    return [
        "squeue",
        "--noheader",
        f"--format={SQUEUE_FORMAT}",
        f"--jobs={','.join(map(str, job_ids))}",
    ]


@dataclass(frozen=True, slots=True)
class SqueueRow:
    job_id: str
    state: SlurmJobState
    reason: str
    node_list: str


def parse_squeue(text: str) -> list[SqueueRow]:
    """Rows of ``squeue --noheader --format='%i|%T|%r|%N'``; finished jobs are simply absent."""
    rows: list[SqueueRow] = []
    for line in _checked(text).splitlines():
        if not line.strip():
            continue
        parts = line.split("|")
        if len(parts) != 4:
            raise SlurmParseError(f"squeue line has {len(parts)} fields, not 4: {line[:80]!r}")
        job_id, state, reason, nodes = (part.strip() for part in parts)
        if not _JOB_ID.match(job_id):
            raise SlurmParseError(f"bad job id {job_id[:20]!r}")
        rows.append(
            SqueueRow(job_id=job_id, state=job_state(state), reason=reason, node_list=nodes)
        )
    return rows


# ---------------------------------------------------------------- scontrol


@dataclass(frozen=True, slots=True)
class ScontrolJob:
    job_id: str
    job_name: str
    state: SlurmJobState
    reason: str
    exit_code: ExitCode
    node_list: str
    std_out: str
    std_err: str
    fields: tuple[tuple[str, str], ...]

    def field(self, key: str) -> str | None:
        for name, value in self.fields:
            if name == key:
                return value
        return None


# A key starts a token: "JobId=", "Socks/Node=", "NtasksPerN:B:S:C=".
_KEY = re.compile(r"([A-Za-z][A-Za-z0-9_/:]*)=(.*)\Z", re.DOTALL)


def _scontrol_fields(block: str) -> list[tuple[str, str]]:
    fields: list[tuple[str, str]] = []
    for token in block.split():
        match = _KEY.match(token)
        if match:
            fields.append((match[1], match[2]))
        elif fields:  # a value with spaces in it ("Command=/a b/c.sh"): rejoin
            key, value = fields[-1]
            fields[-1] = (key, f"{value} {token}")
        else:
            raise SlurmParseError(f"scontrol output does not start with KEY=VALUE: {token[:40]!r}")
    return fields


def parse_scontrol_show_job(text: str) -> list[ScontrolJob]:
    """Every job in ``scontrol show job [ID]`` output (multi-line or ``--oneliner``)."""
    blocks: list[str] = []
    for line in _checked(text).splitlines():
        if line.startswith("JobId="):
            blocks.append(line)
        elif line.strip():
            if not blocks:
                raise SlurmParseError(f"scontrol output does not start with JobId=: {line[:60]!r}")
            blocks[-1] += " " + line
    jobs: list[ScontrolJob] = []
    for block in blocks:
        fields = dict(_scontrol_fields(block))
        try:
            jobs.append(
                ScontrolJob(
                    job_id=fields["JobId"],
                    job_name=fields.get("JobName", ""),
                    state=job_state(fields["JobState"]),
                    reason=fields.get("Reason", ""),
                    exit_code=parse_exit_code(fields.get("ExitCode", "0:0")),
                    node_list=fields.get("NodeList", ""),
                    std_out=fields.get("StdOut", ""),
                    std_err=fields.get("StdErr", ""),
                    fields=tuple(_scontrol_fields(block)),
                )
            )
        except KeyError as missing:
            raise SlurmParseError(f"scontrol job record lacks {missing}") from None
    return jobs


# ---------------------------------------------------------------- sacct


def sacct_argv(job_id: int) -> list[str]:
    """The sacct invocation whose output ``parse_sacct`` reads."""
    return ["sacct", f"--jobs={job_id}", "--parsable2", f"--format={','.join(SACCT_FIELDS)}"]


@dataclass(frozen=True, slots=True)
class SacctRow:
    job_id: str  # "42", "42.batch", "42.extern", "42.0"
    job_name: str
    state: SlurmJobState
    exit_code: ExitCode
    node_list: str
    elapsed: str

    @property
    def is_allocation(self) -> bool:
        """The job itself rather than one of its steps."""
        return "." not in self.job_id


def parse_sacct(text: str) -> list[SacctRow]:
    """Rows of ``sacct --parsable2 --format=JobID,JobName,State,ExitCode,NodeList,Elapsed``.

    The header line names the columns, so their order may differ; the six
    fields above must all be there.
    """
    lines = [line for line in _checked(text).splitlines() if line.strip()]
    if not lines:
        return []
    header = lines[0].split("|")
    missing = [name for name in SACCT_FIELDS if name not in header]
    if missing:
        raise SlurmParseError(f"sacct header lacks {', '.join(missing)}: {lines[0][:80]!r}")
    column = {name: header.index(name) for name in SACCT_FIELDS}
    rows: list[SacctRow] = []
    for line in lines[1:]:
        cells = line.split("|")
        if len(cells) != len(header):
            raise SlurmParseError(f"sacct row has {len(cells)} fields, not {len(header)}")
        rows.append(
            SacctRow(
                job_id=cells[column["JobID"]],
                job_name=cells[column["JobName"]],
                state=job_state(cells[column["State"]]),
                exit_code=parse_exit_code(cells[column["ExitCode"]]),
                node_list=cells[column["NodeList"]],
                elapsed=cells[column["Elapsed"]],
            )
        )
    return rows
