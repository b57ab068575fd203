"""Sync planning: what to download and upload to make a local folder and a label agree.

Owns the decision, not the transfer. Both sides are given as maps from a
relative POSIX path (``sub/dir/name``) to the CID of the file's content (the
local side hashed by the driver, the remote side the latest revisions under
the label). ColonyOS's CFS rules:

* a file only on the remote side is downloaded; a file only on the local
  side is uploaded (as a new revision);
* a file on both sides with different content is a *conflict*: with
  ``keeplocal`` the local copy wins (uploaded as the newest revision), else
  the remote one does (downloaded over the local copy);
* equal content needs nothing.

``download`` / ``upload`` turn one direction off (a one-way sync); a
conflict whose winner's direction is off is left alone and reported.

Pure: no I/O; the result is sorted, so equal inputs give equal plans.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from colonymesh.fs.errors import FsUsageError

PATH_SEGMENTS_MAX = 64


@dataclass(frozen=True, slots=True)
class SyncPlan:
    downloads: tuple[tuple[str, str], ...]  # (path, cid) to fetch and write locally
    uploads: tuple[str, ...]  # local paths to add as new revisions
    conflicts: tuple[str, ...]  # paths whose content differed (resolved or left alone)
    unchanged: int

    @property
    def empty(self) -> bool:
        return not self.downloads and not self.uploads


def check_relpath(path: str) -> str:
    """``path`` if it is a relative POSIX path of plain segments, else :class:`FsUsageError`."""
    segments = path.split("/")
    if not path or len(segments) > PATH_SEGMENTS_MAX:
        raise FsUsageError(f"bad relative path {path!r}")
    if any(s in ("", ".", "..") for s in segments):
        raise FsUsageError(f"bad relative path {path!r}: empty, '.' or '..' segment")
    return path


def plan_sync(
    local: Mapping[str, str],
    remote: Mapping[str, str],
    *,
    keeplocal: bool,
    download: bool = True,
    upload: bool = True,
) -> SyncPlan:
    downloads: list[tuple[str, str]] = []
    uploads: list[str] = []
    conflicts: list[str] = []
    unchanged = 0
    for path in sorted(set(local) | set(remote)):
        check_relpath(path)
        mine, theirs = local.get(path), remote.get(path)
        if mine == theirs:
            unchanged += 1
        elif mine is None and theirs is not None:
            if download:
                downloads.append((path, theirs))
        elif theirs is None:
            if upload:
                uploads.append(path)
        else:
            conflicts.append(path)
            if keeplocal and upload:
                uploads.append(path)
            elif not keeplocal and download and theirs is not None:
                downloads.append((path, theirs))
    return SyncPlan(tuple(downloads), tuple(uploads), tuple(conflicts), unchanged)
