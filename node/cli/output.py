"""Printing results: one JSON document with ``--json``, readable text otherwise."""

from __future__ import annotations

import json
import sys
from typing import Any


def emit(args: Any, document: dict[str, Any], lines: list[str]) -> None:
    if getattr(args, "json", False):
        json.dump(document, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        for line in lines:
            print(line)


def add_json_flag(parser: Any) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")
