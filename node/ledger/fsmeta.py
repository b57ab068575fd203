"""The meta-filesystem's metadata in the ledger: labels, file revisions, snapshots.

Owns ColonyOS's CFS model as replicated state; the bytes live content-addressed
on the colony's peers (``colonymesh.fs``, ``colonymesh.node.fsnet``) and the
ledger keeps only what names them.

* A **label** is a path-like name (``/a/b``): it starts with ``/``, its
  segments are non-empty, not ``.`` or ``..``, printable, and it never ends
  with ``/`` (except the root ``/`` itself). Labels nest: ``/a/b`` is under
  ``/a``.
* A **file** under a label has a name (one path segment) and a list of
  immutable **revisions** (name, size, CID, added time, adder, where the
  adder listens), oldest first; the latest wins. Adding the CID the latest
  revision already has changes nothing (so an add is idempotent and a sync
  of an unchanged file adds no revision). Only the newest
  ``revisions_per_file_max`` revisions are kept.
* A **snapshot** pins the latest revision of every file under a label (the
  label itself and every label below it) at the time it is made: its id, its
  name (unique in the colony), the label and the file list with CIDs. Later
  adds and removals under the label do not change it; only removing the
  snapshot does.

How it works: :class:`FsMeta` is plain state with one method per command;
each validates everything before changing anything and raises
:class:`FsMetaRefused` (which the ledger turns into a refusal event), so a
refused command changes nothing. Snapshot ids are derived from the command's
author and sequence number, so every replica computes the same id.

Invariants: no label maps to an empty file table; every file has at least
one revision; a snapshot name maps to exactly one snapshot and back; every
count stays under its cap.

Authorisation (checked by the ledger before a command gets here): any
admitted member may add, remove and snapshot anything. ColonyOS grants the
same to every colony member; per-label access control is not modelled.

Pure: no I/O, no clock (times come from the ledger's ``now_ms``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, assert_never

from colonymesh.fs.cid import Cid
from colonymesh.fs.errors import FsError
from colonymesh.node.ledger.commands import (
    AddFile,
    CreateSnapshot,
    RemoveFile,
    RemoveLabel,
    RemoveSnapshot,
)

LABEL_CHARS_MAX = 1024
NAME_BYTES_MAX = 255
ADDRS_MAX = 8
ADDR_CHARS_MAX = 256
CID_CHARS_MAX = 128
SNAPSHOT_NAME_CHARS_MAX = 256
SNAPSHOT_ID_CHARS = 32


class FsMetaRefused(Exception):
    """A command the metadata rules refuse; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class FsMetaConfig:
    labels_max: int = 100_000
    files_max: int = 1_000_000
    revisions_per_file_max: int = 64
    snapshots_max: int = 100_000
    snapshot_files_max: int = 100_000


@dataclass(frozen=True, slots=True)
class Revision:
    """One immutable version of a file."""

    name: str
    size: int
    cid: str
    added_ms: int
    adder: bytes  # the member's public key
    addrs: tuple[str, ...] = ()  # where the adder listened: a first provider to ask


@dataclass(frozen=True, slots=True)
class SnapshotFile:
    """One file of a snapshot: the revision that was latest under ``label`` when it was made."""

    label: str
    revision: Revision


@dataclass(frozen=True, slots=True)
class Snapshot:
    id: str
    name: str
    label: str
    created_ms: int
    creator: bytes
    files: tuple[SnapshotFile, ...]


# --- validation (also used by the CLI and the sync engine) --------------------------


def _printable(text: str) -> bool:
    return all(ch.isprintable() for ch in text)


def check_label(label: object) -> str:
    """``label`` if it is a valid path-like label, else :class:`FsMetaRefused`."""
    if not isinstance(label, str) or not label.startswith("/"):
        raise FsMetaRefused(f"label {label!r} must start with '/'")
    if len(label) > LABEL_CHARS_MAX:
        raise FsMetaRefused(f"label longer than {LABEL_CHARS_MAX} characters")
    if label == "/":
        return label
    for segment in label[1:].split("/"):
        if segment in ("", ".", ".."):
            raise FsMetaRefused(f"label {label!r}: empty, '.' or '..' segment")
        if not _printable(segment):
            raise FsMetaRefused(f"label {label!r}: non-printable character")
    return label


