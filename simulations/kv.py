"""A replicated key-value workload for simulations: the state machine, its clients, their history.

What it owns:

* :class:`KvStore`, the deterministic state machine a replicated log drives:
  ``put`` and ``get`` commands with *client sessions* (Raft dissertation
  §6.3): each client numbers its operations, the store remembers the last
  number and response per client, so a command that is proposed twice (a
  retry, a duplicated message, a re-proposal after a leader change) takes
  effect at most once and the retry gets the original answer.
* :class:`KvClient`, a simulated client node: it runs one operation at a
  time against the servers over the simulated network, follows leader
  hints, retries the *same* numbered operation on timeout, and gives up
  after a bounded number of attempts (the outcome is then unknown).
* :class:`KvWorkload`, shared by the clients: the operation mix, the
  recorded history (invocation and completion in virtual time, with values)
  for the linearizability checker, and the acknowledged writes.

Writes carry unique values (``c<client>.<seq>``), so a read names the write
it saw. Reads go through the log too, which makes them linearizable.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from colonymesh.simulations.engine import NodeIO
from colonymesh.simulations.linearizability import KvInput, KvOperation, Operation


@dataclass(frozen=True, slots=True)
class ClientRequest:
    client: int
    seq: int
    op: str  # "put" | "get"
    key: str
    value: str | None


@dataclass(frozen=True, slots=True)
class ClientResponse:
    """``ok``: the operation was applied and ``value`` is its result; else retry at the hint."""

    client: int
    seq: int
    ok: bool
    value: str | None = None
    leader_hint: int = -1


class KvStore:
    """The state machine: a string map plus per-client sessions for at-most-once application."""

    __slots__ = ("data", "sessions")

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        # client -> (last applied seq, its response value)
        self.sessions: dict[int, tuple[int, str | None]] = {}

    @staticmethod
    def encode_command(req: ClientRequest) -> bytes:
        return json.dumps([req.client, req.seq, req.op, req.key, req.value]).encode()

    def apply(self, command: bytes) -> tuple[int, int, str | None] | None:
        """Apply one command; returns (client, seq, result), or None for a stale duplicate."""
        client, seq, op, key, value = json.loads(command)
        last = self.sessions.get(client)
        if last is not None and seq <= last[0]:
            return (client, seq, last[1]) if seq == last[0] else None
        if op == "put":
            self.data[key] = value
            result = None
        elif op == "get":
            result = self.data.get(key)
        else:
            raise ValueError(f"unknown kv command {op!r}")
        self.sessions[client] = (seq, result)
        return client, seq, result

    def cached(self, client: int, seq: int) -> tuple[bool, str | None]:
        """(True, result) if this client's ``seq`` was the last one applied here."""
        last = self.sessions.get(client)
        if last is not None and last[0] == seq:
            return True, last[1]
        return False, None

    def encode(self) -> bytes:
        """A canonical snapshot of the whole state."""
        sessions = {str(c): list(v) for c, v in sorted(self.sessions.items())}
        return json.dumps([self.data, sessions], sort_keys=True).encode()

    @classmethod
    def decode(cls, blob: bytes) -> KvStore:
        store = cls()
        if blob:
            data, sessions = json.loads(blob)
            store.data = dict(data)
            store.sessions = {int(c): (int(v[0]), v[1]) for c, v in sessions.items()}
        return store


@dataclass(slots=True)
class _Pending:
    call: float
    input: KvInput
    attempts: int
    deadline: float
    retarget: bool = True  # on the deadline, try another server (False after a redirect)


class KvWorkload:
    """What the clients share: servers to talk to, the op mix, and the recorded history."""

    __slots__ = (
        "acked_writes",
        "active",
        "attempts_max",
        "history",
        "keys",
        "put_fraction",
        "request_timeout_s",
        "servers",
        "think_s",
    )

    def __init__(
        self,
        servers: list[int],
        *,
        keys: int = 4,
        put_fraction: float = 0.5,
        think_s: float = 0.02,
        request_timeout_s: float = 0.5,
        attempts_max: int = 6,
    ) -> None:
        self.servers = servers
        self.keys = [f"k{i}" for i in range(keys)]
        self.put_fraction = put_fraction
        self.think_s = think_s
        self.request_timeout_s = request_timeout_s
        self.attempts_max = attempts_max
        self.active = True
        self.history: list[KvOperation] = []
        self.acked_writes: list[tuple[int, int]] = []  # (client, seq) of completed puts

    def ops_completed(self) -> int:
        return sum(1 for op in self.history if not math.isinf(op.ret))


