"""``cron add|ls|get|rm|run``: workflows the colony starts on a schedule (ColonyOS's crons).

    colonymesh cron add --name nightly --cron '0 0 3 * * *' --spec workflow.json
    colonymesh cron add --name poll --interval 30 --waitforprevious --spec workflow.json

The schedule and the spec are checked here first, so a mistake is a
field-named error before anything reaches the colony; the ledger checks
them again (it trusts no peer). Times print in UTC, as the ledger keeps them.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from colonymesh.node.cli.output import emit
from colonymesh.node.cli.work import _common, _read_json, _table
from colonymesh.node.errors import ColonymeshError, InputError

if TYPE_CHECKING:
    from colonymesh.node.sdk import ColonySession


def register(commands: Any) -> None:
    cron = commands.add_parser("cron", help="run workflows on a schedule")
    sub = cron.add_subparsers(dest="cron_command", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="add a cron: a workflow spec and a schedule")
    add.add_argument("--name", required=True, help="a name unique in the colony")
    schedule = add.add_mutually_exclusive_group(required=True)
    schedule.add_argument(
        "--cron", dest="expression", help="six fields with seconds, e.g. '0/5 * * * * *' (UTC)"
    )
    schedule.add_argument("--interval", type=int, help="run every this many seconds")
    add.add_argument(
        "--waitforprevious",
        action="store_true",
        help="do not start a run while the previous run's workflow is not finished",
    )
    add.add_argument("--spec", required=True, help="ColonyOS workflow spec (JSON file, or -)")
    _checked(add, _add, _check_locally)
    ls = sub.add_parser("ls", help="every cron with its next and last run")
    _common(ls, _ls)
    for name, handler, text in (
        ("get", _get, "one cron, with its workflow spec"),
        ("rm", _rm, "remove a cron (only its owner may)"),
        ("run", _run, "start a run now (the schedule stays as it is)"),
    ):
        action = sub.add_parser(name, help=text)
        action.add_argument("cron", help="the cron's name or id")
        _common(action, handler)


def _checked(
    parser: Any,
    handler: Callable[[argparse.Namespace, ColonySession], Awaitable[int]],
    check: Callable[[argparse.Namespace], None],
) -> None:
    """As ``work._common``, but ``check`` runs first, before joining the colony."""
    _common(parser, handler)
    run = parser.get_default("handler")

    def checked(args: argparse.Namespace) -> int:
        check(args)
        return int(run(args))

    parser.set_defaults(handler=checked)


def utc(ms: int) -> str:
    if ms <= 0:
        return "-"
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):  # past the calendar: crons.NEVER_MS
        return "never"


def _schedule_of(view: dict[str, Any]) -> str:
    return view["cronexpression"] or f"every {view['interval']} s"


def _check_locally(args: argparse.Namespace) -> None:
    """Make the checks the ledger will make; keep the workflow's JSON text in ``args``."""
    from colonymesh.node.ledger import cronexpr
    from colonymesh.node.spec import SpecError, parse_workflow_spec

    if args.expression is not None:
        try:
            cronexpr.parse(args.expression)
        except cronexpr.CronSyntaxError as error:
            raise InputError(f"--cron: {error}") from None
    elif args.interval <= 0:
        raise InputError("--interval: must be a positive number of seconds")
    document = _read_json(args.spec)
    try:
        parse_workflow_spec(document)
    except SpecError as error:
        raise InputError(f"{args.spec}: {error}") from None
    args.workflow_text = json.dumps(document)


async def _add(args: argparse.Namespace, colony: ColonySession) -> int:
    workflow = args.workflow_text
    try:
        cron_id = await colony.add_cron(
            args.name,
            workflow,
            cron=args.expression or "",
            interval_s=args.interval or 0,
            wait_for_previous=args.waitforprevious,
        )
    except ColonymeshError as refusal:
        raise InputError(f"cron {args.name!r} refused: {refusal}") from None
    view = await colony.cron(cron_id)
    emit(args, view, [f"{cron_id}  next run {utc(view['nextrun_ms'])} UTC"])
    return 0


async def _ls(args: argparse.Namespace, colony: ColonySession) -> int:
    crons = await colony.crons()
    if args.json:
        emit(args, {"crons": crons}, [])
        return 0
    rows = [
        [
            c["name"],
            c["cronid"][:12],
            _schedule_of(c),
            "yes" if c["waitforprevprocessgraph"] else "no",
            utc(c["nextrun_ms"]),
            utc(c["lastrun_ms"]),
            str(c["runs"]),
            c["prevprocessgraphstate"] or "-",
        ]
        for c in crons
    ]
    _table(
        "crons (UTC)",
        ["name", "id", "schedule", "wait", "next run", "last run", "runs", "last state"],
        rows,
    )
    return 0


async def _get(args: argparse.Namespace, colony: ColonySession) -> int:
    try:
        view = await colony.cron(args.cron)
    except ColonymeshError as error:
        raise InputError(str(error)) from None
    lines = [
        f"cron {view['name']} ({view['cronid']})",
        f"  schedule         {_schedule_of(view)} (UTC)",
        f"  waitforprevious  {'yes' if view['waitforprevprocessgraph'] else 'no'}",
        f"  next run         {utc(view['nextrun_ms'])}",
        f"  last run         {utc(view['lastrun_ms'])}",
        f"  runs             {view['runs']} (skipped {view['skipped']})",
        f"  last workflow    {view['prevprocessgraphid'] or '-'} "
        f"{view['prevprocessgraphstate']}".rstrip(),
        "  workflow spec    "
        + ", ".join(s["nodename"] or s["funcname"] for s in view["workflowspec"]["functionspecs"]),
    ]
    emit(args, view, lines)
    return 0


async def _rm(args: argparse.Namespace, colony: ColonySession) -> int:
    try:
        await colony.remove_cron(args.cron)
    except ColonymeshError as refusal:
        raise InputError(f"cannot remove cron {args.cron}: {refusal}") from None
    emit(args, {"removed": args.cron}, [f"removed cron {args.cron}"])
    return 0


async def _run(args: argparse.Namespace, colony: ColonySession) -> int:
    try:
        workflow_id = await colony.run_cron(args.cron)
    except ColonymeshError as refusal:
        raise InputError(f"cannot run cron {args.cron}: {refusal}") from None
    emit(args, {"workflowid": workflow_id}, [workflow_id])
    return 0