def check_name(name: object) -> str:
    """``name`` if it is a valid file name (one path segment), else :class:`FsMetaRefused`."""
    if not isinstance(name, str) or name in ("", ".", ".."):
        raise FsMetaRefused(f"file name {name!r} is empty, '.' or '..'")
    if "/" in name or not _printable(name):
        raise FsMetaRefused(f"file name {name!r} must be printable and contain no '/'")
    if len(name.encode("utf-8", "surrogatepass")) > NAME_BYTES_MAX:
        raise FsMetaRefused(f"file name longer than {NAME_BYTES_MAX} bytes")
    return name


def check_cid(text: object) -> str:
    if not isinstance(text, str) or len(text) > CID_CHARS_MAX:
        raise FsMetaRefused("a CID is text of at most 128 characters")
    try:
        Cid.parse(text)
    except FsError as error:
        raise FsMetaRefused(f"{text!r} is not a CID: {error}") from None
    return text


def is_under(label: str, ancestor: str) -> bool:
    """Whether ``label`` is ``ancestor`` or nested below it."""
    return ancestor == "/" or label == ancestor or label.startswith(ancestor + "/")


def snapshot_id(author: bytes, seq: int, name: str) -> str:
    """The id of the snapshot a command creates: the same on every replica."""
    digest = hashlib.sha256(b"colonymesh.snapshot\0" + author + seq.to_bytes(8, "big"))
    digest.update(name.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:SNAPSHOT_ID_CHARS]


# --- the state ----------------------------------------------------------------------


