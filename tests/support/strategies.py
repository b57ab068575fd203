"""Hypothesis strategies derived from record annotations (respecting size metadata)."""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from typing import Any

from hypothesis import strategies as st

from colonymesh.node.schema import EXACT_KEY, INT_MAX, INT_MIN, LIMIT_KEY


def for_annotation(
    annotation: Any, metadata: dict[str, Any] | None = None
) -> st.SearchStrategy[Any]:
    metadata = metadata or {}
    exact_len = metadata.get(EXACT_KEY)
    max_len = min(metadata.get(LIMIT_KEY, 64), 64)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = next(a for a in typing.get_args(annotation) if a is not type(None))
        return st.none() | for_annotation(inner, metadata)
    if origin is tuple:
        return st.lists(
            for_annotation(typing.get_args(annotation)[0]), max_size=min(max_len, 4)
        ).map(tuple)
    if origin is dict:
        _, value_type = typing.get_args(annotation)
        return st.dictionaries(st.text(max_size=8), for_annotation(value_type), max_size=4)
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return for_record(annotation)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return st.sampled_from(list(annotation))
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        return st.integers(INT_MIN, INT_MAX)
    if annotation is float:
        return st.floats(allow_nan=False)
    if annotation is bytes:
        if exact_len is not None:
            return st.binary(min_size=exact_len, max_size=exact_len)
        return st.binary(max_size=max_len)
    if annotation is str:
        return st.text(max_size=max_len).filter(lambda s: len(s) <= max_len)
    raise TypeError(f"no strategy for {annotation!r}")


def for_record(cls: type) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls)
    fields = {
        f.name: for_annotation(hints[f.name], dict(f.metadata)) for f in dataclasses.fields(cls)
    }
    return st.fixed_dictionaries(fields).map(lambda values: cls(**values))
