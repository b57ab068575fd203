"""A colony of `dhtproc` OS processes on loopback, all bootstrapped from the first one.

Each process gets its own folder (key, certificate, colony record), as separate
machines would. Commands go out as JSON lines on stdin; answers come back as
JSON lines on stdout, read with a deadline so a stuck process fails the caller
instead of hanging it.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from colonymesh.node.certs import Role, create_colony, encode_record, issue_certificate
from colonymesh.node.cli.profile import write_profile
from colonymesh.node.colonyfiles import COLONY_FILE
from colonymesh.node.identity import KeyPair, write_key_file

HERE = Path(__file__).parent


class Proc:
    def __init__(self, folder: Path, public_key: bytes, bootstrap: str | None) -> None:
        self.folder = folder
        self.public_key = public_key
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
        argv = [sys.executable, "-m", "dhtproc", str(folder)]
        if bootstrap is not None:
            argv += ["--bootstrap", bootstrap]
        self.log = (folder / "stderr.log").open("wb")
        self.process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, env=env
        )
        self._buffer = b""
        self.peer_id = ""
        self.addr = ""

    def send(self, command: dict[str, Any]) -> None:
        stdin = self.process.stdin
        if stdin is None:
            raise RuntimeError("no stdin")
        stdin.write((json.dumps(command) + "\n").encode())
        stdin.flush()

    def receive(self, timeout_s: float) -> dict[str, Any]:
        stdout = self.process.stdout
        if stdout is None:
            raise RuntimeError("no stdout")
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.folder.name}: no answer in {timeout_s} s")
            ready, _, _ = select.select([stdout], [], [], left)
            if ready:
                chunk = os.read(stdout.fileno(), 65536)
                if not chunk:
                    tail = (self.folder / "stderr.log").read_text()[-2000:]
                    raise RuntimeError(f"{self.folder.name} exited:\n{tail}")
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        answer: dict[str, Any] = json.loads(line)
        return answer

    def call(self, command: dict[str, Any], timeout_s: float = 30.0) -> dict[str, Any]:
        self.send(command)
        return self.receive(timeout_s)

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.send({"op": "quit"})
                self.process.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        self.log.close()


class ProcCluster:
    def __init__(self, root: Path, n: int) -> None:
        self.owner = owner = KeyPair.generate()
        now = int(time.time())
        self.colony = colony = create_colony(owner, "discovery", now - 7200)
        self.procs: list[Proc] = []
        try:
            for i in range(n):
                folder = root / f"p{i:02d}"
                folder.mkdir(parents=True)
                keys = KeyPair.generate()
                certificate = issue_certificate(
                    owner,
                    colony,
                    keys.public_key,
                    name=f"p{i:02d}",
                    roles=(Role.EXECUTOR,),
                    not_before=now - 3600,
                    not_after=now + 6 * 3600,
                    serial=i + 1,
                    executor_type="edge",
                )
                write_key_file(folder / "member.key", keys)
                (folder / "member.cert").write_bytes(encode_record(certificate))
                (folder / COLONY_FILE).write_bytes(encode_record(colony))
                bootstrap = self.procs[0].addr if self.procs else None
                proc = Proc(folder, keys.public_key, bootstrap)
                self.procs.append(proc)
                if i == 0:
                    self._ready(proc)
            for proc in self.procs[1:]:
                self._ready(proc)
        except BaseException:
            self.stop()
            raise

    def write_profile(self, directory: Path) -> None:
        """A client profile for a new member, bootstrapping from the first process."""
        now = int(time.time())
        keys = KeyPair.generate()
        certificate = issue_certificate(
            self.owner,
            self.colony,
            keys.public_key,
            name="operator",
            roles=(Role.SUBMITTER,),
            not_before=now - 3600,
            not_after=now + 6 * 3600,
            serial=1000,
        )
        write_profile(
            directory, encode_record(self.colony), keys, certificate, [self.procs[0].addr]
        )

    @staticmethod
    def _ready(proc: Proc) -> None:
        hello = proc.receive(60.0)
        proc.peer_id, proc.addr = hello["ready"], hello["addr"]

    def all(self, command: dict[str, Any], timeout_s: float = 60.0) -> list[dict[str, Any]]:
        """Send `command` to every process at once, then collect the answers in order."""
        for proc in self.procs:
            proc.send(command)
        return [proc.receive(timeout_s) for proc in self.procs]

    def wait_until(self, predicate: Any, timeout_s: float, what: str) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while True:
            stats = self.all({"op": "stats"})
            if predicate(stats):
                return stats
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out waiting for {what}: "
                    f"{[(s['contacts'], s['neighbours']) for s in stats]}"
                )
            time.sleep(0.25)

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()
