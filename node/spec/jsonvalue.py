"""Immutable JSON values for the free-form parts of a spec (args, kwargs, opaque fields).

A spec is a frozen dataclass, so its JSON payloads are frozen too: arrays
become tuples and objects become ``FrozenMap`` (a read-only, hashable
mapping that keeps insertion order). ``freeze`` checks a decoded JSON value
strictly — JSON types only, string keys, finite numbers, bounded depth and
size — and ``thaw`` turns it back into plain ``dict``/``list`` for encoding.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Union

from colonymesh.node.spec.errors import SpecError, join_path

__all__ = ["JSON_DEPTH_MAX", "FrozenMap", "JsonValue", "freeze", "thaw"]

JSON_DEPTH_MAX = 32
# Integers beyond 64 bits are refused: Go's ColonyOS and most JSON stacks cannot hold them.
_INT_ABS_MAX = 2**63

JsonValue = Union[None, bool, int, float, str, tuple["JsonValue", ...], "FrozenMap"]


class FrozenMap(Mapping[str, JsonValue]):
    """A read-only JSON object; equal to any mapping with the same items."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, JsonValue] | None = None) -> None:
        self._items: dict[str, JsonValue] = dict(items or {})

    def __getitem__(self, key: str) -> JsonValue:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._items.items(), key=lambda kv: kv[0])))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._items == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenMap({self._items!r})"


def freeze(value: object, path: str, depth: int = 0) -> JsonValue:
    """Check ``value`` is plain JSON and return its immutable twin.

    Raises ``SpecError`` naming the offending element for anything else:
    non-JSON types, non-string keys, NaN/Infinity, huge integers, too deep.
    """
    if depth > JSON_DEPTH_MAX:
        raise SpecError(path, f"nests deeper than {JSON_DEPTH_MAX} levels")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        if abs(value) >= _INT_ABS_MAX:
            raise SpecError(path, "integer does not fit in 64 bits")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SpecError(path, "must be a finite number")
        return value
    if isinstance(value, (list, tuple)):
        return tuple(freeze(item, join_path(path, i), depth + 1) for i, item in enumerate(value))
    if isinstance(value, Mapping):
        items: dict[str, JsonValue] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise SpecError(path, f"object key {key!r} is not a string")
            items[key] = freeze(item, join_path(path, key), depth + 1)
        return FrozenMap(items)
    raise SpecError(path, f"{type(value).__name__} is not a JSON value")


def thaw(value: JsonValue) -> object:
    """The plain ``dict``/``list`` form of a frozen value, ready for ``json.dumps``."""
    if isinstance(value, tuple):
        return [thaw(item) for item in value]
    if isinstance(value, FrozenMap):
        return {key: thaw(item) for key, item in value.items()}
    return value
