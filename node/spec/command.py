"""What command line, in which container image, a function spec asks a platform executor to run.

Shared by the process, Slurm and Kubernetes translators, so that the three
read a spec the same way.

Rules, in order:

1. **Registered functions.** The executor's configuration maps a
   ``funcname`` to an argv prefix (e.g. ``"train": ["python3", "-m",
   "train"]``); the spec's ``args`` are appended, one argv word each. This is
   the default and the safe path: a spec chooses *which* registered command
   runs and with which arguments, never *what* program runs.
2. **ColonyOS's container-executor convention**, only where the executor
   opts in (``allow_spec_commands``): ``kwargs.cmd`` (a string, split like a
   shell would split words but never interpreted by a shell, or a list of
   words) followed by ``kwargs.args`` (a list).
3. Otherwise the spec is refused: ``funcname: 'x' is not registered``.

The container image is ``kwargs["docker-image"]`` (ColonyOS's name for it),
else the executor's default image, else none.

How a JSON argument becomes an argv word: strings as they are, ``true`` /
``false`` / ``null`` as those words, numbers in JSON notation, arrays and
objects as compact JSON text.

An argv is data, never shell text: translators quote every word.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from colonymesh.node.spec.errors import SpecError, join_path
from colonymesh.node.spec.jsonvalue import FrozenMap, JsonValue, thaw
from colonymesh.node.spec.model import FunctionSpec

__all__ = ["IMAGE_KWARG", "CommandLine", "arg_word", "resolve_command"]

IMAGE_KWARG = "docker-image"
IMAGE_CHARS_MAX = 512
ARGV_WORD_CHARS_MAX = 128 * 1024
_IMAGE = re.compile(r"[A-Za-z0-9/][A-Za-z0-9._/:@+-]*\Z")  # never starts with "-"


@dataclass(frozen=True, slots=True)
class CommandLine:
    """The argv to run, and the container image to run it in ("" for none)."""

    argv: tuple[str, ...]
    image: str = ""


def arg_word(value: JsonValue) -> str:
    """One JSON argument as one argv word."""
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, (bool, int, float)):
        return json.dumps(value)
    return json.dumps(thaw(value), ensure_ascii=False, separators=(",", ":"))


def _words(value: JsonValue, path: str) -> list[str]:
    if isinstance(value, str):
        try:
            words = shlex.split(value)
        except ValueError as error:
            raise SpecError(path, f"cannot be split into words: {error}") from None
        return words
    if isinstance(value, tuple):
        return [arg_word(item) for item in value]
    raise SpecError(path, "must be a string or a list")


def _image(spec: FunctionSpec, default_image: str) -> str:
    raw = spec.kwargs.get(IMAGE_KWARG)
    path = join_path("kwargs", IMAGE_KWARG)
    if raw is None or raw == "":
        return default_image
    if not isinstance(raw, str) or len(raw) > IMAGE_CHARS_MAX or not _IMAGE.match(raw):
        raise SpecError(path, "must be a container image reference such as 'ubuntu:22.04'")
    return raw


def resolve_command(
    spec: FunctionSpec,
    registered: Mapping[str, Sequence[str]],
    *,
    allow_spec_commands: bool = False,
    default_image: str = "",
) -> CommandLine:
    """The command line and image ``spec`` asks for, by the rules in the module docs."""
    prefix = registered.get(spec.funcname)
    if prefix is not None:
        argv = [*prefix, *(arg_word(a) for a in spec.args)]
    elif allow_spec_commands and spec.kwargs.get("cmd") is not None:
        kwargs: FrozenMap = spec.kwargs
        argv = _words(kwargs["cmd"], "kwargs.cmd")
        extra = kwargs.get("args")
        if extra is not None:
            if not isinstance(extra, tuple):
                raise SpecError("kwargs.args", "must be a list")
            argv += [arg_word(item) for item in extra]
    else:
        raise SpecError("funcname", f"{spec.funcname!r} is not registered with this executor")
    if not argv or not argv[0] or argv[0].startswith("-"):
        # A leading "-" would be read as an option of srun/singularity/the shell.
        raise SpecError("kwargs.cmd", "must name a program (not empty, not starting with '-')")
    for index, word in enumerate(argv):
        if "\x00" in word or len(word) > ARGV_WORD_CHARS_MAX:
            raise SpecError(f"argv[{index}]", "must hold no NUL and be at most 128 KiB")
    return CommandLine(argv=tuple(argv), image=_image(spec, default_image))
