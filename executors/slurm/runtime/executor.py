"""The Slurm executor kind: a function spec as a batch job on a real Slurm cluster.

What it owns: the I/O around the pure pieces next to it. ``sbatch.to_sbatch``
writes the script, ``status`` reads Slurm's answers; this module runs the
commands (argv lists, never a shell) and follows one job per process:

1. ``to_sbatch`` -> the script is written to ``script_dir/<process id>.sbatch``
   (removed with the stdin file once the job has finished, unless
   ``keep_scripts``; the job's stdout/stderr files stay in ``log_dir``);
2. ``sbatch --parsable --input=FILE SCRIPT`` -> the job id (FILE holds the
   parents' outputs, ``context.input``, as one JSON array: the job's stdin,
   as for a local process), recorded as the attribute
   ``slurm.jobid`` (sbatch runs shielded from cancellation, so a job that was
   submitted always has a known id and can be cancelled);
3. tracking: ``squeue`` while the job is listed there (its state and node
   list; the node list becomes the attribute ``slurm.nodelist``), then
   ``scontrol show job`` for the final record (state, exit code) and, when
   the job was already purged from slurmctld's memory and ``use_sacct`` is
   set (accounting configured), ``sacct``. Polls back off from
   ``poll_initial_s`` by ``poll_backoff`` up to ``poll_max_s``;
4. meanwhile the job's stdout and stderr files (``--output``/``--error``) are
   tailed into the process logs (stderr lines prefixed ``[stderr] ``),
   through the same bounded batching as local processes;
5. the end: ``COMPLETED`` -> the output, read from stdout's last non-empty
   line by the local-process rules (``executors.process.output_from_stdout``);
   ``FAILED``/``NODE_FAIL``/``OUT_OF_MEMORY``... -> ``ProcessFailed`` with
   Slurm's state, the exit status and the stderr tail; ``TIMEOUT`` -> failed
   as over its walltime; ``CANCELLED`` by someone else -> failed as such.

Cancellation (the runtime's ``maxexectime``, a cancelled process, executor
shutdown) runs ``scancel JOBID`` shielded, then waits up to ``cancel_wait_s``
until Slurm reports the job finished, so no job outlives its process.
ColonyOS never cancels Slurm jobs; colonymesh does.

The job runs under the executor's account; which programs it may run is
decided by the executor config (``SlurmConfig.commands``), as for the
translator.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import trio

from colonymesh.executors.base import ProcessContext, ProcessFailed
from colonymesh.executors.process import (
    LineReader,
    LogBatcher,
    input_json,
    output_from_stdout,
)
from colonymesh.executors.slurm.sbatch import SbatchJob, SlurmConfig, SlurmConfigError, to_sbatch
from colonymesh.executors.slurm.status import (
    ExitCode,
    JobPhase,
    SlurmJobState,
    SlurmParseError,
    parse_sacct,
    parse_sbatch,
    parse_scontrol_show_job,
    parse_squeue,
    phase_of,
    sacct_argv,
    squeue_argv,
)
from colonymesh.node.spec import SpecError

__all__ = ["JobOutcome", "SlurmCommandError", "SlurmExecutor", "SlurmRuntimeConfig"]

log = logging.getLogger("colonymesh.executors.slurm")

COMMAND_OUTPUT_BYTES_MAX = 4 << 20
TAIL_READ_BYTES = 64 * 1024
ATTRIBUTE_JOB_ID = "slurm.jobid"
ATTRIBUTE_NODE_LIST = "slurm.nodelist"


class SlurmCommandError(Exception):
    """A Slurm command failed to run or said it failed."""


@dataclass(frozen=True, slots=True)
class SlurmRuntimeConfig:
    """How the executor drives Slurm; the translation itself is ``sbatch``'s ``SlurmConfig``."""

    sbatch: SlurmConfig
    descriptions: Mapping[str, str] = field(default_factory=dict)
    script_dir: str = ""  # "" = the sbatch config's log_dir
    keep_scripts: bool = False  # keep <pid>.sbatch and <pid>.input.json after the job
    use_sacct: bool = False  # only where accounting (slurmdbd) is configured
    poll_initial_s: float = 0.2
    poll_max_s: float = 5.0
    poll_backoff: float = 1.5
    tail_interval_s: float = 0.5
    command_timeout_s: float = 30.0
    cancel_wait_s: float = 30.0
    # A job neither squeue, scontrol nor sacct knows for this long is reported lost.
    unknown_for_s_max: float = 60.0
    log_interval_s: float = 0.5
    log_bytes_max: int = 1 << 20
    stderr_tail_lines: int = 20

    def check(self) -> None:
        self.sbatch.check()
        if self.poll_initial_s <= 0 or self.poll_max_s < self.poll_initial_s:
            raise SlurmConfigError("poll_initial_s must be > 0 and <= poll_max_s")
        if self.poll_backoff < 1:
            raise SlurmConfigError("poll_backoff must be >= 1")


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """How a job ended, as Slurm reported it."""

    job_id: int
    state: SlurmJobState
    exit_code: ExitCode
    node_list: str

    @property
    def phase(self) -> JobPhase:
        return phase_of(self.state)


