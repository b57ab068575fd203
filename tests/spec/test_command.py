"""resolve_command: registered functions first, ColonyOS kwargs.cmd only when allowed."""

from __future__ import annotations

from typing import Any

import pytest

from colonymesh.node.spec import (
    CommandLine,
    SpecError,
    arg_word,
    parse_function_spec,
    resolve_command,
)
from colonymesh.node.spec.jsonvalue import FrozenMap


def spec(**fields: Any) -> Any:
    return parse_function_spec({"funcname": "f", "conditions": {"executortype": "t"}, **fields})


def test_arg_words() -> None:
    assert arg_word("a b") == "a b"
    assert arg_word(3) == "3"
    assert arg_word(2.5) == "2.5"
    assert arg_word(True) == "true"
    assert arg_word(None) == "null"
    assert arg_word(("x", 1)) == '["x",1]'
    assert arg_word(FrozenMap({"k": "é"})) == '{"k":"é"}'


def test_registered_function_wins() -> None:
    result = resolve_command(
        spec(args=["x", 1], kwargs={"cmd": "rm -rf /"}),
        {"f": ("prog", "--flag")},
        allow_spec_commands=True,
    )
    assert result == CommandLine(argv=("prog", "--flag", "x", "1"), image="")


def test_colonyos_cmd_only_when_allowed() -> None:
    s = spec(
        kwargs={"cmd": "python3 'my script.py'", "args": ["--n", 2], "docker-image": "python:3.12"}
    )
    with pytest.raises(SpecError, match=r"^funcname: 'f' is not registered"):
        resolve_command(s, {})
    result = resolve_command(s, {}, allow_spec_commands=True)
    assert result.argv == ("python3", "my script.py", "--n", "2")
    assert result.image == "python:3.12"
    as_list = spec(kwargs={"cmd": ["echo", "a b"]})
    assert resolve_command(as_list, {}, allow_spec_commands=True).argv == ("echo", "a b")


def test_default_image_and_bad_images() -> None:
    assert resolve_command(spec(), {"f": ("p",)}, default_image="busybox").image == "busybox"
    for bad in ("-v", "a b", 3, "x" * 600, "img;rm"):
        with pytest.raises(SpecError, match=r"^kwargs\.docker-image: "):
            resolve_command(spec(kwargs={"docker-image": bad}), {"f": ("p",)})


@pytest.mark.parametrize(
    ("kwargs", "path"),
    [
        ({"cmd": "echo 'unclosed"}, "kwargs.cmd"),
        ({"cmd": 3}, "kwargs.cmd"),
        ({"cmd": "echo", "args": "not-a-list"}, "kwargs.args"),
        ({"cmd": "-rf"}, "kwargs.cmd"),
    ],
)
def test_bad_spec_commands(kwargs: dict[str, Any], path: str) -> None:
    with pytest.raises(SpecError) as caught:
        resolve_command(spec(kwargs=kwargs), {}, allow_spec_commands=True)
    assert caught.value.path == path
