"""Drive a Ledger as Raft would: members seal commands, entries apply in order."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from colonymesh.node.certs import Capabilities, Gpu, Role, encode_record, issue_certificate
from colonymesh.node.envelope import EnvelopeSealer
from colonymesh.node.identity import KeyPair, Signer
from colonymesh.node.ledger.commands import SubmitFunction, SubmitWorkflow, Tick
from colonymesh.node.ledger.events import CommandApplied, CommandRefused, LedgerEvent
from colonymesh.node.ledger.ledger import Ledger
from support.colony import NOW, ColonyFixture, Member, make_colony

GENESIS_MS = NOW * 1000


def spec(funcname: str = "echo", executortype: str = "python", **extra: Any) -> dict[str, Any]:
    conditions = extra.pop("conditions", {})
    return {
        "funcname": funcname,
        "conditions": {"executortype": executortype, **conditions},
        **extra,
    }


@dataclass
class LedgerHarness:
    lab: ColonyFixture
    ledger: Ledger
    entries: list[bytes] = field(default_factory=list)
    sealers: dict[bytes, EnvelopeSealer] = field(default_factory=dict)

    @property
    def server(self) -> Member:
        return self.lab.members[0]

    @property
    def submitter(self) -> Member:
        return self.lab.members[2]

    def seal(self, member: Member, body: object) -> bytes:
        sealer = self.sealers.get(member.keys.public_key)
        if sealer is None:
            sealer = EnvelopeSealer(member.signer, self.lab.colony.colony_id, NOW)
            self.sealers[member.keys.public_key] = sealer
        return sealer.seal(body, NOW)

    def apply_entry(self, entry: bytes) -> list[LedgerEvent]:
        self.entries.append(entry)
        return self.ledger.apply(len(self.entries), entry)

    def run(self, member: Member, body: object) -> list[LedgerEvent]:
        return self.apply_entry(self.seal(member, body))

    def ok(self, member: Member, body: object) -> tuple[str, list[LedgerEvent]]:
        events = self.run(member, body)
        first = events[0]
        assert isinstance(first, CommandApplied), f"refused: {first}"
        return first.subject, events[1:]

    def refused(self, member: Member, body: object) -> str:
        events = self.run(member, body)
        assert len(events) == 1 and isinstance(events[0], CommandRefused), f"not refused: {events}"
        return events[0].reason

    def submit(self, body: dict[str, Any], member: Member | None = None) -> str:
        pid, _ = self.ok(member or self.submitter, SubmitFunction(json.dumps(body), os.urandom(16)))
        return pid

    def submit_workflow(self, specs: list[dict[str, Any]]) -> str:
        text = json.dumps({"colonyname": "", "functionspecs": specs})
        wid, _ = self.ok(self.submitter, SubmitWorkflow(text, os.urandom(16)))
        return wid

    def tick(self, seconds: float) -> list[LedgerEvent]:
        return self.run(self.server, Tick(self.ledger.now_ms + int(seconds * 1000)))

    def executor(
        self,
        name: str,
        executor_type: str = "python",
        *,
        cpu: int = 4000,
        mem: int = 8 * 2**30,
        gpus: int = 0,
        gpu_name: str = "",
        location: str = "",
        register: bool = True,
    ) -> Member:
        from colonymesh.node.ledger.commands import Admit, RegisterExecutor

        keys = KeyPair.generate()
        certificate = issue_certificate(
            self.lab.owner,
            self.lab.colony,
            keys.public_key,
            name=name,
            roles=[Role.EXECUTOR],
            not_before=NOW - 3600,
            not_after=NOW + 10 * 86400,
            serial=len(self.lab.members) + 100,
            executor_type=executor_type,
            location=location,
            capabilities=Capabilities(cpu, mem, 10 * 2**30, Gpu(gpu_name, 16 * 2**30, gpus)),
        )
        member = Member(keys, Signer(keys), certificate)
        self.lab.members.append(member)
        self.ok(member, Admit(encode_record(certificate)))
        if register:
            self.ok(member, RegisterExecutor(name))
        return member


def make_harness() -> LedgerHarness:
    lab = make_colony()
    ledger = Ledger(
        lab.colony, genesis_ms=GENESIS_MS, certificates=[m.certificate for m in lab.members]
    )
    return LedgerHarness(lab, ledger)
