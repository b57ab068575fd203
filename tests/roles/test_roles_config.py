"""``[colony]`` and ``[executor]`` in node.toml, and how a node's roles are derived from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from colonymesh.node.certs import Role, create_colony, encode_record, issue_certificate
from colonymesh.node.colony.roles import (
    RoleError,
    executor_kind,
    founding_certificates,
    genesis_ms,
    load_functions,
    server_config,
)
from colonymesh.node.colonyfiles import MEMBERS_DIR
from colonymesh.node.config import ColonySettings, default_config_text, parse_config
from colonymesh.node.errors import InputError
from colonymesh.node.identity import KeyPair
from support.cli import ok

BASE = '[node]\nkey = "k"\ncolony = "c"\n'


def _parse(text: str) -> object:
    return parse_config(Path("/etc/node.toml"), BASE + text)


def test_colony_section_parses_with_defaults() -> None:
    config = parse_config(Path("/etc/node.toml"), BASE + '[colony]\nservers = ["a", "b", "c"]\n')
    assert config.colony_settings == ColonySettings(servers=("a", "b", "c"))
    assert parse_config(Path("/etc/node.toml"), BASE).colony_settings is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[colony]\n", "[colony] servers: required"),
        ('[colony]\nservers = ["a", "a"]\n', "lists a peer id twice"),
        ('[colony]\nservers = ["a"]\nheartbeat_interval_s = 1.0\n', "heartbeat_interval_s"),
        ('[colony]\nservers = ["a"]\nvoters = 3\n', "[colony] voters: unknown key"),
        ('[colony]\nservers = "a"\n', "expected a list"),
        ('[executor]\nkind = "cobol"\n', "[executor] kind: expected one of"),
        ("[executor]\nconcurrency = 0\n", "[executor] concurrency: must be positive"),
    ],
)
def test_colony_and_executor_defects_name_the_key(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        _parse(text)


def test_node_init_writes_a_colony_section_that_loads(tmp_path: Path) -> None:
    text = default_config_text("k", "c", "n.cert", "/ip4/127.0.0.1/tcp/1", [], ["x", "y", "z"])
    assert parse_config(tmp_path / "n.toml", text).colony_settings == ColonySettings(
        servers=("x", "y", "z")
    )
    out = tmp_path / "s.toml"
    ok(
        "node",
        "init",
        "--out",
        out,
        "--key",
        "k",
        "--colony",
        "c",
        "--server",
        "p1",
        "--server",
        "p2",
    )
    assert 'servers = ["p1", "p2"]' in out.read_text()


def _colony(tmp_path: Path) -> tuple[KeyPair, object, Path]:
    owner = KeyPair.generate()
    colony = create_colony(owner, "lab", 1_700_000_000)
    folder = tmp_path / "lab"
    (folder / MEMBERS_DIR).mkdir(parents=True)
    return owner, colony, folder


def _admit(
    owner: KeyPair,
    colony: object,
    folder: Path,
    name: str,
    role: Role,
    keys: KeyPair | None = None,
    **kw: int,
) -> str:
    keys = keys or KeyPair.generate()
    certificate = issue_certificate(
        owner,
        colony,  # type: ignore[arg-type]
        keys.public_key,
        name=name,
        roles=[role],
        not_before=kw.get("not_before", 1_700_000_000),
        not_after=2_000_000_000,
        serial=kw.get("serial", 1),
    )
    (folder / MEMBERS_DIR / f"{name}-{certificate.serial}.cert").write_bytes(
        encode_record(certificate)
    )
    return keys.peer_id


def test_founding_certificates_come_from_members(tmp_path: Path) -> None:
    owner, colony, folder = _colony(tmp_path)
    a = _admit(owner, colony, folder, "a", Role.SERVER, not_before=1_700_000_500)
    b = _admit(owner, colony, folder, "b", Role.SERVER)
    _admit(owner, colony, folder, "e", Role.EXECUTOR)
    settings = ColonySettings(servers=(a, b))
    found = founding_certificates(settings, folder, colony)  # type: ignore[arg-type]
    assert [c.peer_id for c in found] == [a, b]
    assert genesis_ms(colony, found) == 1_700_000_500_000  # type: ignore[arg-type]
    config = server_config(settings, tmp_path / "state", folder, colony)  # type: ignore[arg-type]
    assert config.state_dir == tmp_path / "state" / "ledger"
    assert config.founding_servers == (a, b)


def test_a_missing_or_roleless_server_certificate_is_refused(tmp_path: Path) -> None:
    owner, colony, folder = _colony(tmp_path)
    a = _admit(owner, colony, folder, "a", Role.SERVER)
    with pytest.raises(RoleError, match="no certificate for server nobody"):
        founding_certificates(ColonySettings(servers=(a, "nobody")), folder, colony)  # type: ignore[arg-type]
    e = _admit(owner, colony, folder, "e", Role.EXECUTOR)
    with pytest.raises(RoleError, match="lacks the role"):
        founding_certificates(ColonySettings(servers=(a, e)), folder, colony)  # type: ignore[arg-type]


def test_load_functions_and_kinds_refuse_clearly() -> None:
    with pytest.raises(RoleError, match="expected MODULE:ATTR"):
        load_functions("roletasks")
    with pytest.raises(RoleError, match="cannot import"):
        load_functions("no_such_module_here:functions")
    with pytest.raises(RoleError, match="not a colonymesh PythonFunctions registry"):
        load_functions("roletasks:json")
    assert "work" in load_functions("roletasks:functions").functions()
    with pytest.raises(RoleError, match=r"take --executor-config FILE with a \[slurm\] section"):
        executor_kind("slurm", "")
    with pytest.raises(RoleError, match="needs --functions"):
        executor_kind("python", "")


def test_the_genesis_is_pinned_at_the_first_start(tmp_path: Path) -> None:
    owner, colony, folder = _colony(tmp_path)
    a_keys = KeyPair.generate()
    a = _admit(owner, colony, folder, "a", Role.SERVER, a_keys)
    b = _admit(owner, colony, folder, "b", Role.SERVER)
    settings = ColonySettings(servers=(a, b))
    first = server_config(settings, tmp_path / "state", folder, colony)  # type: ignore[arg-type]
    assert (tmp_path / "state" / "ledger" / "genesis.cbor").is_file()
    # A renewed certificate of a later date in members/ must not move a founded ledger.
    _admit(owner, colony, folder, "a", Role.SERVER, a_keys, not_before=1_700_009_000, serial=7)
    fresh = founding_certificates(settings, folder, colony)  # type: ignore[arg-type]
    assert fresh != first.founding_certificates  # read anew, the renewal would be chosen
    again = server_config(settings, tmp_path / "state", folder, colony)  # type: ignore[arg-type]
    assert again.founding_certificates == first.founding_certificates
    assert again.genesis_ms == first.genesis_ms
    with pytest.raises(RoleError, match="founded by other servers"):
        server_config(ColonySettings(servers=(b, a)), tmp_path / "state", folder, colony)  # type: ignore[arg-type]
    (tmp_path / "state" / "ledger" / "genesis.cbor").write_bytes(b"junk")
    with pytest.raises(RoleError, match="corrupt genesis record"):
        server_config(settings, tmp_path / "state", folder, colony)  # type: ignore[arg-type]
