"""parse_workflow_spec: DAG rules, colony names, ordering, round trip."""

from __future__ import annotations

from typing import Any

import pytest

from colonymesh.node.spec import SpecError, parse_workflow_spec
from colonymesh.node.spec.parse import WORKFLOW_SPECS_MAX


def node(name: str, *deps: str, **extra: Any) -> dict[str, Any]:
    conditions: dict[str, Any] = {"executortype": "t", "dependencies": list(deps)}
    conditions.update(extra.pop("conditions", {}))
    return {"nodename": name, "funcname": "f", "conditions": conditions, **extra}


def workflow(*specs: dict[str, Any], colonyname: str = "dev") -> dict[str, Any]:
    return {"colonyname": colonyname, "functionspecs": list(specs)}


def test_map_reduce_workflow() -> None:
    wf = parse_workflow_spec(
        workflow(
            node("split"),
            node("map1", "split"),
            node("map2", "split"),
            node("reduce", "map1", "map2"),
        )
    )
    assert wf.roots() == ("split",)
    assert wf.topological_order() == ("split", "map1", "map2", "reduce")
    assert all(s.conditions.colonyname == "dev" for s in wf.functionspecs)
    assert parse_workflow_spec(wf.to_json()) == wf
    assert set(wf.by_nodename()) == {"split", "map1", "map2", "reduce"}


def test_topological_order_ignores_document_order_of_dependencies() -> None:
    wf = parse_workflow_spec(workflow(node("c", "b"), node("b", "a"), node("a")))
    assert wf.topological_order() == ("a", "b", "c")


@pytest.mark.parametrize(
    ("doc", "path", "words"),
    [
        (
            workflow(node("a", "zz")),
            "functionspecs[0].conditions.dependencies[0]",
            "no function spec",
        ),
        (workflow(node("a", "a")), "functionspecs[0].conditions.dependencies[0]", "itself"),
        (
            workflow(node("a"), node("a")),
            "functionspecs[1].nodename",
            "already the nodename of functionspecs[0]",
        ),
        (workflow(node("")), "functionspecs[0].nodename", "required in a workflow"),
        (
            workflow(node("a", "c"), node("b", "a"), node("c", "b")),
            "functionspecs[0].conditions.dependencies",
            "dependency cycle a -> c -> b -> a",
        ),
        (
            workflow(node("x"), node("a", "b"), node("b", "a")),
            "functionspecs[1].conditions.dependencies",
            "cycle a -> b -> a",
        ),
        (
            workflow(node("a", conditions={"colonyname": "other"})),
            "functionspecs[0].conditions.colonyname",
            "differs from the workflow's colonyname 'dev'",
        ),
        (
            workflow(node("a", conditions={"gpu": {"count": -1}})),
            "functionspecs[0].conditions.gpu.count",
            "non-negative integer",
        ),
        (
            workflow(node("a", conditions={"cpu": "fast"})),
            "functionspecs[0].conditions.cpu",
            "quantity",
        ),
        (
            workflow(node("a", conditions={"walltime": -60})),
            "functionspecs[0].conditions.walltime",
            "non-negative",
        ),
        (workflow(node("a", args="x")), "functionspecs[0].args", "list"),
        ({"colonyname": "dev"}, "functionspecs", "required"),
        ({"colonyname": "dev", "functionspecs": []}, "functionspecs", "at least one"),
        ({"colonyname": "dev", "functionspecs": {}}, "functionspecs", "list"),
        ({"colonyname": "dev", "functionspecs": [3]}, "functionspecs[0]", "JSON object"),
        ({"colonyname": "dev", "processspecs": []}, "processspecs", "did you mean 'functionspecs'"),
        ({"colonyname": 5, "functionspecs": []}, "colonyname", "string"),
    ],
)
def test_bad_workflows_are_refused_by_name(doc: dict[str, Any], path: str, words: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_workflow_spec(doc)
    assert caught.value.path == path
    assert words in caught.value.reason


def test_long_chain_has_no_recursion_limit() -> None:
    count = WORKFLOW_SPECS_MAX
    chain = [node("n0")] + [node(f"n{i}", f"n{i - 1}") for i in range(1, count)]
    wf = parse_workflow_spec(workflow(*chain))
    assert wf.topological_order()[-1] == f"n{count - 1}"
    chain[0] = node("n0", f"n{count - 1}")
    with pytest.raises(SpecError, match="dependency cycle n0 -> n4095 -> n4094"):
        parse_workflow_spec(workflow(*chain))


def test_too_many_specs() -> None:
    with pytest.raises(SpecError, match="more than 4096"):
        parse_workflow_spec(workflow(*[node(f"n{i}") for i in range(WORKFLOW_SPECS_MAX + 1)]))


def test_empty_workflow_colonyname_keeps_spec_colonynames() -> None:
    wf = parse_workflow_spec(workflow(node("a", conditions={"colonyname": "c1"}), colonyname=""))
    assert wf.functionspecs[0].conditions.colonyname == "c1"


def test_colonyos_cli_file_form_is_a_bare_list() -> None:
    # `colonies workflow submit --spec wf.json` reads a JSON list of function specs.
    text = """[
      {"nodename": "task_a", "funcname": "echo", "args": ["task1"],
       "conditions": {"executortype": "cli", "dependencies": null}},
      {"nodename": "task_b", "funcname": "echo", "args": ["task2"],
       "conditions": {"executortype": "cli", "dependencies": ["task_a"]}}
    ]"""
    wf = parse_workflow_spec(text)
    assert wf.colonyname == ""
    assert wf.topological_order() == ("task_a", "task_b")
    with pytest.raises(SpecError) as caught:
        parse_workflow_spec([node("a"), node("b", conditions={"cpu": "x"})])
    assert caught.value.path == "[1].conditions.cpu"
    with pytest.raises(SpecError) as caught:
        parse_workflow_spec([node("a"), node("a")])
    assert caught.value.path == "[1].nodename"
    assert "[0]" in caught.value.reason
    with pytest.raises(SpecError, match="at least one"):
        parse_workflow_spec("[]")