class _FileTail:
    """Follows a file Slurm writes (it may not exist yet), feeding lines to a reader."""

    def __init__(self, path: str, reader: LineReader) -> None:
        self.path = path
        self.reader = reader
        self._offset = 0

    def read_new(self) -> None:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                while data := handle.read(TAIL_READ_BYTES):
                    self._offset += len(data)
                    self.reader.feed(data)
        except FileNotFoundError:
            return


class SlurmExecutor:
    """The executor kind that runs specs as Slurm batch jobs."""

    def __init__(self, config: SlurmRuntimeConfig) -> None:
        config.check()
        self.config = config

    def functions(self) -> dict[str, str]:
        return {
            name: self.config.descriptions.get(name, " ".join(argv))
            for name, argv in self.config.sbatch.commands.items()
        }

    # ------------------------------------------------------------ commands

    async def _command(self, argv: list[str]) -> str:
        """Run one Slurm command (argv, no shell); its stdout, or ``SlurmCommandError``."""
        try:
            with trio.fail_after(self.config.command_timeout_s):
                done = await trio.run_process(
                    argv,
                    stdin=subprocess.DEVNULL,
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                )
        except trio.TooSlowError:
            raise SlurmCommandError(
                f"{argv[0]} did not answer within {self.config.command_timeout_s}s"
            ) from None
        except OSError as error:
            raise SlurmCommandError(f"cannot run {argv[0]}: {error.strerror or error}") from error
        stdout = done.stdout[:COMMAND_OUTPUT_BYTES_MAX].decode("utf-8", "replace")
        if done.returncode != 0:
            stderr = done.stderr[-2000:].decode("utf-8", "replace").strip()
            raise SlurmCommandError(f"{argv[0]} exited {done.returncode}: {stderr}")
        return stdout

    async def submit(self, job: SbatchJob, process_id: str, stdin: bytes = b"") -> int:
        """Write the script and its stdin file, ``sbatch`` it; the job id."""
        script_dir = self.config.script_dir or self.config.sbatch.log_dir
        await trio.Path(self.config.sbatch.log_dir).mkdir(parents=True, exist_ok=True)
        await trio.Path(script_dir).mkdir(parents=True, exist_ok=True)
        script = os.path.join(script_dir, f"{process_id}.sbatch")
        await trio.Path(script).write_text(job.script)
        stdin_file = os.path.join(script_dir, f"{process_id}.input.json")
        await trio.Path(stdin_file).write_bytes(stdin)
        argv = ["sbatch", "--parsable", f"--input={stdin_file}", script]
        return parse_sbatch(await self._command(argv))

    def _remove_scripts(self, process_id: str) -> None:
        """Drop the job's script and stdin file (its stdout/stderr files stay)."""
        script_dir = self.config.script_dir or self.config.sbatch.log_dir
        for suffix in (".sbatch", ".input.json"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(script_dir, f"{process_id}{suffix}"))

    async def poll(self, job_id: int) -> tuple[SlurmJobState, str] | None:
        """The job's state and node list from squeue, ``None`` once it is no longer listed."""
        try:
            text = await self._command(squeue_argv([job_id]))
        except SlurmCommandError as error:
            if "Invalid job id" in str(error):  # purged from slurmctld's memory
                return None
            raise
        rows = parse_squeue(text)
        row = next((r for r in rows if r.job_id == str(job_id)), None)
        return None if row is None else (row.state, row.node_list)

    async def final_record(self, job_id: int) -> JobOutcome | None:
        """The job's record from scontrol, else sacct (when used); ``None`` if neither has it."""
        try:
            text = await self._command(["scontrol", "--oneliner", "show", "job", str(job_id)])
        except SlurmCommandError as error:
            if "Invalid job id" not in str(error):
                raise
        else:
            for job in parse_scontrol_show_job(text):
                if job.job_id == str(job_id):
                    return JobOutcome(job_id, job.state, job.exit_code, job.node_list)
        if self.config.use_sacct:
            rows = parse_sacct(await self._command(sacct_argv(job_id)))
            row = next((r for r in rows if r.is_allocation and r.job_id == str(job_id)), None)
            if row is not None:
                return JobOutcome(job_id, row.state, row.exit_code, row.node_list)
        return None

    async def cancel(self, job_id: int) -> JobOutcome | None:
        """``scancel`` the job and wait (bounded) until Slurm reports it finished."""
        await self._command(["scancel", str(job_id)])
        delay = self.config.poll_initial_s
        with trio.move_on_after(self.config.cancel_wait_s):
            while True:
                outcome = await self.final_record(job_id)
                if outcome is not None and outcome.phase.is_terminal:
                    return outcome
                await trio.sleep(delay)
                delay = min(delay * self.config.poll_backoff, self.config.poll_max_s)
        return None

    # ------------------------------------------------------------ the kind

    async def run(self, context: ProcessContext) -> list[Any]:
        try:
            job = to_sbatch(context.spec, context.process_id, self.config.sbatch)
            stdin = input_json(context.input)
        except (SpecError, SlurmConfigError, ValueError) as error:
            raise ProcessFailed(f"cannot translate to sbatch: {error}") from error
        # Shielded: once sbatch may have queued a job we must learn its id to cancel it.
        with trio.CancelScope(shield=True):
            try:
                job_id = await self.submit(job, context.process_id, stdin)
            except (SlurmCommandError, SlurmParseError, OSError) as error:
                raise ProcessFailed(f"sbatch failed: {error}") from error
        log.info("process %s: Slurm job %d submitted", context.process_id, job_id)

        config = self.config
        logs = LogBatcher(
            context.log, interval_s=config.log_interval_s, total_bytes_max=config.log_bytes_max
        )
        tail: deque[str] = deque(maxlen=config.stderr_tail_lines)

        def on_stderr(line: str) -> None:
            tail.append(line[:4096])
            logs.add(f"[stderr] {line}")

        stdout = LineReader(logs.add, keep_last=True)
        stderr = LineReader(on_stderr, keep_last=False)
        tails = [
            _FileTail(job.stdout_for(job_id), stdout),
            _FileTail(job.stderr_for(job_id), stderr),
        ]
        outcome: JobOutcome | None = None
        lost: ProcessFailed | None = None
        try:
            await context.set_attribute(ATTRIBUTE_JOB_ID, str(job_id))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(logs.run)
                nursery.start_soon(self._tail, tails)
                try:
                    outcome = await self._follow(context, job_id)
                except ProcessFailed as failure:  # raised below, not as an exception group
                    lost = failure
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                if outcome is None:
                    await self._cancel_on_exit(context.process_id, job_id)
                for file_tail in tails:
                    await trio.to_thread.run_sync(file_tail.read_new)
                    file_tail.reader.finish()
                with trio.move_on_after(5):
                    await logs.close()
                if not self.config.keep_scripts and (outcome is not None or lost is not None):
                    await trio.to_thread.run_sync(self._remove_scripts, context.process_id)
        if lost is not None:
            raise lost
        return self._result(outcome, stdout, tail)

    async def _tail(self, tails: list[_FileTail]) -> None:
        while True:
            for file_tail in tails:
                await trio.to_thread.run_sync(file_tail.read_new)
            await trio.sleep(self.config.tail_interval_s)

    async def _follow(self, context: ProcessContext, job_id: int) -> JobOutcome:
        """Poll until the job is finished; record its node list on the way."""
        config = self.config
        delay = config.poll_initial_s
        nodes_recorded = ""
        unknown_since: float | None = None
        last_state: SlurmJobState | None = None
        while True:
            try:
                listed = await self.poll(job_id)
                finished = listed is None or phase_of(listed[0]).is_terminal
                outcome = await self.final_record(job_id) if finished else None
            except (SlurmCommandError, SlurmParseError) as error:
                log.warning("Slurm job %d: tracking: %s", job_id, error)
                listed, outcome = None, None
            else:
                if listed is None and outcome is None:  # known to none of squeue, scontrol, sacct
                    unknown_since = unknown_since or trio.current_time()
                    if trio.current_time() - unknown_since > config.unknown_for_s_max:
                        raise ProcessFailed(f"Slurm job {job_id} is no longer known to Slurm")
                else:
                    unknown_since = None
            state, nodes = listed or (None, outcome.node_list if outcome else "")
            if outcome is not None:
                state = outcome.state
            if nodes and nodes != nodes_recorded and not nodes.startswith("("):
                await context.set_attribute(ATTRIBUTE_NODE_LIST, nodes)
                nodes_recorded = nodes
            if state is not None and state != last_state:
                log.info("Slurm job %d: %s", job_id, state.value)
                last_state = state
                delay = config.poll_initial_s  # something moved: look again soon
            if outcome is not None and outcome.phase.is_terminal:
                return outcome
            await trio.sleep(delay)
            delay = min(delay * config.poll_backoff, config.poll_max_s)

    async def _cancel_on_exit(self, process_id: str, job_id: int) -> None:
        log.info("process %s: cancelling Slurm job %d", process_id, job_id)
        try:
            outcome = await self.cancel(job_id)
        except (SlurmCommandError, SlurmParseError) as error:
            log.warning("process %s: scancel %d failed: %s", process_id, job_id, error)
            return
        if outcome is None:
            log.warning("process %s: Slurm job %d not finished after scancel", process_id, job_id)
        else:
            log.info("process %s: Slurm job %d %s", process_id, job_id, outcome.state.value)

    def _result(
        self, outcome: JobOutcome | None, stdout: LineReader, tail: deque[str]
    ) -> list[Any]:
        if outcome is None:
            raise RuntimeError("the job was followed to no outcome")
        code = outcome.exit_code
        match outcome.phase:
            case JobPhase.SUCCEEDED:
                if stdout.last_line_too_long:
                    raise ProcessFailed("the output line is too long")
                return output_from_stdout(stdout.last_line)
            case JobPhase.TIMED_OUT:
                errors = [
                    f"Slurm job {outcome.job_id} exceeded its walltime ({outcome.state.value})"
                ]
            case JobPhase.CANCELLED:
                errors = [f"Slurm job {outcome.job_id} was cancelled in Slurm"]
            case JobPhase.FAILED | JobPhase.QUEUED | JobPhase.RUNNING:
                how = f"exit status {code.status}"
                if code.signal:
                    how += f", signal {code.signal}"
                errors = [f"Slurm job {outcome.job_id} {outcome.state.value}: {how}"]
        if tail:
            errors.append("stderr tail:\n" + "\n".join(tail))
        raise ProcessFailed(*errors)