class KvClient:
    """A simulated client node: one outstanding operation, retried until answered or given up."""

    def __init__(self, io: NodeIO, workload: KvWorkload, client_id: int) -> None:
        self.io = io
        self.workload = workload
        self.client_id = client_id
        self.seq = 0
        self.target = workload.servers[io.rng.randrange(len(workload.servers))]
        self.pending: _Pending | None = None
        self.next_op_at = 0.0
        self.completed_calls: list[float] = []  # invocation times of completed ops (liveness)

    def start(self, now: float) -> None:
        self.next_op_at = now + self.io.rng.uniform(0.0, self.workload.think_s)

    def next_deadline(self) -> float | None:
        if self.pending is not None:
            return self.pending.deadline
        return self.next_op_at if self.workload.active else None

    def fire(self, now: float) -> None:
        pending = self.pending
        if pending is None:
            if self.workload.active and now >= self.next_op_at:
                self._invoke(now)
            return
        if now < pending.deadline:
            return
        if pending.attempts >= self.workload.attempts_max:
            self._give_up()
            self.next_op_at = now + self.workload.think_s
            return
        if pending.retarget:
            self._pick_other_server()
        self._send(now)

    def deliver(self, src: int, msg: object, now: float) -> None:
        if not isinstance(msg, ClientResponse) or msg.client != self.client_id:
            raise TypeError(f"client {self.client_id} got an unexpected message {msg!r}")
        pending = self.pending
        if pending is None or msg.seq != self.seq:
            return  # a late answer to an operation already settled
        if msg.ok:
            self._complete(pending, msg.value, now)
            self.next_op_at = now + self.io.rng.uniform(0.0, self.workload.think_s)
            return
        if msg.leader_hint >= 0 and msg.leader_hint != src:
            self.target = msg.leader_hint
        else:
            self._pick_other_server()
        # Retry soon, but not in a tight loop while there is no leader.
        pending.retarget = False
        pending.deadline = min(pending.deadline, now + self.workload.think_s)

    # -- helpers ----------------------------------------------------------

    def _invoke(self, now: float) -> None:
        rng = self.io.rng
        w = self.workload
        self.seq += 1
        key = w.keys[rng.randrange(len(w.keys))]
        if rng.random() < w.put_fraction:
            inp = KvInput("put", key, f"c{self.client_id}.{self.seq}")
        else:
            inp = KvInput("get", key)
        self.pending = _Pending(now, inp, 0, now)
        self._send(now)

    def _send(self, now: float) -> None:
        pending = self.pending
        if pending is None:
            return
        pending.attempts += 1
        pending.retarget = True
        pending.deadline = now + self.workload.request_timeout_s
        inp = pending.input
        req = ClientRequest(self.client_id, self.seq, inp.op, inp.key, inp.value)
        self.io.send(self.target, req)

    def _pick_other_server(self) -> None:
        servers = self.workload.servers
        if len(servers) > 1:
            choice = servers[self.io.rng.randrange(len(servers) - 1)]
            self.target = servers[-1] if choice == self.target else choice

    def _complete(self, pending: _Pending, value: str | None, now: float) -> None:
        w = self.workload
        w.history.append(Operation(self.client_id, pending.call, now, pending.input, value))
        if pending.input.op == "put":
            w.acked_writes.append((self.client_id, self.seq))
        self.completed_calls.append(pending.call)
        self.pending = None

    def _give_up(self) -> None:
        pending = self.pending
        if pending is None:
            return
        self.workload.history.append(
            Operation(self.client_id, pending.call, math.inf, pending.input, None)
        )
        self.pending = None

    def finish(self) -> None:
        """End of the run: an operation still outstanding has an unknown outcome."""
        self._give_up()
