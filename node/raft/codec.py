"""Raft messages on the wire: compact positional CBOR, decoded strictly.

A frame is ``[tag, field1, field2, ...]`` in the dataclass's field order,
entries as ``[term, index, kind, data]`` and snapshot metadata as ``[index,
term, voters, learners]``. Raft frames are not signed: they travel only on
connections whose remote proved its key in the Noise handshake and presented a
colony certificate, and the ledger commands inside entries carry their
authors' signatures. A frame that does not decode into a well-typed message is
a :class:`~colonymesh.node.errors.MalformedFrame`; semantic checks (indexes,
terms) are the core's own ``validate_message``.

Converters are compiled once per message class from its annotations, so
encoding and decoding stay a few list operations per field.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from typing import Any

import cbor2

from colonymesh.consensus.messages import MESSAGE_TYPES, Message
from colonymesh.consensus.types import (
    ConfState,
    Entry,
    EntryKind,
    LogIndex,
    NodeId,
    SnapshotMeta,
    Term,
)
from colonymesh.node import wire
from colonymesh.node.errors import MalformedFrame

FRAME_BYTES_MAX = 16 * 1024 * 1024
_TAG_OF = {cls: tag for tag, cls in enumerate(MESSAGE_TYPES, start=1)}
_CLASS_OF = {tag: cls for cls, tag in _TAG_OF.items()}

Decoder = Callable[[Any, str], Any]


def _fail(path: str, expected: str) -> MalformedFrame:
    return MalformedFrame(f"raft frame: {path} is not {expected}")


def _int(value: Any, path: str) -> int:
    if type(value) is not int or value < 0:
        raise _fail(path, "a non-negative integer")
    return value


def _bool(value: Any, path: str) -> bool:
    if type(value) is not bool:
        raise _fail(path, "a boolean")
    return value


def _str(value: Any, path: str) -> str:
    if type(value) is not str or len(value) > 256:
        raise _fail(path, "a node id")
    return value


def _bytes(value: Any, path: str) -> bytes:
    if type(value) is not bytes:
        raise _fail(path, "bytes")
    return value


def _entry(value: Any, path: str) -> Entry:
    if type(value) is not list or len(value) != 4:
        raise _fail(path, "an entry [term, index, kind, data]")
    term, index, kind, data = value
    try:
        entry_kind = EntryKind(_int(kind, f"{path}.kind"))
    except ValueError:
        raise _fail(f"{path}.kind", "a known entry kind") from None
    return Entry(
        Term(_int(term, f"{path}.term")),
        LogIndex(_int(index, f"{path}.index")),
        entry_kind,
        _bytes(data, path),
    )


_KINDS = {int(kind): kind for kind in EntryKind}


def _entries(value: Any, path: str) -> tuple[Entry, ...]:
    """The hot path of AppendEntries: inline checks, the error path only on failure."""
    if type(value) is not list:
        raise _fail(path, "a list of entries")
    out: list[Entry] = []
    kinds = _KINDS
    for item in value:
        if type(item) is list and len(item) == 4:
            term, index, kind, data = item
            if (
                type(term) is int
                and type(index) is int
                and type(kind) is int
                and type(data) is bytes
                and term >= 0
                and index >= 0
                and kind in kinds
            ):
                out.append(Entry(item[0], item[1], kinds[kind], data))  # checked above
                continue
        out.append(_entry(item, f"{path}[{len(out)}]"))  # raises with the precise reason
    return tuple(out)


def _ids(value: Any, path: str) -> tuple[str, ...]:
    if type(value) is not list or len(value) > 1024:
        raise _fail(path, "a list of node ids")
    return tuple(_str(item, path) for item in value)


def _meta(value: Any, path: str) -> SnapshotMeta:
    if type(value) is not list or len(value) != 4:
        raise _fail(path, "snapshot metadata [index, term, voters, learners]")
    index, term, voters, learners = value
    conf = ConfState(
        tuple(NodeId(i) for i in _ids(voters, f"{path}.voters")),
        tuple(NodeId(i) for i in _ids(learners, f"{path}.learners")),
    )
    return SnapshotMeta(
        LogIndex(_int(index, f"{path}.index")), Term(_int(term, f"{path}.term")), conf
    )


_DECODERS: dict[str, Decoder] = {
    "NodeId": _str,
    "Term": _int,
    "LogIndex": _int,
    "int": _int,
    "bool": _bool,
    "bytes": _bytes,
    "tuple[Entry, ...]": _entries,
    "SnapshotMeta": _meta,
}


def _plain_entries(value: tuple[Entry, ...]) -> list[list[Any]]:
    return [[e.term, e.index, int(e.kind), e.data] for e in value]


def _plain_meta(value: SnapshotMeta) -> list[Any]:
    return [value.index, value.term, list(value.conf.voters), list(value.conf.learners)]


Layout = tuple[tuple[str, ...], tuple[Decoder, ...], tuple[tuple[int, Callable[[Any], Any]], ...]]


def _compile(cls: type) -> Layout:
    """Field names, a decoder per field, and the (position, converter) of the few
    fields that are not CBOR scalars already (entries, snapshot metadata)."""
    names = tuple(f.name for f in dataclasses.fields(cls))
    annotations = typing.get_type_hints(cls)
    decoders = []
    converters: list[tuple[int, Callable[[Any], Any]]] = []
    for position, name in enumerate(names):
        annotation = annotations[name]
        key = getattr(annotation, "__name__", None) or str(annotation)
        if typing.get_origin(annotation) is tuple:
            key = "tuple[Entry, ...]"
            converters.append((position, _plain_entries))
        elif key == "SnapshotMeta":
            converters.append((position, _plain_meta))
        decoders.append(_DECODERS[key])
    return names, tuple(decoders), tuple(converters)


_LAYOUT = {cls: _compile(cls) for cls in MESSAGE_TYPES}


def encode(message: Message) -> bytes:
    cls = type(message)
    names, _, converters = _LAYOUT[cls]
    fields: list[Any] = [_TAG_OF[cls]]
    fields += [getattr(message, name) for name in names]
    for position, convert in converters:
        fields[position + 1] = convert(fields[position + 1])
    return cbor2.dumps(fields)


def decode(frame: bytes) -> Message:
    """The message in ``frame``; :class:`MalformedFrame` for anything else."""
    value = wire.decode(frame, frame_bytes_max=FRAME_BYTES_MAX, canonical=False)
    if type(value) is not list or not value or type(value[0]) is not int:
        raise MalformedFrame("raft frame: not [tag, fields...]")
    cls = _CLASS_OF.get(value[0])
    if cls is None:
        raise MalformedFrame(f"raft frame: unknown message tag {value[0]}")
    names, decoders, _ = _LAYOUT[cls]
    if len(value) != len(names) + 1:
        raise MalformedFrame(f"raft frame: {cls.__name__} needs {len(names)} fields")
    fields = [
        decode_field(item, cls.__name__ + "." + name)
        for decode_field, item, name in zip(decoders, value[1:], names, strict=True)
    ]
    message: Message = cls(*fields)
    return message
