"""Ledger snapshots: the complete replicated state as one canonical CBOR document.

Owns the snapshot format and its strict decoder. Raft compacts its log by
asking the state machine for ``snapshot()`` at an applied index and hands the
bytes to lagging followers (InstallSnapshot) and to itself on restart
(``restore``), so every replica must turn the same state into the same bytes
and back into a ledger that answers every later entry exactly as the
original would.

How it works: :func:`encode_state` writes a map tagged with
:data:`FORMAT` / :data:`VERSION` and the colony id; records are positional
arrays (compact, and their length is checked). :func:`decode_state` refuses
anything off the format with :class:`SnapshotError` (never another
exception), rebuilds the membership by re-verifying every certificate and
revocation against the colony owner's key, and checks the cross-references
that ``Ledger.apply`` relies on, so a restored ledger cannot crash on a later
entry.

What is stored and what is rebuilt:

* stored: certificates (encoded records), revocations (the encoded records
  the ledger applied), per-author replay windows (so a replayed command is
  still refused after a restore), ``now_ms``, ``applied_index``, the
  submission counter, function statistics, executors, workflows, processes,
  and the meta-filesystem's labels and snapshots (key ``fsmeta``, written
  only when not empty, so colonies without files keep their bytes), crons
  and generators (keys ``crons`` and ``generators``, likewise optional;
  their workflow specs are stored as their owners' text and parsed again);
* a process's spec is stored as the JSON text the ledger keeps
  (``Process.spec_json``: the submitter's text, or the normalised JSON of a
  workflow node) and parsed again on restore exactly as ``apply`` parsed it;
  input and output are compact JSON text, which keeps JSON object key order
  (canonical CBOR would sort map keys);
* rebuilt by the ledger: the waiting queues and the deadline heap, both
  functions of the processes (a ready process with ``maxwaittime`` has a
  wait deadline at ``ready_ms + maxwaittime``, a running one with
  ``maxexectime`` an exec deadline at ``assigned_ms + maxexectime``); stale
  heap entries, which ``apply`` would skip anyway, are not carried over.

Determinism: dicts whose order the ledger exposes (processes, workflows,
executors, functions, a process's attributes, an executor's functions) keep
their insertion order, which is the same on every replica because it follows
the log; the rest (certificates, revocations, replay windows) is sorted by
key. ``encode_state(decode_state(s)) == s`` for every ``s`` this module
wrote.

Invariant: decoding never mutates anything but the objects it creates; the
caller swaps them in only after the whole snapshot was accepted.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from colonymesh.node import schema, wire
from colonymesh.node.certs import (
    Capabilities,
    Certificate,
    Colony,
    Membership,
    Revocation,
    decode_record,
    encode_record,
)
from colonymesh.node.envelope import ReplayWindow
from colonymesh.node.errors import BadField, CertificateError, ColonymeshError, WireError
from colonymesh.node.ledger.crons import CronBook, decode_crons, encode_crons
from colonymesh.node.ledger.fsmeta import FsMeta, FsMetaRefused
from colonymesh.node.ledger.generators import (
    GeneratorBook,
    decode_generators,
    encode_generators,
)
from colonymesh.node.ledger.model import (
    Executor,
    FunctionStats,
    Process,
    ProcessState,
    TimingStats,
    Workflow,
)
from colonymesh.node.ledger.triggers import RecordError
from colonymesh.node.spec import FunctionSpec, SpecError, parse_function_spec

FORMAT = "colonymesh.ledger"
VERSION = 1
SNAPSHOT_BYTES_MAX_DEFAULT = 1 << 32  # as Raft's snapshot_bytes_max: what Raft accepts, we load

T = TypeVar("T")


class SnapshotError(ColonymeshError):
    """The bytes are not a ledger snapshot this colony can restore; the message says why."""


@dataclass(slots=True)
class LedgerState:
    """Everything a snapshot carries; the ledger rebuilds its indexes from it."""

    membership: Membership
    revocations: dict[int, bytes]  # serial -> the encoded revocation the ledger applied
    now_ms: int
    applied_index: int
    next_order: int
    replay: dict[bytes, ReplayWindow] = field(default_factory=dict)
    functions: dict[tuple[str, str], FunctionStats] = field(default_factory=dict)
    executors: dict[bytes, Executor] = field(default_factory=dict)
    workflows: dict[str, Workflow] = field(default_factory=dict)
    processes: dict[str, Process] = field(default_factory=dict)
    fsmeta: FsMeta = field(default_factory=FsMeta)
    crons: CronBook = field(default_factory=CronBook)
    generators: GeneratorBook = field(default_factory=GeneratorBook)


# --- encoding -------------------------------------------------------------------


def encode_state(state: LedgerState) -> bytes:
    """The canonical CBOR snapshot of ``state`` (see the module docs).

    Records are encoded one at a time and joined, so the plain-data copy of
    one record is garbage as soon as it is encoded: building the whole
    document first would keep millions of small lists alive and make the
    garbage collector's full passes (proportional to the live heap) the
    main cost. The result is byte for byte what ``wire.encode`` of the
    whole document gives (the decoder's canonical check holds us to it).
    """
    membership = state.membership
    certificates = sorted(membership.members(), key=lambda cert: cert.member_key)
    fields: dict[str, bytes] = {
        "format": wire.encode(FORMAT),
        "version": wire.encode(VERSION),
        "colony_id": wire.encode(membership.colony.colony_id),
        "now_ms": wire.encode(state.now_ms),
        "applied_index": wire.encode(state.applied_index),
        "next_order": wire.encode(state.next_order),
        "certificates": _array(wire.encode(encode_record(cert)) for cert in certificates),
        "revocations": _array(
            wire.encode(state.revocations[serial]) for serial in sorted(state.revocations)
        ),
        "replay": _array(
            wire.encode([author, window.highest, _int_bytes(window.bitmap)])
            for author, window in sorted(state.replay.items())
        ),
        "functions": _array(wire.encode(_encode_function(f)) for f in state.functions.values()),
        "executors": _array(wire.encode(_encode_executor(e)) for e in state.executors.values()),
        "workflows": _array(wire.encode(_encode_workflow(w)) for w in state.workflows.values()),
        "processes": _array(wire.encode(_encode_process(p)) for p in state.processes.values()),
    }
    if state.fsmeta:  # optional: a colony without files keeps its snapshot bytes
        fields["fsmeta"] = wire.encode(state.fsmeta.to_plain())
    if state.crons:  # optional too (crons.py)
        fields["crons"] = wire.encode(encode_crons(state.crons))
    if state.generators:  # optional too (generators.py)
        fields["generators"] = wire.encode(encode_generators(state.generators))
    keys = sorted((wire.encode(key), key) for key in fields)  # canonical: shorter keys first
    keys.sort(key=lambda pair: len(pair[0]))
    parts = [_head(_MAP, len(fields))]
    for encoded_key, key in keys:
        parts += (encoded_key, fields[key])
    return b"".join(parts)


_ARRAY, _MAP = 4, 5


def _head(major: int, length: int) -> bytes:
    """The canonical (shortest) CBOR head of an array or map of ``length`` items."""
    if length < 24:
        return bytes((major << 5 | length,))
    for extra, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if length < 1 << (8 * size):
            return bytes((major << 5 | extra,)) + length.to_bytes(size, "big")
    raise ValueError(f"{length} items do not fit a CBOR head")


def _array(encoded_items: Iterable[bytes]) -> bytes:
    items = list(encoded_items)
    return _head(_ARRAY, len(items)) + b"".join(items)


def _int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _json(value: list[object]) -> str:
    return _JSON.encode(value) if value else "[]"


def _timing(timing: TimingStats) -> list[int]:
    return [timing.count, timing.total_ms, timing.min_ms, timing.max_ms]


def _encode_function(stats: FunctionStats) -> list[Any]:
    return [
        stats.executor_type,
        stats.funcname,
        stats.submitted,
        stats.succeeded,
        stats.failed,
        _timing(stats.wait),
        _timing(stats.run),
    ]


def _encode_executor(executor: Executor) -> list[Any]:
    return [
        executor.key,
        executor.name,
        executor.executor_type,
        executor.location,
        schema.to_plain(executor.capabilities),
        executor.registered_ms,
        list(executor.running),
        [[name, description] for name, description in executor.functions.items()],
    ]


def _encode_workflow(workflow: Workflow) -> list[Any]:
    return [
        workflow.id,
        workflow.submitter,
        workflow.submitted_ms,
        list(workflow.process_ids),
        workflow.state.value,
        workflow.ended_ms,
    ]


def _encode_process(p: Process) -> list[Any]:
    return [
        p.id,
        p.spec_json,
        p.submitter,
        p.submitted_ms,
        p.order,
        p.state.value,
        p.workflow_id,
        list(p.parents),
        list(p.children),
        p.parents_pending,
        p.ready_ms,
        p.executor,
        p.assigned_ms,
        p.ended_ms,
        p.retries,
        p.executor_losses,
        _json(p.input),
        _json(p.output),
        list(p.errors),
        [[key, value] for key, value in p.attributes.items()],
        [[ms, line] for ms, line in p.logs],
        p.logs_dropped,
    ]


# --- decoding -------------------------------------------------------------------

_TOP_KEYS = frozenset(
    (
        "format",
        "version",
        "colony_id",
        "now_ms",
        "applied_index",
        "next_order",
        "certificates",
        "revocations",
        "replay",
        "functions",
        "executors",
        "workflows",
        "processes",
    )
)

# Written only when not empty (see encode_state).
_OPTIONAL_KEYS = frozenset(("fsmeta", "crons", "generators"))


def decode_state(
    colony: Colony,
    data: bytes,
    *,
    replay_window: int,
    snapshot_bytes_max: int = SNAPSHOT_BYTES_MAX_DEFAULT,
) -> LedgerState:
    """Strictly decode a snapshot of ``colony``'s ledger; any defect is a :class:`SnapshotError`."""
    try:
        return _decode_state(colony, data, replay_window, snapshot_bytes_max)
    except SnapshotError:
        raise
    except (WireError, CertificateError) as error:
        raise SnapshotError(f"not a ledger snapshot: {error}") from None
    except RecursionError:  # hostile nesting that slipped past the depth cap
        raise SnapshotError("not a ledger snapshot: nested too deeply") from None


def _decode_state(
    colony: Colony, data: bytes, replay_window: int, snapshot_bytes_max: int
) -> LedgerState:
    if not isinstance(data, bytes):
        raise SnapshotError("a snapshot is bytes")
    document = wire.decode(data, frame_bytes_max=snapshot_bytes_max)
    if not isinstance(document, dict):
        raise SnapshotError("a snapshot is a CBOR map")
    if document.get("format") != FORMAT:
        raise SnapshotError(f"not a ledger snapshot (format {document.get('format')!r})")
    if document.get("version") != VERSION:
        raise SnapshotError(f"ledger snapshot version {document.get('version')!r} is not {VERSION}")
    if set(document) - _OPTIONAL_KEYS != _TOP_KEYS:
        odd = sorted(str(key) for key in (set(document) - _OPTIONAL_KEYS) ^ _TOP_KEYS)
        raise SnapshotError(f"snapshot fields differ from version {VERSION}: {', '.join(odd)}")
    if document["colony_id"] != colony.colony_id:
        raise SnapshotError(
            f"snapshot of another colony ({_hex(document['colony_id'])}), "
            f"not {colony.colony_id.hex()[:16]}… ({colony.name})"
        )
    membership, revocations = _membership(colony, document)
    state = LedgerState(
        membership,
        revocations,
        _int(document["now_ms"], "now_ms"),
        _int(document["applied_index"], "applied_index"),
        _int(document["next_order"], "next_order"),
    )
    state.replay = _replay_windows(document["replay"], replay_window)
    state.functions = _keyed(
        document["functions"],
        "functions",
        _function,
        lambda f: (f.executor_type, f.funcname),
    )
    state.executors = _keyed(document["executors"], "executors", _executor, lambda e: e.key)
    state.workflows = _keyed(document["workflows"], "workflows", _workflow, lambda w: w.id)
    specs: dict[str, FunctionSpec] = {}  # equal texts parse to equal (frozen) specs
    state.processes = _keyed(
        document["processes"], "processes", lambda v, p: _process(v, p, specs), lambda p: p.id
    )
    if "fsmeta" in document:
        try:
            state.fsmeta = FsMeta.from_plain(document["fsmeta"])
        except FsMetaRefused as error:
            raise SnapshotError(f"fsmeta: {error.reason}") from None
    try:
        if "crons" in document:
            state.crons = decode_crons(document["crons"], colony.name)
        if "generators" in document:
            state.generators = decode_generators(document["generators"], colony.name)
    except RecordError as error:
        raise SnapshotError(str(error)) from None
    _check_references(state)
    return state


def _hex(value: object) -> str:
    return value.hex()[:16] + "…" if isinstance(value, bytes) else repr(value)


def _keyed(
    items: object,
    path: str,
    decode: Callable[[object, str], T],
    key: Callable[[T], Any],
) -> dict[Any, T]:
    result: dict[Any, T] = {}
    for i, item in enumerate(_list(items, path)):
        record = decode(item, f"{path}[{i}]")
        record_key = key(record)
        if record_key in result:
            raise SnapshotError(f"{path}[{i}]: duplicate key {record_key!r}")
        result[record_key] = record
    return result


def _membership(colony: Colony, document: dict[Any, Any]) -> tuple[Membership, dict[int, bytes]]:
    membership = Membership(colony)
    previous = b""
    for i, raw in enumerate(_list(document["certificates"], "certificates")):
        certificate = decode_record(Certificate, _bytes(raw, f"certificates[{i}]"))
        if certificate.member_key <= previous:
            raise SnapshotError(f"certificates[{i}]: not in member key order")
        previous = certificate.member_key
        # The ledger keeps a member's last admitted certificate even once it
        # expired; admitting it at its own start re-checks the owner's
        # signature without caring what time it is now.
        membership.admit(certificate, certificate.not_before)
    revocations: dict[int, bytes] = {}
    last_serial: int | None = None
    for i, raw in enumerate(_list(document["revocations"], "revocations")):
        encoded = _bytes(raw, f"revocations[{i}]")
        revocation = decode_record(Revocation, encoded)
        if last_serial is not None and revocation.serial <= last_serial:
            raise SnapshotError(f"revocations[{i}]: not in serial order")
        last_serial = revocation.serial
        membership.add_revocation(revocation)
        revocations[revocation.serial] = encoded
    return membership, revocations


def _replay_windows(value: object, window: int) -> dict[bytes, ReplayWindow]:
    windows: dict[bytes, ReplayWindow] = {}
    previous = b""
    for i, item in enumerate(_list(value, "replay")):
        author, replay = _replay(item, f"replay[{i}]", window)
        if author <= previous:
            raise SnapshotError(f"replay[{i}]: not in author order")
        previous = author
        windows[author] = replay
    return windows


def _replay(value: object, path: str, window: int) -> tuple[bytes, ReplayWindow]:
    author, highest, bitmap_bytes = _fields(value, path, 3)
    bitmap_raw = _bytes(bitmap_bytes, f"{path}.bitmap")
    if bitmap_raw[:1] == b"\x00":
        raise SnapshotError(f"{path}.bitmap: leading zero byte")
    bitmap = int.from_bytes(bitmap_raw, "big")
    if not bitmap & 1 or bitmap >> window:
        raise SnapshotError(f"{path}.bitmap: not a window of {window} with its newest seen")
    replay = ReplayWindow(_int(highest, f"{path}.highest"))
    replay.bitmap = bitmap
    return _bytes(author, f"{path}.author"), replay


def _timing_stats(value: object, path: str) -> TimingStats:
    count, total, low, high = (_int(v, path) for v in _fields(value, path, 4))
    return TimingStats(count, total, low, high)


def _function(value: object, path: str) -> FunctionStats:
    etype, funcname, submitted, succeeded, failed, wait, run = _fields(value, path, 7)
    return FunctionStats(
        _str(etype, f"{path}.executor_type"),
        _str(funcname, f"{path}.funcname"),
        _int(submitted, f"{path}.submitted"),
        _int(succeeded, f"{path}.succeeded"),
        _int(failed, f"{path}.failed"),
        _timing_stats(wait, f"{path}.wait"),
        _timing_stats(run, f"{path}.run"),
    )


def _executor(value: object, path: str) -> Executor:
    key, name, etype, location, capabilities, registered, running, functions = _fields(
        value, path, 8
    )
    try:
        caps = schema.from_plain(Capabilities, capabilities, f"{path}.capabilities")
    except BadField as error:
        raise SnapshotError(str(error)) from None
    return Executor(
        _bytes(key, f"{path}.key"),
        _str(name, f"{path}.name"),
        _str(etype, f"{path}.executor_type"),
        _str(location, f"{path}.location"),
        caps,
        _int(registered, f"{path}.registered_ms"),
        _strs(running, f"{path}.running"),
        _str_pairs(functions, f"{path}.functions"),
    )


def _workflow(value: object, path: str) -> Workflow:
    wid, submitter, submitted, process_ids, state, ended = _fields(value, path, 6)
    return Workflow(
        _str(wid, f"{path}.id"),
        _bytes(submitter, f"{path}.submitter"),
        _int(submitted, f"{path}.submitted_ms"),
        _strs(process_ids, f"{path}.process_ids"),
        _state(state, f"{path}.state"),
        _int(ended, f"{path}.ended_ms"),
    )


_OPTIONAL_BYTES = (bytes, type(None))
_PROCESS_FIELDS: tuple[tuple[str, type | tuple[type, ...]], ...] = (
    ("id", str),
    ("spec_json", str),
    ("submitter", bytes),
    ("submitted_ms", int),
    ("order", int),
    ("state", str),
    ("workflow_id", str),
    ("parents", list),
    ("children", list),
    ("parents_pending", int),
    ("ready_ms", int),
    ("executor", _OPTIONAL_BYTES),
    ("assigned_ms", int),
    ("ended_ms", int),
    ("retries", int),
    ("executor_losses", int),
    ("input", str),
    ("output", str),
    ("errors", list),
    ("attributes", list),
    ("logs", list),
    ("logs_dropped", int),
)


def _process(value: object, path: str, specs: dict[str, FunctionSpec]) -> Process:
    # The hot loop of a restore (one call per process): types are checked in
    # one pass against the table above, and paths are formatted only on error.
    (
        pid,
        spec_json,
        submitter,
        submitted,
        order,
        state,
        workflow_id,
        parents,
        children,
        pending,
        ready,
        executor,
        assigned,
        ended,
        retries,
        losses,
        input_json,
        output_json,
        errors,
        attributes,
        logs,
        dropped,
    ) = _typed(value, path, _PROCESS_FIELDS)
    return Process(
        id=pid,
        spec=_spec(spec_json, f"{path}.spec_json", specs),
        spec_json=spec_json,
        submitter=submitter,
        submitted_ms=submitted,
        order=order,
        state=_state(state, f"{path}.state"),
        workflow_id=workflow_id,
        parents=_strs(parents, f"{path}.parents"),
        children=_strs(children, f"{path}.children"),
        parents_pending=pending,
        ready_ms=ready,
        executor=executor,
        assigned_ms=assigned,
        ended_ms=ended,
        retries=retries,
        executor_losses=losses,
        input=_json_list(input_json, f"{path}.input"),
        output=_json_list(output_json, f"{path}.output"),
        errors=_strs(errors, f"{path}.errors"),
        attributes=_str_pairs(attributes, f"{path}.attributes"),
        logs=[_log_line(line, f"{path}.logs[{i}]") for i, line in enumerate(logs)],
        logs_dropped=dropped,
    )


def _typed(
    value: object, path: str, fields: tuple[tuple[str, type | tuple[type, ...]], ...]
) -> list[Any]:
    """``value`` as a record of ``fields``, every field of exactly its type (no bool for int)."""
    if type(value) is not list or len(value) != len(fields):
        raise SnapshotError(f"{path}: expected a record of {len(fields)} fields")
    for item, (name, kind) in zip(value, fields, strict=True):
        if type(item) is not kind and (type(kind) is not tuple or type(item) not in kind):
            raise SnapshotError(f"{path}.{name}: expected {_type_name(kind)}")
    return value


def _type_name(kind: type | tuple[type, ...]) -> str:
    if isinstance(kind, tuple):
        return " or ".join(_type_name(k) for k in kind)
    names: dict[type, str] = {str: "text", int: "an integer", bytes: "bytes", list: "a list"}
    return names.get(kind, kind.__name__)


def _spec(text: str, path: str, specs: dict[str, FunctionSpec]) -> FunctionSpec:
    spec = specs.get(text)
    if spec is None:
        try:  # exactly as Ledger._parse_spec parsed it when it was submitted
            spec = specs[text] = parse_function_spec(json.loads(text))
        except SpecError as error:
            raise SnapshotError(f"{path}: invalid function spec: {error}") from None
        except (ValueError, RecursionError) as error:
            raise SnapshotError(f"{path}: not JSON ({error})") from None
    return spec


def _json_list(text: str, path: str) -> list[object]:
    if text == "[]":
        return []
    try:
        decoded = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise SnapshotError(f"{path}: not JSON ({error})") from None
    if not isinstance(decoded, list):
        raise SnapshotError(f"{path}: not a JSON list")
    return decoded


def _log_line(value: object, path: str) -> tuple[int, str]:
    ms, line = _fields(value, path, 2)
    return _int(ms, f"{path}.ms"), _str(line, f"{path}.line")


def _check_references(state: LedgerState) -> None:
    """The cross-references ``Ledger.apply`` follows without looking must hold."""
    processes, workflows, executors = state.processes, state.workflows, state.executors
    for pid, process in processes.items():
        for other in (*process.parents, *process.children):
            if other not in processes:
                raise SnapshotError(f"process {pid} refers to missing process {other}")
        if process.workflow_id and process.workflow_id not in workflows:
            raise SnapshotError(f"process {pid} refers to missing workflow {process.workflow_id}")
        if process.state is ProcessState.RUNNING:
            holder = executors.get(process.executor or b"")
            if holder is None or pid not in holder.running:
                raise SnapshotError(f"running process {pid} is not held by its executor")
    for wid, workflow in workflows.items():
        for pid in workflow.process_ids:
            if processes.get(pid) is None or processes[pid].workflow_id != wid:
                raise SnapshotError(f"workflow {wid} lists process {pid} that is not its own")
    for key, executor in executors.items():
        if len(set(executor.running)) != len(executor.running):
            raise SnapshotError(f"executor {executor.name!r} holds a process twice")
        for pid in executor.running:
            held = processes.get(pid)
            if held is None or held.state is not ProcessState.RUNNING:
                raise SnapshotError(f"executor {executor.name!r} holds {pid}, which is not running")
            if held.executor != key:
                raise SnapshotError(f"executor {executor.name!r} holds {pid} of another executor")


# --- strict leaves ---------------------------------------------------------------------


def _fields(value: object, path: str, count: int) -> list[Any]:
    if type(value) is not list or len(value) != count:
        raise SnapshotError(f"{path}: expected a record of {count} fields")
    return value


def _list(value: object, path: str) -> list[Any]:
    if type(value) is not list:
        raise SnapshotError(f"{path}: expected a list")
    return value


def _int(value: object, path: str) -> int:
    if type(value) is not int:
        raise SnapshotError(f"{path}: expected an integer")
    return value


def _str(value: object, path: str) -> str:
    if type(value) is not str:
        raise SnapshotError(f"{path}: expected text")
    return value


def _bytes(value: object, path: str) -> bytes:
    if type(value) is not bytes:
        raise SnapshotError(f"{path}: expected bytes")
    return value


def _strs(value: object, path: str) -> list[str]:
    items = _list(value, path)
    if all(type(item) is str for item in items):
        return list(items)
    bad = next(i for i, item in enumerate(items) if type(item) is not str)
    raise SnapshotError(f"{path}[{bad}]: expected text")


def _str_pairs(value: object, path: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for i, pair in enumerate(_list(value, path)):
        key, item = _fields(pair, f"{path}[{i}]", 2)
        name = _str(key, f"{path}[{i}].key")
        if name in result:
            raise SnapshotError(f"{path}: duplicate key {name!r}")
        result[name] = _str(item, f"{path}[{i}].value")
    return result


def _state(value: object, path: str) -> ProcessState:
    try:
        return ProcessState(_str(value, path))
    except ValueError:
        raise SnapshotError(f"{path}: {value!r} is not a process state") from None
