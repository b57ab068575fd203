"""Workflow graph rules: nodenames present and unique, dependencies known, no cycles.

Pure functions over parsed function specs, used by ``parse_workflow_spec``.
Errors are ``SpecError`` with paths such as
``functionspecs[2].conditions.dependencies[0]``. Cycle search is an
iterative depth-first search (no recursion limit to hit at 4,096 specs) in
document order, so the reported cycle is deterministic.
"""

from __future__ import annotations

from dataclasses import replace

from colonymesh.node.spec.errors import SpecError, join_path
from colonymesh.node.spec.model import FunctionSpec

__all__ = ["check_graph", "in_colony"]


def in_colony(spec: FunctionSpec, colonyname: str, path: str) -> FunctionSpec:
    own = spec.conditions.colonyname
    if own and colonyname and own != colonyname:
        raise SpecError(
            join_path(join_path(path, "conditions"), "colonyname"),
            f"{own!r} differs from the workflow's colonyname {colonyname!r}",
        )
    if own or not colonyname:
        return spec
    return replace(spec, conditions=replace(spec.conditions, colonyname=colonyname))


def check_graph(specs: list[FunctionSpec], base: str = "functionspecs") -> None:
    """Nodenames present and unique, dependencies known, no cycle; paths under ``base``."""
    index_of: dict[str, int] = {}
    for index, spec in enumerate(specs):
        path = join_path(base, index)
        if not spec.nodename:
            raise SpecError(join_path(path, "nodename"), "is required in a workflow")
        if spec.nodename in index_of:
            first = index_of[spec.nodename]
            raise SpecError(
                join_path(path, "nodename"),
                f"{spec.nodename!r} is already the nodename of {join_path(base, first)}",
            )
        index_of[spec.nodename] = index
    for index, spec in enumerate(specs):
        deps_path = join_path(join_path(join_path(base, index), "conditions"), "dependencies")
        for dep_index, dependency in enumerate(spec.conditions.dependencies):
            if dependency == spec.nodename:
                raise SpecError(join_path(deps_path, dep_index), "a spec cannot depend on itself")
            if dependency not in index_of:
                raise SpecError(
                    join_path(deps_path, dep_index),
                    f"no function spec in this workflow has nodename {dependency!r}",
                )
    cycle = _find_cycle(specs)
    if cycle:
        first = index_of[cycle[0]]
        raise SpecError(
            join_path(join_path(join_path(base, first), "conditions"), "dependencies"),
            "dependency cycle " + " -> ".join(cycle) + " (each depends on the next)",
        )


def _find_cycle(specs: list[FunctionSpec]) -> list[str]:
    """A dependency cycle as a closed walk of nodenames, or [] (iterative DFS)."""
    deps = {spec.nodename: spec.conditions.dependencies for spec in specs}
    done: set[str] = set()
    for start in deps:
        if start in done:
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        on_path: dict[str, int] = {start: 0}
        while stack:
            node, next_child = stack[-1]
            children = deps[node]
            if next_child == len(children):
                stack.pop()
                del on_path[node]
                done.add(node)
                continue
            stack[-1] = (node, next_child + 1)
            child = children[next_child]
            if child in on_path:
                walk = [name for name, _ in stack[on_path[child] :]]
                return [*walk, child]
            if child not in done:
                on_path[child] = len(stack)
                stack.append((child, 0))
    return []
