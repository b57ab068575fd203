"""``generator add|pack|ls|get|rm``: batch arguments into workflow runs (ColonyOS's generators).

    colonymesh generator add --name resize --spec workflow.json --trigger 10 --timeout 60
    colonymesh generator pack resize photo-0001.jpg

Once ``--trigger`` arguments are packed, or ``--timeout`` seconds have passed
since the oldest waiting one, the colony starts the workflow with the batch
as its roots' args.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from colonymesh.node.cli.cron import _checked, utc
from colonymesh.node.cli.output import emit
from colonymesh.node.cli.work import _common, _read_json, _table
from colonymesh.node.errors import ColonymeshError, InputError

if TYPE_CHECKING:
    from colonymesh.node.sdk import ColonySession


def register(commands: Any) -> None:
    generator = commands.add_parser("generator", help="batch packed arguments into workflows")
    sub = generator.add_subparsers(dest="generator_command", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="add a generator: a workflow spec, a trigger and a timeout")
    add.add_argument("--name", required=True, help="a name unique in the colony")
    add.add_argument("--spec", required=True, help="ColonyOS workflow spec (JSON file, or -)")
    add.add_argument(
        "--trigger", type=int, required=True, help="start a run once this many args are packed"
    )
    add.add_argument(
        "--timeout",
        type=int,
        default=0,
        help="or this many seconds after the oldest waiting arg was packed (0: never)",
    )
    _checked(add, _add, _check_locally)
    pack = sub.add_parser("pack", help="append an argument to a generator")
    pack.add_argument("generator", help="the generator's name or id")
    pack.add_argument("arg", help="the argument (a string)")
    _common(pack, _pack)
    ls = sub.add_parser("ls", help="every generator with its waiting args")
    _common(ls, _ls)
    for name, handler, text in (
        ("get", _get, "one generator, with its waiting args"),
        ("rm", _rm, "remove a generator (only its owner may)"),
    ):
        action = sub.add_parser(name, help=text)
        action.add_argument("generator", help="the generator's name or id")
        _common(action, handler)


def _check_locally(args: argparse.Namespace) -> None:
    from colonymesh.node.spec import SpecError, parse_workflow_spec

    if args.trigger < 1:
        raise InputError("--trigger: must be at least 1")
    if args.timeout < 0:
        raise InputError("--timeout: must be 0 (never) or a positive number of seconds")
    document = _read_json(args.spec)
    try:
        parse_workflow_spec(document)
    except SpecError as error:
        raise InputError(f"{args.spec}: {error}") from None
    args.workflow_text = json.dumps(document)


async def _add(args: argparse.Namespace, colony: ColonySession) -> int:
    workflow = args.workflow_text
    try:
        generator_id = await colony.add_generator(
            args.name, workflow, trigger=args.trigger, timeout_s=args.timeout
        )
    except ColonymeshError as refusal:
        raise InputError(f"generator {args.name!r} refused: {refusal}") from None
    emit(args, await colony.generator(generator_id), [generator_id])
    return 0


async def _pack(args: argparse.Namespace, colony: ColonySession) -> int:
    try:
        await colony.pack_generator(args.generator, args.arg)
    except ColonymeshError as refusal:
        raise InputError(f"cannot pack into generator {args.generator}: {refusal}") from None
    emit(
        args,
        {"generator": args.generator, "arg": args.arg},
        [f"packed {args.arg!r} into {args.generator}"],
    )
    return 0


async def _ls(args: argparse.Namespace, colony: ColonySession) -> int:
    generators = await colony.generators()
    if args.json:
        emit(args, {"generators": generators}, [])
        return 0
    rows = [
        [
            g["name"],
            g["generatorid"][:12],
            str(g["trigger"]),
            f"{g['timeout']} s" if g["timeout"] else "-",
            str(len(g["pending"])),
            str(g["runs"]),
            utc(g["lastrun_ms"]),
            g["lastworkflowstate"] or "-",
        ]
        for g in generators
    ]
    _table(
        "generators (UTC)",
        ["name", "id", "trigger", "timeout", "waiting", "runs", "last run", "last state"],
        rows,
    )
    return 0


async def _get(args: argparse.Namespace, colony: ColonySession) -> int:
    try:
        view = await colony.generator(args.generator)
    except ColonymeshError as error:
        raise InputError(str(error)) from None
    lines = [
        f"generator {view['name']} ({view['generatorid']})",
        f"  trigger        {view['trigger']} args"
        + (f", or {view['timeout']} s after the first" if view["timeout"] else ""),
        f"  waiting        {json.dumps(view['pending'])}",
        f"  runs           {view['runs']} (last {utc(view['lastrun_ms'])})",
        f"  last workflow  {view['lastworkflowid'] or '-'} {view['lastworkflowstate']}".rstrip(),
    ]
    if view["lasterror"]:
        lines.append(f"  last error     {view['lasterror']}")
    emit(args, view, lines)
    return 0


async def _rm(args: argparse.Namespace, colony: ColonySession) -> int:
    try:
        await colony.remove_generator(args.generator)
    except ColonymeshError as refusal:
        raise InputError(f"cannot remove generator {args.generator}: {refusal}") from None
    emit(args, {"removed": args.generator}, [f"removed generator {args.generator}"])
    return 0
