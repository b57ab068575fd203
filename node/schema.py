"""Typed records ⇄ plain CBOR data, strictly.

Messages, certificates and other records are frozen dataclasses. This module
turns them into plain data for :mod:`colonymesh.node.wire` and back, checking
every field against its annotation: a missing, unexpected or mistyped field is
a :class:`BadField` naming the path to it (``body.capabilities.cpu``), never a
``TypeError`` from deep inside. Supported field types: ``int``, ``str``,
``bytes``, ``bool``, ``float``, enums (by value), nested dataclasses,
``tuple[T, ...]``, ``dict[str, T]`` and ``T | None``.

Integers are capped to 64 bits, and each class may bound its text and byte
fields through :data:`LIMITS` metadata (``field(metadata=limit(32))``), so a
hostile frame cannot smuggle an oversized value past the frame cap's spirit.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from functools import cache
from typing import Any, TypeVar

from colonymesh.node.errors import BadField

T = TypeVar("T")
INT_MIN = -(2**63)
INT_MAX = 2**64 - 1
LIMIT_KEY = "colonymesh.max_len"
EXACT_KEY = "colonymesh.exact_len"


def limit(max_len: int) -> dict[str, int]:
    """Field metadata: at most ``max_len`` bytes/characters/items."""
    return {LIMIT_KEY: max_len}


def exact(length: int) -> dict[str, int]:
    """Field metadata: exactly ``length`` bytes (keys, hashes, signatures)."""
    return {EXACT_KEY: length}


def to_plain(record: Any) -> Any:
    """A dataclass instance (or nested value) as plain CBOR-ready data."""
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        return {f.name: to_plain(getattr(record, f.name)) for f in dataclasses.fields(record)}
    if isinstance(record, enum.Enum):
        return record.value
    if isinstance(record, tuple | list):
        return [to_plain(item) for item in record]
    if isinstance(record, dict):
        return {key: to_plain(value) for key, value in record.items()}
    return record


def from_plain(cls: type[T], data: Any, path: str = "") -> T:
    """Build ``cls`` from plain data, refusing anything off its annotations."""
    return typing.cast(T, _convert(cls, data, path or cls.__name__, {}))


@cache
def _fields(cls: type) -> tuple[tuple[str, Any, bool, dict[str, Any]], ...]:
    hints = typing.get_type_hints(cls)
    result = []
    for f in dataclasses.fields(cls):
        has_default = f.default is not dataclasses.MISSING or (
            f.default_factory is not dataclasses.MISSING
        )
        result.append((f.name, hints[f.name], has_default, dict(f.metadata)))
    return tuple(result)


def _convert(annotation: Any, data: Any, path: str, metadata: dict[str, Any]) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if data is None and type(None) in options:
            return None
        (inner,) = [option for option in options if option is not type(None)]
        return _convert(inner, data, path, metadata)
    if origin is tuple:
        item_type = typing.get_args(annotation)[0]
        if not isinstance(data, list):
            raise BadField(f"{path}: expected a list")
        _check_length(len(data), path, metadata)
        return tuple(_convert(item_type, item, f"{path}[{i}]", {}) for i, item in enumerate(data))
    if origin is dict:
        key_type, value_type = typing.get_args(annotation)
        if not isinstance(data, dict):
            raise BadField(f"{path}: expected a map")
        _check_length(len(data), path, metadata)
        return {
            _convert(key_type, key, f"{path}.<key>", {}): _convert(
                value_type, value, f"{path}.{key}", {}
            )
            for key, value in data.items()
        }
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return _convert_record(annotation, data, path)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        try:
            return annotation(data)
        except ValueError:
            raise BadField(f"{path}: {data!r} is not a valid {annotation.__name__}") from None
    return _convert_scalar(annotation, data, path, metadata)


def _convert_record(cls: type, data: Any, path: str) -> Any:
    if not isinstance(data, dict):
        raise BadField(f"{path}: expected a map")
    known = set()
    values: dict[str, Any] = {}
    for name, annotation, has_default, metadata in _fields(cls):
        known.add(name)
        if name in data:
            values[name] = _convert(annotation, data[name], f"{path}.{name}", metadata)
        elif not has_default:
            raise BadField(f"{path}.{name}: missing")
    unexpected = sorted(str(key) for key in data if key not in known)
    if unexpected:
        raise BadField(f"{path}: unexpected field {unexpected[0]!r}")
    try:
        return cls(**values)
    except (ValueError, TypeError) as error:  # a record's own __post_init__ checks
        raise BadField(f"{path}: {error}") from None


def _convert_scalar(annotation: Any, data: Any, path: str, metadata: dict[str, Any]) -> Any:
    if annotation is bool:
        if not isinstance(data, bool):
            raise BadField(f"{path}: expected a boolean")
        return data
    if annotation is int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise BadField(f"{path}: expected an integer")
        if not INT_MIN <= data <= INT_MAX:
            raise BadField(f"{path}: integer out of 64-bit range")
        return data
    if annotation is float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            raise BadField(f"{path}: expected a number")
        return float(data)
    if annotation is str or annotation is bytes:
        if not isinstance(data, annotation):
            raise BadField(f"{path}: expected {'text' if annotation is str else 'bytes'}")
        _check_length(len(data), path, metadata)
        return data
    if annotation is typing.Any:
        return data
    raise TypeError(f"schema cannot convert annotation {annotation!r} at {path}")


def _check_length(length: int, path: str, metadata: dict[str, Any]) -> None:
    exact_len = metadata.get(EXACT_KEY)
    if exact_len is not None and length != exact_len:
        raise BadField(f"{path}: expected exactly {exact_len} bytes, got {length}")
    max_len = metadata.get(LIMIT_KEY)
    if max_len is not None and length > max_len:
        raise BadField(f"{path}: {length} exceeds the limit of {max_len}")
