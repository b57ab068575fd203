"""The ``colonymesh`` command line.

One program, subcommands in ColonyOS's words. Each subcommand module adds its
parsers with ``register(subparsers)`` and sets ``handler`` on them; a handler
returns an exit code. Reporting commands take ``--json`` and then print one
JSON document on stdout. Errors are one line on stderr and a non-zero exit:
:class:`~colonymesh.node.errors.ColonymeshError` carries that line; anything
unexpected is reported the same way (with ``COLONYMESH_DEBUG=1`` for a
traceback), never as a bare traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence

from colonymesh import __version__
from colonymesh.node.cli import colony, demo, dev, dht, fs, keys, node, simulate, work
from colonymesh.node.cli import cron as cron_cli
from colonymesh.node.cli import executor as executor_cli
from colonymesh.node.cli import generator as generator_cli
from colonymesh.node.errors import ColonymeshError

EXIT_ERROR = 1
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"colonymesh: {message} (see: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="colonymesh", description="A peer-to-peer ColonyOS.")
    parser.add_argument("--version", action="version", version=f"colonymesh {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    keys.register(commands)
    colony.register(commands)
    demo.register(commands)
    fs.register(commands)
    dev.register(commands)
    work.register(commands)
    cron_cli.register(commands)
    generator_cli.register(commands)
    simulate.register(commands)
    executor_cli.register(commands)
    node.register(commands)
    dht.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(handler(args))
    except BaseException as raised:  # the contract: one line, never a traceback
        error = _first_leaf(raised)
        if isinstance(error, SystemExit):
            raise error from None
        if isinstance(error, KeyboardInterrupt):
            print("colonymesh: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        if isinstance(error, ColonymeshError):
            print(f"colonymesh: {error}", file=sys.stderr)
            return EXIT_ERROR
        if os.environ.get("COLONYMESH_DEBUG"):
            traceback.print_exception(error)
        print(f"colonymesh: internal error: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_INTERNAL


def _first_leaf(error: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups from trio nurseries."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


if __name__ == "__main__":
    sys.exit(main())
