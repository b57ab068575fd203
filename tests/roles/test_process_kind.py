"""``executor run --kind process --functions MODULE:ATTR`` loads a ProcessConfig, or says why not."""

from __future__ import annotations

import pytest

from colonymesh.executors.process import ProcessExecutor
from colonymesh.node.colony.roles import RoleError, executor_kind


def test_the_process_kind_loads_a_process_config() -> None:
    kind = executor_kind("process", "leasetasks:commands")
    assert isinstance(kind, ProcessExecutor)
    assert list(kind.functions()) == ["work"]


def test_the_process_kind_refuses_clearly() -> None:
    with pytest.raises(RoleError, match="needs --functions"):
        executor_kind("process", "")
    with pytest.raises(RoleError, match=r"not a colonymesh\.executors\.process\.ProcessConfig"):
        executor_kind("process", "roletasks:functions")
    with pytest.raises(RoleError, match="cannot import"):
        executor_kind("process", "no_such_module_here:commands")
    with pytest.raises(RoleError, match="expected python or process"):
        executor_kind("fortran", "x:y")
