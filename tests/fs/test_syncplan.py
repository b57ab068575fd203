"""Sync planning (pure) and the store's family-of-pins replacement."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from colonymesh.fs.errors import FsUsageError, StoreError
from colonymesh.fs.importer import import_bytes
from colonymesh.fs.store import ChunkStore
from colonymesh.fs.syncplan import check_relpath, plan_sync


def test_one_of_each_case() -> None:
    local = {"only-local": "L", "same": "S", "differs": "L2"}
    remote = {"only-remote": "R", "same": "S", "differs": "R2"}
    remote_wins = plan_sync(local, remote, keeplocal=False)
    assert remote_wins.downloads == (("differs", "R2"), ("only-remote", "R"))
    assert remote_wins.uploads == ("only-local",)
    assert remote_wins.conflicts == ("differs",) and remote_wins.unchanged == 1
    local_wins = plan_sync(local, remote, keeplocal=True)
    assert local_wins.downloads == (("only-remote", "R"),)
    assert local_wins.uploads == ("differs", "only-local")
    one_way = plan_sync(local, remote, keeplocal=True, upload=False)
    assert one_way.uploads == () and one_way.conflicts == ("differs",)


@pytest.mark.parametrize("path", ["", "/a", "a/", "a//b", "./a", "a/../b"])
def test_bad_relative_paths(path: str) -> None:
    with pytest.raises(FsUsageError):
        check_relpath(path)


PATHS = st.sampled_from(["a", "b", "d/c", "d/e/f"])
SIDE = st.dictionaries(PATHS, st.sampled_from(["x", "y", "z"]))


@given(SIDE, SIDE, st.booleans())
def test_applying_a_plan_makes_both_sides_agree(
    local: dict[str, str], remote: dict[str, str], keeplocal: bool
) -> None:
    plan = plan_sync(local, remote, keeplocal=keeplocal)
    after_local, after_remote = dict(local), dict(remote)
    for path, cid in plan.downloads:
        after_local[path] = cid
    for path in plan.uploads:
        after_remote[path] = local[path]
    assert after_local == after_remote
    assert set(plan.conflicts) == {p for p in local if p in remote and local[p] != remote[p]}
    assert plan_sync(after_local, after_remote, keeplocal=keeplocal).empty
    for path in plan.conflicts:  # the winner is the one asked for
        assert after_local[path] == (local[path] if keeplocal else remote[path])


def test_replace_pins_touches_only_its_family(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path, 1 << 20)
    a, b = (import_bytes(data)[0].cid for data in (b"a", b"b"))
    store.pin("other", [a])
    store.replace_pins("cfs:", {"cfs:a": [a], "cfs:b": [b]})
    assert set(store.pins()) == {"other", "cfs:a", "cfs:b"}
    store.replace_pins("cfs:", {"cfs:b": [b]})
    assert store.pins() == {"other": (a,), "cfs:b": (b,)}
    assert ChunkStore(tmp_path, 1 << 20).pins() == store.pins()  # durable
    with pytest.raises(StoreError):
        store.replace_pins("cfs:", {"x": [a]})
