"""JSON documents of the meta-filesystem's metadata, for ``colony.fs_query``, the CLI and the SDK.

Shaped after ColonyOS's CFS: a file is ``{label, name, size, cid, added_ms,
adder, addrs, revisions}`` (its latest revision and how many it has); a
snapshot is ``{snapshotid, name, label, created_ms, creator, files}``. Peer
keys are shown as peer ids. A listing stops at ``FILES_MAX`` files and says
so with ``truncated``, so an answer always fits a view.
"""

from __future__ import annotations

from typing import Any

from colonymesh.node.identity import peer_id_of
from colonymesh.node.ledger.fsmeta import FsMeta, FsMetaRefused, Revision, Snapshot, check_label

FILES_MAX = 20_000
OPS = ("ls", "revisions", "labels", "snapshots", "snapshot", "refs")


def revision_view(label: str, revision: Revision) -> dict[str, Any]:
    return {
        "label": label,
        "name": revision.name,
        "size": revision.size,
        "cid": revision.cid,
        "added_ms": revision.added_ms,
        "adder": peer_id_of(revision.adder) if revision.adder else "",
        "addrs": list(revision.addrs),
    }


def snapshot_view(snapshot: Snapshot, *, files: bool = True) -> dict[str, Any]:
    view: dict[str, Any] = {
        "snapshotid": snapshot.id,
        "name": snapshot.name,
        "label": snapshot.label,
        "created_ms": snapshot.created_ms,
        "creator": peer_id_of(snapshot.creator) if snapshot.creator else "",
        "file_count": len(snapshot.files),
    }
    if files:
        view["files"] = [revision_view(f.label, f.revision) for f in snapshot.files[:FILES_MAX]]
        view["truncated"] = len(snapshot.files) > FILES_MAX
    return view


def answer(meta: FsMeta, op: str, label: str, name: str) -> dict[str, Any] | None:
    """The document ``op`` asks for; None when what it names does not exist (or is invalid)."""
    try:
        if label:
            check_label(label)
        return _answer(meta, op, label or "/", name)
    except FsMetaRefused:
        return None


def _answer(meta: FsMeta, op: str, label: str, name: str) -> dict[str, Any] | None:
    if op == "ls":
        files: list[dict[str, Any]] = []
        truncated = False
        for file_label, _, revisions in meta.files_under(label):
            if len(files) >= FILES_MAX:
                truncated = True
                break
            files.append({**revision_view(file_label, revisions[-1]), "revisions": len(revisions)})
        return {"label": label, "files": files, "truncated": truncated}
    if op == "revisions":
        revisions = meta.revisions(label, name)
        if not revisions:
            return None
        return {
            "label": label,
            "name": name,
            "revisions": [revision_view(label, r) for r in revisions],
        }
    if op == "labels":
        return {"labels": [{"label": n, "files": c} for n, c in meta.label_counts(label)]}
    if op == "snapshots":
        return {
            "snapshots": [
                snapshot_view(s, files=False)
                for s in meta.snapshots.values()
                if label == "/" or s.label == label
            ]
        }
    if op == "snapshot":
        snapshot = meta.snapshot(name)
        return snapshot_view(snapshot) if snapshot is not None else None
    if op == "refs":
        return {"cids": meta.referenced_cids()}
    return None
