"""The one error type of the spec model.

Every refusal names the field it is about as a JSON path, in the words of the
JSON the user wrote: ``conditions.gpu.count``, ``args[3]``,
``functionspecs[2].conditions.cpu``, ``kwargs["my key"]``. The path is empty
only when the whole document is at fault (too big, not JSON at all).
"""

from __future__ import annotations

import functools
import json
import re

__all__ = ["SpecError", "join_path"]

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")


class SpecError(ValueError):
    """A function or workflow spec was refused; ``path`` names the field."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}" if path else reason)

    def under(self, prefix: str) -> SpecError:
        """The same error seen from an enclosing document (``prefix`` + path)."""
        if not prefix:
            return self
        if not self.path:
            return SpecError(prefix, self.reason)
        sep = "" if self.path.startswith("[") else "."
        return SpecError(f"{prefix}{sep}{self.path}", self.reason)


@functools.lru_cache(maxsize=1024)
def _is_plain(key: str) -> bool:
    return _PLAIN_KEY.match(key) is not None


def join_path(parent: str, child: str | int) -> str:
    """Extend a JSON path by an object key or a list index."""
    if isinstance(child, int):
        return f"{parent}[{child}]"
    if _is_plain(child):
        return f"{parent}.{child}" if parent else child
    return f"{parent}[{json.dumps(child)}]"
