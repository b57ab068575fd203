"""Scenario tests: command scripts with the expected trace, in the style of etcd-io/raft's
``testdata/*.txt``.

Each file in ``scenarios/`` is a series of blocks separated by blank lines::

    # a comment
    command arg ...
    ----
    the expected output, one line per message sent, entry applied, status ...

Run with ``REWRITE_SCENARIOS=1`` to regenerate the expected output after an
intended behaviour change, then review the diff.

Commands: ``cluster 1 2 3 [learners=4,5] [extra=6] [pre_vote=false]
[check_quorum=false] [chunk=N] [inflight=N] [batch=N]``, ``campaign N``,
``propose N DATA``, ``propose-many N COUNT``, ``conf N add-voter|add-learner|remove M``,
``transfer N M``, ``read N CTX``, ``compact N``, ``deliver-msgs [to=N,M]
[drop=N,M]``, ``drop-msgs [to=N]``, ``process-ready``, ``stabilize``, ``elapse SECONDS``, ``tick N K``,
``run SECONDS``, ``partition 1,2 3``, ``heal``, ``crash N``, ``restart N``,
``status N``, ``log N``.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from colonymesh.consensus import ConfChange, ConfChangeOp, RaftConfig, RaftError
from colonymesh.consensus.messages import Message
from colonymesh.consensus.testing import Cluster, _show
from colonymesh.consensus.types import LogIndex, NodeId

SCENARIOS = Path(__file__).parent / "scenarios"
REWRITE = os.environ.get("REWRITE_SCENARIOS") == "1"


def _kv(args: list[str]) -> tuple[list[str], dict[str, str]]:
    pos = [a for a in args if "=" not in a]
    kv = dict(a.split("=", 1) for a in args if "=" in a)
    return pos, kv


class Runner:
    def __init__(self) -> None:
        self.cluster: Cluster | None = None

    @property
    def c(self) -> Cluster:
        if self.cluster is None:
            raise ValueError("no cluster: start with a 'cluster' command")
        return self.cluster

    def run(self, command: str) -> list[str]:
        words = command.split()
        name, args = words[0], words[1:]
        if name == "cluster":
            return self._cluster(args)
        c = self.c
        c.trace = []
        try:
            self._dispatch(name, args)
        except RaftError as exc:
            c.trace.append(f"error: {type(exc).__name__}: {exc}")
        out, c.trace = c.trace, None
        return out

    def _cluster(self, args: list[str]) -> list[str]:
        pos, kv = _kv(args)
        config = RaftConfig(
            pre_vote=kv.get("pre_vote", "true") == "true",
            check_quorum=kv.get("check_quorum", "true") == "true",
            snapshot_chunk_bytes=int(kv.get("chunk", 1 << 20)),
            max_inflight_msgs=int(kv.get("inflight", 256)),
            max_append_entries=int(kv.get("batch", 1024)),
        )
        learners = kv["learners"].split(",") if "learners" in kv else []
        extra = kv["extra"].split(",") if "extra" in kv else []
        self.cluster = Cluster(
            pos,
            lambda i: random.Random(f"scenario-{i}"),
            learners=learners,
            extra=extra,
            config=config,
        )
        self.cluster.process_all()  # persist and apply the bootstrap entries quietly
        return []

    def _dispatch(self, name: str, args: list[str]) -> None:
        c = self.c
        trace = c.trace
        assert trace is not None
        pos, kv = _kv(args)
        if name == "campaign":
            c.node(pos[0]).campaign(c.now)
        elif name == "propose":
            res = c.node(pos[0]).propose(pos[1].encode())
            trace.append(f"proposed at {res.term}/{res.index}")
        elif name == "propose-many":
            for k in range(int(pos[1])):
                c.node(pos[0]).propose(f"v{k}".encode())
        elif name == "conf":
            op = {
                "add-voter": ConfChangeOp.ADD_VOTER,
                "add-learner": ConfChangeOp.ADD_LEARNER,
                "remove": ConfChangeOp.REMOVE_NODE,
            }[pos[1]]
            res = c.node(pos[0]).propose_conf_change(ConfChange(op, NodeId(pos[2])))
            trace.append(f"proposed at {res.term}/{res.index}")
        elif name == "transfer":
            c.node(pos[0]).transfer_leadership(NodeId(pos[1]), c.now)
        elif name == "read":
            c.node(pos[0]).read_index(pos[1].encode())
        elif name == "compact":
            node = c.node(pos[0])
            machine = c.machines[NodeId(pos[0])]
            node.compact(LogIndex(machine.index), machine.snapshot())
            trace.append(f"compacted to {node.log.snapshot_index}")
        elif name == "process-ready":
            c.process_all()
        elif name == "deliver-msgs":
            c.process_all()
            to = set(kv["to"].split(",")) if "to" in kv else None
            drop = set(kv["drop"].split(",")) if "drop" in kv else set()

            def keep(m: Message) -> bool:
                if m.dst in drop:
                    trace.append(f"dropped {m.src}->{m.dst} {type(m).__name__}")
                    return False
                return True

            held = [m for m in c.network if to is not None and m.dst not in to]
            c.network = [m for m in c.network if to is None or m.dst in to]
            c.deliver_all(keep)
            c.network.extend(held)
        elif name == "drop-msgs":
            c.process_all()
            to = set(kv["to"].split(",")) if "to" in kv else None
            kept = [m for m in c.network if to is not None and m.dst not in to]
            trace.append(f"dropped {len(c.network) - len(kept)} messages")
            c.network = kept
        elif name == "stabilize":
            c.stabilize()
        elif name == "elapse":
            c.elapse(float(pos[0]))
        elif name == "tick":
            # Advance the clock by K heartbeat intervals, firing only node N's timers
            # (the others act as if paused; they catch up at the next elapse).
            node = c.node(pos[0])
            for _ in range(int(pos[1])):
                c.now += c.config.heartbeat_interval_s
                if node.next_deadline() <= c.now:
                    node.handle_timer(c.now)
        elif name == "run":
            saved, c.trace = c.trace, None
            c.run_for(float(pos[0]))
            c.trace = saved
            trace.append(f"ran {pos[0]}s; leader {c.leader()}")
        elif name == "partition":
            c.partition(*(g.split(",") for g in pos))
        elif name == "heal":
            c.heal()
        elif name == "crash":
            c.crash(pos[0])
        elif name == "restart":
            c.restart(pos[0])
        elif name == "status":
            for i in pos:
                s = c.node(i).status()
                trace.append(
                    f"{i}: {s.role.value} term={s.term} leader={s.leader} commit={s.commit} "
                    f"applied={s.applied} last={s.last_index} voters={','.join(s.conf.voters)}"
                    f" learners={','.join(s.conf.learners)}"
                )
        elif name == "log":
            log = c.node(pos[0]).log
            ents = log.slice(log.first_index(), log.last_index() + 1)
            shown = " ".join(f"{e.term}/{e.index}:{_show(e)}" for e in ents)
            trace.append(f"{pos[0]}: snap={log.snapshot_term}/{log.snapshot_index} [{shown}]")
        else:
            raise ValueError(f"unknown scenario command {name!r}")


def _parse(text: str) -> list[tuple[list[str], str, list[str]]]:
    """Blocks of (leading comment lines, command, expected output lines)."""
    blocks: list[tuple[list[str], str, list[str]]] = []
    for raw in text.strip("\n").split("\n\n"):
        lines = raw.split("\n")
        comments = [ln for ln in lines if ln.startswith("#")]
        body = [ln for ln in lines if not ln.startswith("#")]
        if not body:
            blocks.append((comments, "", []))
            continue
        if len(body) < 2 or body[1] != "----":
            raise ValueError(f"malformed block: {raw!r}")
        blocks.append((comments, body[0], body[2:]))
    return blocks


def _render(blocks: list[tuple[list[str], str, list[str]]]) -> str:
    parts = []
    for comments, command, output in blocks:
        lines = [*comments]
        if command:
            lines += [command, "----", *(output or ["ok"])]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.txt")), ids=lambda p: p.stem)
def test_scenario(path: Path) -> None:
    blocks = _parse(path.read_text())
    runner = Runner()
    actual = []
    for comments, command, _ in blocks:
        out = runner.run(command) if command else []
        actual.append((comments, command, out))
    if REWRITE:
        path.write_text(_render(actual))
        return
    for (_, command, expected), (_, _, got) in zip(blocks, actual, strict=True):
        assert (got or ["ok"]) == expected, f"{path.name}: {command}"


def test_scenarios_exist() -> None:
    assert len(list(SCENARIOS.glob("*.txt"))) >= 5
