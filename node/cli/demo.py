"""``colonymesh demo``: a local colony from embedded defaults, shown end to end.

Today it exercises the foundation: a colony is created in a temporary folder,
the default members (3 servers, 4 executors, a submitter) are given keys and
certificates, every member sends signed envelopes that every other member
verifies, one executor is revoked and its next envelope is refused. The demo
grows as the peer, the ledger and the executors land (see the issues).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from colonymesh.node.certs import (
    Capabilities,
    Certificate,
    Membership,
    Role,
    create_colony,
    encode_record,
    issue_certificate,
    revoke,
)
from colonymesh.node.cli.output import add_json_flag, emit
from colonymesh.node.colonyfiles import COLONY_FILE, MEMBERS_DIR, write_atomically
from colonymesh.node.envelope import EnvelopeOpener, EnvelopeSealer
from colonymesh.node.errors import WireError
from colonymesh.node.identity import KeyPair, Signer
from colonymesh.node.messages import Ping

DEFAULT_MEMBERS: list[tuple[str, tuple[Role, ...], str]] = [
    ("server-1", (Role.SERVER,), ""),
    ("server-2", (Role.SERVER,), ""),
    ("server-3", (Role.SERVER,), ""),
    ("exec-py-1", (Role.EXECUTOR,), "python"),
    ("exec-py-2", (Role.EXECUTOR,), "python"),
    ("exec-proc-1", (Role.EXECUTOR,), "process"),
    ("exec-proc-2", (Role.EXECUTOR,), "process"),
    ("app", (Role.SUBMITTER,), ""),
]


def register(commands: Any) -> None:
    demo = commands.add_parser("demo", help="bring up a local colony from embedded defaults")
    demo.add_argument("--keep", type=Path, help="keep the colony folder here instead of a temp dir")
    add_json_flag(demo)
    demo.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        return _run(args, args.keep, started)
    with tempfile.TemporaryDirectory(prefix="colonymesh-demo-") as directory:
        return _run(args, Path(directory), started)


def _run(args: argparse.Namespace, directory: Path, started: float) -> int:
    now = time.time()
    owner = KeyPair.generate()
    colony = create_colony(owner, "demo", int(now))
    write_atomically(directory / COLONY_FILE, encode_record(colony))
    (directory / MEMBERS_DIR).mkdir(exist_ok=True)
    membership = Membership(colony)
    signers: dict[str, Signer] = {}
    certificates: dict[str, Certificate] = {}
    for serial, (name, roles, executor_type) in enumerate(DEFAULT_MEMBERS, start=1):
        keys = KeyPair.generate()
        certificate = issue_certificate(
            owner,
            colony,
            keys.public_key,
            name=name,
            roles=roles,
            not_before=int(now) - 60,
            not_after=int(now) + 3600,
            serial=serial,
            executor_type=executor_type,
            capabilities=Capabilities(cpu_millicores=1000 * (os.cpu_count() or 1), mem_bytes=2**30),
        )
        write_atomically(directory / MEMBERS_DIR / f"{name}.cert", encode_record(certificate))
        membership.admit(certificate, now)
        signers[name], certificates[name] = Signer(keys), certificate

    accepted, refused = _exchange(membership, colony.colony_id, signers, now)
    revoked_name = "exec-proc-2"
    membership.add_revocation(
        revoke(owner, certificates[revoked_name], now=int(now), reason="demo")
    )
    opener = EnvelopeOpener(membership)
    refusal = ""
    try:
        opener.open(
            EnvelopeSealer(signers[revoked_name], colony.colony_id, now).seal(
                Ping(os.urandom(16)), now
            ),
            now,
        )
    except WireError as error:
        refusal = f"{type(error).__name__}: {error}"
    seconds = round(time.perf_counter() - started, 3)
    document = {
        "colony_id": colony.colony_id.hex(),
        "members": [
            {"name": n, "roles": [r.value for r in c.roles], "peer_id": c.peer_id}
            for n, c in certificates.items()
        ],
        "envelopes_accepted": accepted,
        "envelopes_refused": refused,
        "revoked": revoked_name,
        "revoked_envelope_refused": bool(refusal),
        "seconds": seconds,
    }
    lines = [f"colony 'demo' {colony.colony_id.hex()[:16]}… in {directory}"]
    lines += [
        f"  {name:<12} {', '.join(r.value for r in c.roles):<10} {c.executor_type or '-':<8} {c.peer_id}"
        for name, c in certificates.items()
    ]
    lines += [
        f"{accepted} signed envelopes exchanged between all members, all verified ({refused} refused)",
        f"revoked {revoked_name}; its next envelope: {refusal or 'ACCEPTED (this is a bug)'}",
        f"done in {seconds} s",
    ]
    emit(args, document, lines)
    return 0 if refusal and refused == 0 else 1


def _exchange(
    membership: Membership, colony_id: bytes, signers: dict[str, Signer], now: float
) -> tuple[int, int]:
    """Every member sends one envelope to every other; each receiver verifies it."""
    sealers = {name: EnvelopeSealer(signer, colony_id, now) for name, signer in signers.items()}
    openers = {name: EnvelopeOpener(membership) for name in signers}
    accepted = refused = 0
    for sender, sealer in sealers.items():
        for receiver, opener in openers.items():
            if receiver == sender:
                continue
            try:
                opener.open(sealer.seal(Ping(os.urandom(16)), now), now)
                accepted += 1
            except WireError:
                refused += 1
    return accepted, refused
