"""``colonymesh dev``: a local development colony that keeps running, as ``colonies dev`` does.

Runs 3 server peers and 4 executors serving the demo functions (``square``,
``split``, ``total``, ``word_count``) on loopback, with server state under
``--dir``, and writes a client profile there so the rest of the CLI can use
it::

    colonymesh dev --dir /tmp/dev &
    export COLONYMESH_PROFILE=/tmp/dev/profile
    colonymesh function submit spec.json --wait

Stops cleanly on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import signal
from pathlib import Path
from typing import Any

from colonymesh.node.errors import InputError


def register(commands: Any) -> None:
    dev = commands.add_parser("dev", help="run a local development colony until interrupted")
    dev.add_argument(
        "--dir", type=Path, required=True, help="folder for server state and the client profile"
    )
    dev.add_argument("--executors", type=int, default=4)
    dev.set_defaults(handler=_dev)


def _dev(args: argparse.Namespace) -> int:
    if args.dir.exists() and any(args.dir.iterdir()):
        raise InputError(f"{args.dir}: exists and is not empty")
    import trio

    logging.getLogger("colonymesh").setLevel(logging.WARNING)
    trio.run(_run, args)
    return 0


async def _run(args: argparse.Namespace) -> None:
    import trio

    from colonymesh.node.certs import Role, encode_record
    from colonymesh.node.cli.demo import demo_functions
    from colonymesh.node.cli.profile import ENV, write_profile
    from colonymesh.node.colony.local import LocalColonyConfig, open_local_colony

    config = LocalColonyConfig(
        state_dir=args.dir / "state",
        functions=demo_functions(),
        executors=args.executors,
        name="dev",
    )
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_local_colony(config) as colony:
            keys, certificate = colony.issue("cli", Role.SUBMITTER)
            profile = args.dir / "profile"
            write_profile(
                profile, encode_record(colony.colony), keys, certificate, colony.bootstrap
            )
            print(
                f"dev colony running: 3 servers, {args.executors} executors (types: python)",
                flush=True,
            )
            print(f"export {ENV}={profile.resolve()}", flush=True)
            async for _ in signals:
                break
    print("dev colony stopped", flush=True)
