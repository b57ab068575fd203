"""``function``, ``process``, ``workflow``, ``log``, ``executor ls``: the colony at work.

Each command joins the colony as the profile's member (a short-lived peer),
does its one thing through the server peers, and leaves. ``--json`` prints
the same documents the SDK returns.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from colonymesh.node.cli.output import add_json_flag, emit
from colonymesh.node.cli.profile import add_profile_option
from colonymesh.node.errors import ColonymeshError, InputError

if TYPE_CHECKING:
    from colonymesh.node.sdk import ColonySession

STATE_COMMANDS = {"ps": "", "psw": "waiting", "pss": "success", "psf": "failed"}


def register(commands: Any) -> None:
    function = commands.add_parser("function", help="submit function specs, list functions")
    fsub = function.add_subparsers(dest="function_command", metavar="ACTION", required=True)
    submit = fsub.add_parser(
        "submit", help="submit a ColonyOS function spec (JSON file, or - for stdin)"
    )
    submit.add_argument("spec", help="spec file, or - to read stdin")
    submit.add_argument("--wait", action="store_true", help="wait until the process is final")
    submit.add_argument(
        "--follow", action="store_true", help="print its log when final (implies --wait)"
    )
    submit.add_argument(
        "--timeout", type=float, default=None, help="give up waiting after this many seconds"
    )
    _common(submit, _function_submit)
    ls = fsub.add_parser("ls", help="functions with their counters and wait/run times")
    _common(ls, _function_ls)

    process = commands.add_parser("process", help="inspect and cancel processes")
    psub = process.add_subparsers(dest="process_command", metavar="ACTION", required=True)
    for name, state in STATE_COMMANDS.items():
        listing = psub.add_parser(name, help=f"list {state or 'all'} processes")
        listing.add_argument("--limit", type=int, default=50)
        listing.add_argument("--type", default="", help="only this executor type")
        listing.set_defaults(state=state)
        _common(listing, _process_ps)
    get = psub.add_parser("get", help="one process, with its output and errors")
    get.add_argument("process_id")
    _common(get, _process_get)
    cancel = psub.add_parser("cancel", help="cancel a process (its whole workflow if it has one)")
    cancel.add_argument("process_id")
    _common(cancel, _process_cancel)

    workflow = commands.add_parser("workflow", help="submit and inspect workflows")
    wsub = workflow.add_subparsers(dest="workflow_command", metavar="ACTION", required=True)
    wsubmit = wsub.add_parser("submit", help="submit a ColonyOS workflow spec (JSON file, or -)")
    wsubmit.add_argument("spec")
    wsubmit.add_argument("--wait", action="store_true")
    wsubmit.add_argument("--timeout", type=float, default=None)
    _common(wsubmit, _workflow_submit)
    wget = wsub.add_parser("get", help="a workflow and its processes")
    wget.add_argument("workflow_id")
    _common(wget, _workflow_get)

    logs = commands.add_parser("log", help="process logs")
    lsub = logs.add_subparsers(dest="log_command", metavar="ACTION", required=True)
    lget = lsub.add_parser("get", help="the log lines of a process")
    lget.add_argument("process_id")
    lget.add_argument(
        "--follow", action="store_true", help="keep printing until the process is final"
    )
    _common(lget, _log_get)


def add_executor_ls(esub: Any) -> None:
    """``executor ls``, under the ``executor`` parser that :mod:`.executor` owns."""
    els = esub.add_parser("ls", help="registered executors with their capabilities")
    _common(els, _executor_ls)


def _common(
    parser: Any, handler: Callable[[argparse.Namespace, ColonySession], Awaitable[int]]
) -> None:
    add_profile_option(parser)
    add_json_flag(parser)

    def run(args: argparse.Namespace) -> int:
        import trio  # imported here so that building the parser stays cheap

        from colonymesh.node.cli.profile import session

        async def main() -> int:
            async with session(args) as colony:
                return await handler(args, colony)

        return trio.run(main)

    parser.set_defaults(handler=run)


def _read_json(source: str) -> Any:
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as error:
        raise InputError(f"{source}: cannot read: {error.strerror}") from None
    try:
        return json.loads(text)
    except ValueError as error:
        raise InputError(f"{source}: not JSON: {error}") from None


def _table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    Console().print(table)


async def _function_submit(args: argparse.Namespace, colony: ColonySession) -> int:
    try:
        process = await colony.submit(_read_json(args.spec))
    except ColonymeshError as refusal:  # the ledger's refusal
        raise InputError(f"{args.spec}: refused: {refusal}") from None
    if not (args.wait or args.follow):
        emit(args, {"processid": process.id}, [process.id])
        return 0
    await process.wait(args.timeout)
    lines = [f"{process.id} {process.state} output {json.dumps(process.output)}"]
    lines += [f"error: {e}" for e in process.errors]
    if args.follow:
        lines = [
            f"[{line['time_ms']}] {line['message']}" for line in process.view.get("logs", [])
        ] + lines
    emit(args, process.view, lines)
    return 0 if process.state == "success" else 1


async def _function_ls(args: argparse.Namespace, colony: ColonySession) -> int:
    functions = (await colony.status())["functions"]
    if args.json:
        emit(args, {"functions": functions}, [])
        return 0
    rows = [
        [
            f["funcname"],
            f["executortype"],
            str(f["submitted"]),
            str(f["succeeded"]),
            str(f["failed"]),
            f"{f['wait_ms']['avg']}",
            f"{f['run_ms']['avg']}",
        ]
        for f in functions
    ]
    _table(
        "functions",
        ["function", "type", "submitted", "ok", "failed", "avg wait ms", "avg run ms"],
        rows,
    )
    return 0


async def _process_ps(args: argparse.Namespace, colony: ColonySession) -> int:
    processes = await colony.client.processes(args.state, args.type, args.limit)
    if args.json:
        emit(args, {"processes": processes}, [])
        return 0
    rows = [
        [p["processid"][:16], p["funcname"], p["executortype"], p["state"], p["executor"][-8:]]
        for p in processes
    ]
    _table(
        f"{args.state or 'all'} processes",
        ["process", "function", "type", "state", "executor"],
        rows,
    )
    return 0


async def _process_get(args: argparse.Namespace, colony: ColonySession) -> int:
    view = await colony.client.process(args.process_id)
    if view is None:
        raise InputError(f"no process {args.process_id}")
    lines = [
        f"{key}: {json.dumps(view[key])}"
        for key in (
            "processid",
            "state",
            "funcname",
            "executor",
            "input",
            "output",
            "errors",
            "retries",
            "attributes",
        )
    ]
    emit(args, view, lines)
    return 0


async def _process_cancel(args: argparse.Namespace, colony: ColonySession) -> int:
    try:
        from colonymesh.node.ledger.commands import Cancel

        await colony.client.run(Cancel(args.process_id))
    except ColonymeshError as refusal:  # the ledger's refusal
        raise InputError(f"cannot cancel {args.process_id}: {refusal}") from None
    emit(args, {"cancelled": args.process_id}, [f"cancelled {args.process_id}"])
    return 0


async def _workflow_submit(args: argparse.Namespace, colony: ColonySession) -> int:
    try:
        workflow_id = await colony.submit_workflow(_read_json(args.spec))
    except ColonymeshError as refusal:  # the ledger's refusal
        raise InputError(f"{args.spec}: refused: {refusal}") from None
    if not args.wait:
        emit(args, {"workflowid": workflow_id}, [workflow_id])
        return 0
    view = await colony.wait_workflow(workflow_id, args.timeout)
    lines = [f"{workflow_id} {view['state']}"] + [
        f"  {p['spec']['nodename'] or p['funcname']:<16} {p['state']:<9} {json.dumps(p['output'])}"
        for p in view["processes"]
    ]
    emit(args, view, lines)
    return 0 if view["state"] == "success" else 1


async def _workflow_get(args: argparse.Namespace, colony: ColonySession) -> int:
    view = await colony.client.workflow(args.workflow_id)
    if view is None:
        raise InputError(f"no workflow {args.workflow_id}")
    lines = [f"{args.workflow_id} {view['state']}"] + [
        f"  {p['processid'][:16]} {p['spec']['nodename'] or p['funcname']:<16} {p['state']}"
        for p in view["processes"]
    ]
    emit(args, view, lines)
    return 0


async def _log_get(args: argparse.Namespace, colony: ColonySession) -> int:
    printed = 0
    while True:
        wait_s = 5.0 if args.follow else 0.0
        view = await colony.client.process(args.process_id, wait_final_s=wait_s)
        if view is None:
            raise InputError(f"no process {args.process_id}")
        lines = view.get("logs", [])
        if not args.json:
            for line in lines[printed:]:
                print(f"[{line['time_ms']}] {line['message']}", flush=True)
        printed = len(lines)
        if not args.follow or view["state"] in ("success", "failed", "cancelled"):
            break
    if args.json:
        emit(args, {"processid": args.process_id, "logs": view.get("logs", [])}, [])
    return 0


async def _executor_ls(args: argparse.Namespace, colony: ColonySession) -> int:
    executors = (await colony.status())["executors"]
    if args.json:
        emit(args, {"executors": executors}, [])
        return 0
    rows = [
        [
            e["name"],
            e["executortype"],
            e["location"] or "-",
            f"{e['cpu_millicores']}m",
            str(e["mem_bytes"] // 2**20) + " MiB",
            gib(e.get("storage_bytes", 0)),
            f"{e['gpu']['count']}x{e['gpu']['name'] or '-'}",
            str(len(e["running"])),
            ", ".join(e["functions"]),
        ]
        for e in executors
    ]
    columns = ["name", "type", "location", "cpu", "mem", "storage", "gpu", "running", "functions"]
    _table("executors", columns, rows)
    return 0


def gib(size_bytes: int) -> str:
    """A size in GiB for tables: whole GiB plainly, else one decimal; "-" when none."""
    if size_bytes <= 0:
        return "-"
    value = size_bytes / 2**30
    return f"{value:.0f} GiB" if value.is_integer() or value >= 100 else f"{value:.1f} GiB"


def register_status(parser: Any) -> None:
    _common(parser, _colony_status)


async def _colony_status(args: argparse.Namespace, colony: ColonySession) -> int:
    status = await colony.status()
    raft = status["raft"]
    counts = status["processes"]
    lines = [
        f"colony {status['colony']}  {status['colony_id'][:16]}…  members {status['members']}",
        f"servers {len(raft['voters'])}, leader {raft['leader'][-12:]} (term {raft['term']}, commit {raft['commit']})",
        f"executors {len(status['executors'])}: "
        + ", ".join(e["name"] for e in status["executors"]),
        "processes " + ", ".join(f"{state} {n}" for state, n in counts.items()),
    ]
    emit(args, status, lines)
    return 0
