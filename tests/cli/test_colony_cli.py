"""Membership through the CLI, as a colony owner runs it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from colonymesh import __version__
from support.cli import fails, ok, run


def test_version() -> None:
    assert ok("--version").stdout.strip() == f"colonymesh {__version__}"


def test_create_admit_three_revoke_one(tmp_path: Path) -> None:
    colony = tmp_path / "lab"
    created = ok("colony", "create", "--dir", colony, "--name", "lab", "--json").json()
    assert len(created["colony_id"]) == 64
    assert stat.S_IMODE(os.stat(colony / "owner.key").st_mode) == 0o600

    members = {
        "server-1": ["--roles", "server"],
        "gpu-box": [
            "--roles",
            "executor",
            "--executor-type",
            "ml",
            "--cpu",
            "16",
            "--mem",
            "64Gi",
            "--gpu-name",
            "a100",
            "--gpu-count",
            "2",
            "--gpu-mem",
            "40Gi",
            "--location",
            "lab-1",
        ],
        "alice": ["--roles", "submitter,executor", "--executor-type", "edge", "--cpu", "500m"],
    }
    for name, options in members.items():
        key = tmp_path / f"{name}.key"
        new = ok("keys", "new", "--out", key, "--json").json()
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
        admitted = ok(
            "colony",
            "admit",
            "--dir",
            colony,
            "--key",
            f"{key}.pub",
            "--name",
            name,
            *options,
            "--json",
        ).json()
        assert admitted["peer_id"] == new["peer_id"]
        assert admitted["colony_id"] == created["colony_id"]

    for name in members:
        shown = ok("colony", "show", colony / "members" / f"{name}.cert", "--json").json()
        assert shown["valid"] is True
        assert shown["name"] == name
    gpu = ok("colony", "show", colony / "members" / "gpu-box.cert", "--json").json()
    assert gpu["roles"] == ["executor"]
    assert gpu["capabilities"]["cpu_millicores"] == 16000
    assert gpu["capabilities"]["mem_bytes"] == 64 * 2**30
    assert gpu["capabilities"]["gpu"] == {"name": "a100", "mem_bytes": 40 * 2**30, "count": 2}
    assert gpu["location"] == "lab-1"

    revoked = ok(
        "colony",
        "revoke",
        "--dir",
        colony,
        colony / "members" / "alice.cert",
        "--reason",
        "left the lab",
        "--json",
    ).json()
    assert revoked["revocations"] == 1
    error = fails("colony", "show", colony / "members" / "alice.cert")
    assert "alice.cert" in error and "revoked" in error
    ok("colony", "show", colony / "members" / "server-1.cert")
    assert "already revoked" in fails(
        "colony", "revoke", "--dir", colony, colony / "members" / "alice.cert"
    )
    summary = ok("colony", "show", colony, "--json").json()
    assert summary["revocations"] == 1 and len(summary["certificates"]) == 3


def test_certificate_of_another_colony_is_refused(tmp_path: Path) -> None:
    ok("colony", "create", "--dir", tmp_path / "ours", "--name", "ours")
    ok("colony", "create", "--dir", tmp_path / "theirs", "--name", "theirs")
    ok("keys", "new", "--out", tmp_path / "m.key")
    ok(
        "colony",
        "admit",
        "--dir",
        tmp_path / "theirs",
        "--key",
        tmp_path / "m.key.pub",
        "--name",
        "m",
        "--roles",
        "executor",
    )
    foreign = tmp_path / "theirs" / "members" / "m.cert"
    error = fails("colony", "show", foreign, "--colony", tmp_path / "ours")
    assert "m.cert" in error and "belongs to colony" in error
    ok("colony", "show", foreign, "--colony", tmp_path / "theirs")


def test_expired_certificate_is_refused(tmp_path: Path) -> None:
    ok("colony", "create", "--dir", tmp_path / "c", "--name", "c")
    ok("keys", "new", "--out", tmp_path / "k")
    ok(
        "colony",
        "admit",
        "--dir",
        tmp_path / "c",
        "--key",
        tmp_path / "k.pub",
        "--name",
        "brief",
        "--roles",
        "submitter",
        "--days",
        "0.000001",
    )
    assert "valid from" in fails("colony", "show", tmp_path / "c" / "members" / "brief.cert")


def test_key_file_with_wide_permissions_is_refused(tmp_path: Path) -> None:
    ok("colony", "create", "--dir", tmp_path / "c", "--name", "c")
    owner_key = tmp_path / "c" / "owner.key"
    owner_key.chmod(0o644)
    ok("keys", "new", "--out", tmp_path / "k")
    error = fails(
        "colony",
        "admit",
        "--dir",
        tmp_path / "c",
        "--key",
        tmp_path / "k.pub",
        "--name",
        "x",
        "--roles",
        "server",
    )
    assert str(owner_key) in error and "chmod 600" in error


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"not json", "corrupt"),
        (b'{"kind": "colonymesh.ed25519.secret", "seed": "zz"}', "seed"),
        (b"[]", "not a JSON object"),
    ],
)
def test_corrupt_key_file_is_refused(tmp_path: Path, content: bytes, expected: str) -> None:
    key = tmp_path / "bad.key"
    key.write_bytes(content)
    key.chmod(0o600)
    error = fails("colony", "create", "--dir", tmp_path / "c", "--name", "c", "--owner-key", key)
    assert str(key) in error and expected in error


def test_corrupt_certificate_is_refused(tmp_path: Path) -> None:
    ok("colony", "create", "--dir", tmp_path / "c", "--name", "c")
    bogus = tmp_path / "c" / "members" / "bogus.cert"
    bogus.write_bytes(b"\xa1\x61x\x01")
    error = fails("colony", "show", bogus)
    assert "bogus.cert" in error and "not a valid certificate" in error


def test_bad_arguments_are_one_line_errors(tmp_path: Path) -> None:
    ok("colony", "create", "--dir", tmp_path / "c", "--name", "c")
    ok("keys", "new", "--out", tmp_path / "k")
    base = ["colony", "admit", "--dir", tmp_path / "c", "--key", tmp_path / "k.pub", "--name", "n"]
    assert "unknown role" in fails(*base, "--roles", "king")
    assert "--cpu" in fails(*base, "--roles", "executor", "--cpu", "lots")
    assert "--mem" in fails(*base, "--roles", "executor", "--mem", "-1Gi")
    assert "no such" in fails("colony", "show", tmp_path / "missing.cert")
    assert "not empty" in fails("colony", "create", "--dir", tmp_path / "c", "--name", "again")
    assert run("colony", "bogus").code == 2