class FsMeta:
    """Labels, their files' revisions and the snapshots; see the module docs."""

    def __init__(self, config: FsMetaConfig | None = None) -> None:
        self.config = config or FsMetaConfig()
        self.labels: dict[str, dict[str, list[Revision]]] = {}
        self.snapshots: dict[str, Snapshot] = {}
        self._snapshot_ids_by_name: dict[str, str] = {}
        self._files = 0

    def __bool__(self) -> bool:
        return bool(self.labels or self.snapshots)

    # --- commands ---------------------------------------------------------------

    def add_file(self, label: str, revision: Revision) -> bool:
        """Add ``revision`` to ``label``'s file of that name; False if it already is the latest."""
        check_label(label)
        check_name(revision.name)
        check_cid(revision.cid)
        if revision.size < 0:
            raise FsMetaRefused("a file size is a non-negative integer")
        if len(revision.addrs) > ADDRS_MAX or any(
            len(a) > ADDR_CHARS_MAX or not _printable(a) for a in revision.addrs
        ):
            raise FsMetaRefused(f"at most {ADDRS_MAX} printable addresses")
        files = self.labels.get(label)
        revisions = files.get(revision.name) if files is not None else None
        if revisions is not None and revisions[-1].cid == revision.cid:
            return False
        if files is None and len(self.labels) >= self.config.labels_max:
            raise FsMetaRefused(f"the colony has the maximum of {self.config.labels_max} labels")
        if revisions is None and self._files >= self.config.files_max:
            raise FsMetaRefused(f"the colony has the maximum of {self.config.files_max} files")
        if files is None:
            files = self.labels[label] = {}
        if revisions is None:
            revisions = files[revision.name] = []
            self._files += 1
        revisions.append(revision)
        del revisions[: -self.config.revisions_per_file_max]
        return True

    def remove_file(self, label: str, name: str) -> None:
        files = self.labels.get(check_label(label))
        if files is None or check_name(name) not in files:
            raise FsMetaRefused(f"no file {name!r} under label {label}")
        del files[name]
        self._files -= 1
        if not files:
            del self.labels[label]

    def remove_label(self, label: str) -> int:
        """Remove every file under ``label`` (and the labels below it); how many."""
        check_label(label)
        doomed = [name for name in self.labels if is_under(name, label)]
        if not doomed:
            raise FsMetaRefused(f"no label {label}")
        removed = 0
        for name in doomed:
            removed += len(self.labels.pop(name))
        self._files -= removed
        return removed

    def create_snapshot(
        self, snapshot_id: str, name: str, label: str, now_ms: int, creator: bytes
    ) -> Snapshot:
        check_label(label)
        if not name or len(name) > SNAPSHOT_NAME_CHARS_MAX or not _printable(name):
            raise FsMetaRefused(f"a snapshot name is 1..{SNAPSHOT_NAME_CHARS_MAX} printable chars")
        if name in self._snapshot_ids_by_name:
            raise FsMetaRefused(f"a snapshot named {name!r} exists")
        if snapshot_id in self.snapshots:
            raise FsMetaRefused(f"snapshot id {snapshot_id} exists")
        if len(self.snapshots) >= self.config.snapshots_max:
            raise FsMetaRefused(
                f"the colony has the maximum of {self.config.snapshots_max} snapshots"
            )
        files = tuple(
            SnapshotFile(file_label, revisions[-1])
            for file_label, file_name, revisions in self.files_under(label)
        )
        if len(files) > self.config.snapshot_files_max:
            raise FsMetaRefused(
                f"label {label} holds {len(files)} files, over {self.config.snapshot_files_max}"
            )
        snapshot = Snapshot(snapshot_id, name, label, now_ms, creator, files)
        self.snapshots[snapshot_id] = snapshot
        self._snapshot_ids_by_name[name] = snapshot_id
        return snapshot

    def remove_snapshot(self, id_or_name: str) -> Snapshot:
        snapshot = self.snapshot(id_or_name)
        if snapshot is None:
            raise FsMetaRefused(f"no snapshot {id_or_name!r}")
        del self.snapshots[snapshot.id]
        del self._snapshot_ids_by_name[snapshot.name]
        return snapshot

    # --- reads ------------------------------------------------------------------

    def latest(self, label: str, name: str) -> Revision | None:
        revisions = self.labels.get(label, {}).get(name)
        return revisions[-1] if revisions else None

    def revisions(self, label: str, name: str) -> list[Revision]:
        return list(self.labels.get(label, {}).get(name, ()))

    def files_under(self, label: str) -> Iterator[tuple[str, str, list[Revision]]]:
        """``(label, name, revisions)`` of every file under ``label``, sorted by label then name."""
        for file_label in sorted(name for name in self.labels if is_under(name, label)):
            files = self.labels[file_label]
            for file_name in sorted(files):
                yield file_label, file_name, files[file_name]

    def label_counts(self, under: str = "/") -> list[tuple[str, int]]:
        """Every label under ``under`` with its number of files, sorted."""
        return sorted(
            (name, len(files)) for name, files in self.labels.items() if is_under(name, under)
        )

    def snapshot(self, id_or_name: str) -> Snapshot | None:
        found = self.snapshots.get(id_or_name)
        if found is not None:
            return found
        by_name = self._snapshot_ids_by_name.get(id_or_name)
        return self.snapshots[by_name] if by_name is not None else None

    def referenced_cids(self) -> list[str]:
        """Every CID a kept revision or a snapshot names: what peers holding it keep pinned.

        Every kept revision, not only the latest: revisions are immutable and
        readable by their CID until the cap drops them.
        """
        found: dict[str, None] = {}
        for _, _, revisions in self.files_under("/"):
            for revision in revisions:
                found[revision.cid] = None
        for snap in self.snapshots.values():
            for item in snap.files:
                found[item.revision.cid] = None
        return list(found)

    @property
    def file_count(self) -> int:
        return self._files

    # --- snapshots of the ledger (plain data for canonical CBOR) ------------------

    def to_plain(self) -> list[Any]:
        labels = [
            [label, [[name, [_revision_plain(r) for r in files[name]]] for name in sorted(files)]]
            for label, files in sorted(self.labels.items())
        ]
        snapshots = [
            [
                s.id,
                s.name,
                s.label,
                s.created_ms,
                s.creator,
                [[f.label, _revision_plain(f.revision)] for f in s.files],
            ]
            for s in self.snapshots.values()
        ]
        return [labels, snapshots]

    @classmethod
    def from_plain(cls, value: object, config: FsMetaConfig | None = None) -> FsMeta:
        """Rebuild from :meth:`to_plain` data; anything off raises :class:`FsMetaRefused`."""
        meta = cls(config)
        labels, snapshots = _record(value, 2, "fsmeta")
        for item in _items(labels, "fsmeta.labels"):
            label, files = _record(item, 2, "fsmeta.labels[]")
            if not _items(files, f"fsmeta.labels[{label!r}]"):
                raise FsMetaRefused(f"label {label!r} has no files")
            for entry in _items(files, "fsmeta.files"):
                name, revisions = _record(entry, 2, "fsmeta.files[]")
                decoded = [_revision(r) for r in _items(revisions, "fsmeta.revisions")]
                if not decoded or any(r.name != name for r in decoded):
                    raise FsMetaRefused(f"file {name!r} under {label!r}: bad revisions")
                if meta.latest(str(label), str(name)) is not None:
                    raise FsMetaRefused(f"file {name!r} under {label!r} appears twice")
                for revision in decoded:
                    meta.labels.setdefault(check_label(label), {}).setdefault(
                        revision.name, []
                    ).append(revision)
                meta._files += 1
        for item in _items(snapshots, "fsmeta.snapshots"):
            sid, name, label, created, creator, files = _record(item, 6, "fsmeta.snapshots[]")
            if not (isinstance(sid, str) and isinstance(name, str) and name):
                raise FsMetaRefused("fsmeta.snapshots[]: bad id or name")
            if type(created) is not int or type(creator) is not bytes:
                raise FsMetaRefused("fsmeta.snapshots[]: bad time or creator")
            if sid in meta.snapshots or name in meta._snapshot_ids_by_name:
                raise FsMetaRefused(f"snapshot {sid} or {name!r} appears twice")
            entries = []
            for entry in _items(files, "fsmeta.snapshot files"):
                file_label, revision = _record(entry, 2, "fsmeta.snapshot file")
                entries.append(SnapshotFile(check_label(file_label), _revision(revision)))
            meta.snapshots[sid] = Snapshot(
                sid, name, check_label(label), created, creator, tuple(entries)
            )
            meta._snapshot_ids_by_name[name] = sid
        return meta


