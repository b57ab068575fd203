"""Parsers for sbatch/squeue/scontrol/sacct output.

The samples are written by hand after the formats in Slurm's man pages
(sbatch(1), squeue(1) "JOB STATE CODES", scontrol(1) "show job",
sacct(1) --parsable2), not captured from a live cluster.
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from colonymesh.executors.slurm.status import (
    ExitCode,
    JobPhase,
    SlurmJobState,
    SlurmParseError,
    job_state,
    parse_exit_code,
    parse_sacct,
    parse_sbatch,
    parse_scontrol_show_job,
    parse_squeue,
    phase_of,
    sacct_argv,
    squeue_argv,
)

SCONTROL_COMPLETED = """\
JobId=71701 JobName=colonymesh-p1
   UserId=da(1000) GroupId=da(1000) MCS_label=N/A
   Priority=4294901720 Nice=0 Account=(null) QOS=(null)
   JobState=COMPLETED Reason=None Dependency=(null)
   Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:0
   RunTime=00:00:01 TimeLimit=UNLIMITED TimeMin=N/A
   SubmitTime=2024-08-02T10:12:48 EligibleTime=2024-08-02T10:12:48
   StartTime=2024-08-02T10:12:48 EndTime=2024-08-02T10:12:49 Deadline=N/A
   Partition=debug AllocNode:Sid=node0:28154
   ReqNodeList=(null) ExcNodeList=(null)
   NodeList=node[1-2] BatchHost=node1
   NumNodes=2 NumCPUs=2 NumTasks=2 CPUs/Task=1 ReqB:S:C:T=0:0:*:*
   TRES=cpu=2,node=2,billing=2
   Socks/Node=* NtasksPerN:B:S:C=1:0:*:* CoreSpec=*
   MinCPUsNode=1 MinMemoryNode=0 MinTmpDiskNode=0
   Features=(null) DelayBoot=00:00:00
   OverSubscribe=OK Contiguous=0 Licenses=(null) Network=(null)
   Command=/home/da/my jobs/run job.sh
   WorkDir=/home/da
   StdErr=/var/log/colonymesh/p1_71701.err
   StdIn=/dev/null
   StdOut=/var/log/colonymesh/p1_71701.out
   Power=

