"""The small interface between the executor runtime (in ``node/``) and the executor kinds.

The runtime claims a process and hands the kind a :class:`ProcessContext`;
the kind runs the spec on its platform and returns the output list, or raises
:class:`ProcessFailed` with the errors to record. Everything else (claims,
timeouts, closing, logs through the ledger) is the runtime's job, so a kind
is only the translation: spec in, work done, result out.
"""

from __future__ import annotations

from typing import Any, Protocol

from colonymesh.node.spec import FunctionSpec


class ProcessFailed(Exception):
    """The process failed; ``errors`` are recorded on it (an explicit failure is final)."""

    def __init__(self, *errors: str) -> None:
        super().__init__("; ".join(errors))
        self.errors = tuple(errors) or ("failed",)


class ProcessContext(Protocol):
    """What a running process may see and do, through its executor."""

    @property
    def process_id(self) -> str: ...

    @property
    def spec(self) -> FunctionSpec: ...

    @property
    def input(self) -> list[Any]:
        """The outputs of the process's parents, in dependency order."""

    @property
    def fs_root(self) -> str:
        """The executor's meta-filesystem folder, when the spec's ``fs`` directives ran; else ""."""

    @property
    def fs_mount(self) -> str:
        """Where the process sees the synced files (``<fs_root>/<fs.mount>``); else ""."""

    async def log(self, message: str) -> None: ...

    async def set_attribute(self, key: str, value: str) -> None: ...

    async def add_child(self, spec: dict[str, Any], *, insert: bool = True) -> str:
        """Add a process to this workflow after this one (map/reduce fan-out); its id."""


class ExecutorKind(Protocol):
    def functions(self) -> dict[str, str]:
        """The function names this executor serves, with a description each."""

    async def run(self, context: ProcessContext) -> list[Any]:
        """Run the process; return its output list or raise :class:`ProcessFailed`."""