def _revision_plain(revision: Revision) -> list[Any]:
    return [
        revision.name,
        revision.size,
        revision.cid,
        revision.added_ms,
        revision.adder,
        list(revision.addrs),
    ]


def _revision(value: object) -> Revision:
    name, size, cid, added, adder, addrs = _record(value, 6, "revision")
    if type(size) is not int or size < 0 or type(added) is not int or type(adder) is not bytes:
        raise FsMetaRefused("revision: bad size, time or adder")
    addr_list = _items(addrs, "revision.addrs")
    if len(addr_list) > ADDRS_MAX or not all(isinstance(a, str) for a in addr_list):
        raise FsMetaRefused("revision: bad addresses")
    return Revision(check_name(name), size, check_cid(cid), added, adder, tuple(addr_list))


def _record(value: object, count: int, path: str) -> list[Any]:
    if type(value) is not list or len(value) != count:
        raise FsMetaRefused(f"{path}: expected a record of {count} fields")
    return value


def _items(value: object, path: str) -> list[Any]:
    if type(value) is not list:
        raise FsMetaRefused(f"{path}: expected a list")
    return value


# --- the ledger's commands ------------------------------------------------------------

FsCommand = AddFile | RemoveFile | RemoveLabel | CreateSnapshot | RemoveSnapshot
FS_COMMANDS: tuple[type, ...] = (AddFile, RemoveFile, RemoveLabel, CreateSnapshot, RemoveSnapshot)


def apply_command(meta: FsMeta, body: FsCommand, author: bytes, seq: int, now_ms: int) -> str:
    """Apply one metadata command for ``author``; its subject, or :class:`FsMetaRefused`."""
    match body:
        case AddFile():
            revision = Revision(body.name, body.size, body.cid, now_ms, author, body.addrs)
            meta.add_file(body.label, revision)
            return body.cid
        case RemoveFile():
            meta.remove_file(body.label, body.name)
            return body.label
        case RemoveLabel():
            meta.remove_label(body.label)
            return body.label
        case CreateSnapshot():
            sid = snapshot_id(author, seq, body.name)
            return meta.create_snapshot(sid, body.name, body.label, now_ms, author).id
        case RemoveSnapshot():
            return meta.remove_snapshot(body.snapshot).id
        case _:
            assert_never(body)