"""

SCONTROL_TWO_ONELINERS = (
    "JobId=5 JobName=a UserId=u(1) JobState=TIMEOUT Reason=TimeLimit ExitCode=0:15 NodeList=n1\n"
    "JobId=6 JobName=b UserId=u(1) JobState=PENDING Reason=Resources ExitCode=0:0 NodeList=(null)\n"
)

SACCT_FAILED = """\
JobID|JobName|State|ExitCode|NodeList|Elapsed
71702|colonymesh-p2|FAILED|3:0|node1|00:00:02
71702.batch|batch|FAILED|3:0|node1|00:00:02
71702.extern|extern|COMPLETED|0:0|node1|00:00:02
71702.0|python3|FAILED|3:0|node1|00:00:01
"""

SACCT_CANCELLED_REORDERED = """\
State|JobID|ExitCode|Elapsed|JobName|NodeList|Partition
CANCELLED by 1000|71703|0:0|00:00:09|colonymesh-p3|node1|debug
CANCELLED|71703.batch|0:15|00:00:09|batch|node1|
"""


def test_sbatch_output() -> None:
    assert parse_sbatch("Submitted batch job 71701\n") == 71701
    assert parse_sbatch("Submitted batch job 12 on cluster alpha\n") == 12
    assert parse_sbatch("71701\n") == 71701  # --parsable
    assert parse_sbatch("71701;alpha\n") == 71701
    for bad in (
        "",
        "sbatch: error: Batch job submission failed: Invalid account",
        "Submitted batch job x",
    ):
        with pytest.raises(SlurmParseError):
            parse_sbatch(bad)


def test_squeue_rows() -> None:
    text = (
        "71701|RUNNING|None|node[1-2]\n71705|PENDING|Resources|\n71706_3|COMPLETING|None|node3\n\n"
    )
    rows = parse_squeue(text)
    assert [(r.job_id, r.state, r.reason, r.node_list) for r in rows] == [
        ("71701", SlurmJobState.RUNNING, "None", "node[1-2]"),
        ("71705", SlurmJobState.PENDING, "Resources", ""),
        ("71706_3", SlurmJobState.COMPLETING, "None", "node3"),
    ]
    assert parse_squeue("") == []  # a finished job leaves squeue
    assert squeue_argv([1, 2]) == ["squeue", "--noheader", "--format=%i|%T|%r|%N", "--jobs=1,2"]


@pytest.mark.parametrize(
    "text",
    ["71701|RUNNING|None", "abc|RUNNING|None|n1", "1|WALKING|None|n1", "1|R|a|b|c"],
)
def test_squeue_garbage(text: str) -> None:
    with pytest.raises(SlurmParseError):
        parse_squeue(text)


def test_scontrol_show_job_multiline() -> None:
    (job,) = parse_scontrol_show_job(SCONTROL_COMPLETED)
    assert job.job_id == "71701"
    assert job.job_name == "colonymesh-p1"
    assert job.state is SlurmJobState.COMPLETED
    assert job.exit_code == ExitCode(0, 0)
    assert job.node_list == "node[1-2]"
    assert job.std_out == "/var/log/colonymesh/p1_71701.out"
    assert job.std_err == "/var/log/colonymesh/p1_71701.err"
    assert job.field("Command") == "/home/da/my jobs/run job.sh"  # value with spaces
    assert job.field("TRES") == "cpu=2,node=2,billing=2"
    assert job.field("AllocNode:Sid") == "node0:28154"
    assert job.field("NtasksPerN:B:S:C") == "1:0:*:*"
    assert job.field("Power") == ""
    assert job.field("Nope") is None


def test_scontrol_oneliners() -> None:
    first, second = parse_scontrol_show_job(SCONTROL_TWO_ONELINERS)
    assert (first.state, first.reason, first.exit_code) == (
        SlurmJobState.TIMEOUT,
        "TimeLimit",
        ExitCode(0, 15),
    )
    assert (second.job_id, second.state) == ("6", SlurmJobState.PENDING)


@pytest.mark.parametrize(
    "text",
    [
        "slurm_load_jobs error: Invalid job id specified",
        "JobId=1 JobName=a\n   ExitCode=0:0",  # no JobState
        "JobId=1 JobState=RUNNING ExitCode=banana",
        "   JobState=RUNNING",
    ],
)
def test_scontrol_garbage(text: str) -> None:
    with pytest.raises(SlurmParseError):
        parse_scontrol_show_job(text)


def test_sacct_failed_job() -> None:
    rows = parse_sacct(SACCT_FAILED)
    assert [r.job_id for r in rows] == ["71702", "71702.batch", "71702.extern", "71702.0"]
    allocation = next(r for r in rows if r.is_allocation)
    assert allocation.state is SlurmJobState.FAILED
    assert allocation.exit_code == ExitCode(3, 0)
    assert phase_of(allocation.state) is JobPhase.FAILED
    assert sacct_argv(71702) == [
        "sacct",
        "--jobs=71702",
        "--parsable2",
        "--format=JobID,JobName,State,ExitCode,NodeList,Elapsed",
    ]


def test_sacct_cancelled_with_columns_in_another_order() -> None:
    rows = parse_sacct(SACCT_CANCELLED_REORDERED)
    assert rows[0].state is SlurmJobState.CANCELLED  # "CANCELLED by 1000"
    assert rows[0].job_name == "colonymesh-p3"
    assert rows[1].exit_code == ExitCode(0, 15)
    assert parse_sacct("") == []


@pytest.mark.parametrize(
    "text",
    [
        "JobID|State\n1|RUNNING",
        SACCT_FAILED + "71702.1|x|FAILED|3:0\n",
        SACCT_FAILED.replace("3:0", "3"),
    ],
)
def test_sacct_garbage(text: str) -> None:
    with pytest.raises(SlurmParseError):
        parse_sacct(text)


@pytest.mark.parametrize(
    ("text", "state", "phase"),
    [
        ("PD", SlurmJobState.PENDING, JobPhase.QUEUED),
        ("CF", SlurmJobState.CONFIGURING, JobPhase.QUEUED),
        ("R", SlurmJobState.RUNNING, JobPhase.RUNNING),
        ("RUNNING+", SlurmJobState.RUNNING, JobPhase.RUNNING),
        ("CG", SlurmJobState.COMPLETING, JobPhase.RUNNING),
        ("CD", SlurmJobState.COMPLETED, JobPhase.SUCCEEDED),
        ("CA", SlurmJobState.CANCELLED, JobPhase.CANCELLED),
        ("CANCELLED by 0", SlurmJobState.CANCELLED, JobPhase.CANCELLED),
        ("TO", SlurmJobState.TIMEOUT, JobPhase.TIMED_OUT),
        ("DEADLINE", SlurmJobState.DEADLINE, JobPhase.TIMED_OUT),
        ("F", SlurmJobState.FAILED, JobPhase.FAILED),
        ("OOM", SlurmJobState.OUT_OF_MEMORY, JobPhase.FAILED),
        ("OUT_OF_MEMORY", SlurmJobState.OUT_OF_MEMORY, JobPhase.FAILED),
        ("NF", SlurmJobState.NODE_FAIL, JobPhase.FAILED),
        ("RQ", SlurmJobState.REQUEUED, JobPhase.QUEUED),
        ("S", SlurmJobState.SUSPENDED, JobPhase.RUNNING),
    ],
)
def test_states_and_phases(text: str, state: SlurmJobState, phase: JobPhase) -> None:
    assert job_state(text) is state
    assert phase_of(state) is phase


def test_every_state_has_a_phase_and_terminality_is_consistent() -> None:
    terminal = {s for s in SlurmJobState if phase_of(s).is_terminal}
    assert SlurmJobState.COMPLETED in terminal and SlurmJobState.RUNNING not in terminal
    assert not JobPhase.QUEUED.is_terminal and JobPhase.TIMED_OUT.is_terminal


def test_exit_codes() -> None:
    assert parse_exit_code("137:9") == ExitCode(137, 9)
    for bad in ("", "1", "a:b", "1:2:3", "9999:0"):
        with pytest.raises(SlurmParseError):
            parse_exit_code(bad)


@given(st.text(max_size=300))
def test_parsers_raise_only_parse_errors(text: str) -> None:
    for parse in (
        parse_sbatch,
        parse_squeue,
        parse_scontrol_show_job,
        parse_sacct,
        job_state,
        parse_exit_code,
    ):
        with contextlib.suppress(SlurmParseError):
            parse(text)  # type: ignore[operator]
