"""Interop with the reference libp2p stacks: js-libp2p 3.3 (pinned in interop/package-lock.json)
and py-libp2p 0.8.1 (its own venv, made by interop/setup.sh). Both directions each: they dial
us, we dial them; Noise + Yamux, identify and ping must succeed either way.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trio

from colonymesh.node.identity import KeyPair
from colonymesh.node.transport.host import Host

pytestmark = pytest.mark.interop

HERE = Path(__file__).parent / "interop"
VENV = Path(os.environ.get("COLONYMESH_INTEROP_VENV", "/work/interop-venv"))
KEYS = KeyPair.from_seed(b"\x42" * 32)


@pytest.fixture(scope="session")
def node_binary() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        if os.environ.get("CI"):  # CI must prove interop, not skip it
            pytest.fail("node/npm not installed: js-libp2p interop cannot run")
        pytest.skip("node/npm not installed: js-libp2p interop cannot run")
    if not (HERE / "node_modules" / "libp2p").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=HERE, check=True, timeout=600)
    return node


@pytest.fixture(scope="session")
def py_libp2p_python() -> str:
    subprocess.run(["bash", str(HERE / "setup.sh")], check=True, timeout=900)
    return str(VENV / "bin" / "python")


async def _lines(
    process: trio.Process, until: Any, timeout_s: float = 30.0
) -> list[dict[str, Any]]:
    """JSON reports from ``process`` until ``until(reports)`` holds."""
    reports: list[dict[str, Any]] = []
    buffer = b""
    if process.stdout is None:
        raise AssertionError("no stdout pipe")
    with trio.fail_after(timeout_s):
        while not until(reports):
            chunk = await process.stdout.receive_some()
            if not chunk:
                break
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            reports += [json.loads(line) for line in complete if line.startswith(b"{")]
    return reports


def _events(reports: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in reports if r.get("event") == kind]


async def _they_dial_us(command: list[str]) -> tuple[list[dict[str, Any]], Host]:
    async with Host.open(KEYS) as host:
        address = (await host.listen("127.0.0.1", 0))[0] + "/p2p/" + host.peer_id
        with trio.fail_after(60):
            result = await trio.run_process(
                [*command, "dial", address],
                cwd=HERE,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
        reports = [json.loads(x) for x in result.stdout.splitlines() if x.startswith(b"{")]
        assert result.returncode == 0, (reports, result.stderr.decode()[-3000:])
        assert host.stats.accepted >= 1 and host.stats.failed_upgrades == 0
        return reports, host


async def _we_dial_them(command: list[str], agent_prefix: str) -> list[dict[str, Any]]:
    async with Host.open(KEYS) as host, trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            lambda task_status: trio.run_process(
                [*command, "listen"],
                cwd=HERE,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                check=False,
                task_status=task_status,
            )
        )
        try:
            listening = _events(
                await _lines(process, lambda r: _events(r, "listening")), "listening"
            )
            address = next(a for a in listening[0]["addrs"] if "/tcp/" in a)
            if "/p2p/" not in address:
                address += "/p2p/" + listening[0]["peer"]
            connection = await host.dial_addr(address)  # the /p2p/ part pins their key
            assert connection.remote_peer_id == listening[0]["peer"]
            info = await host.identify(connection)
            assert info.agent_version.startswith(agent_prefix)
            assert "/ipfs/ping/1.0.0" in info.protocols
            assert info.public_key == connection.remote_public_key
            assert 0 < await host.ping(connection) < 5
            # and they identify and ping us over the same connection
            reports = await _lines(process, lambda r: _events(r, "ping") or _events(r, "error"))
            assert not _events(reports, "error"), reports
            return reports
        finally:
            process.terminate()


async def test_js_libp2p_dials_us(node_binary: str) -> None:
    reports, host = await _they_dial_us([node_binary, "peer.mjs"])
    identify = _events(reports, "identify")
    assert identify and identify[0]["peer"] == host.peer_id
    assert identify[0]["agentVersion"].startswith("colonymesh/")
    assert "/ipfs/ping/1.0.0" in identify[0]["protocols"]
    assert _events(reports, "ping")


async def test_we_dial_js_libp2p(node_binary: str) -> None:
    reports = await _we_dial_them([node_binary, "peer.mjs"], "js-libp2p/")
    identify = _events(reports, "identify")
    assert identify and identify[0]["peer"] == KEYS.peer_id
    assert _events(reports, "ping")[0]["peer"] == KEYS.peer_id


async def test_py_libp2p_dials_us(py_libp2p_python: str) -> None:
    reports, host = await _they_dial_us([py_libp2p_python, "py_peer.py"])
    identify = _events(reports, "identify")
    assert identify and identify[0]["peer"] == host.peer_id
    assert identify[0]["agentVersion"].startswith("colonymesh/")
    assert len(_events(reports, "ping")[0]["rtts"]) == 3


async def test_we_dial_py_libp2p(py_libp2p_python: str) -> None:
    reports = await _we_dial_them([py_libp2p_python, "py_peer.py"], "py-libp2p/")
    identify = _events(reports, "identify")
    assert identify and identify[0]["peer"] == KEYS.peer_id
    assert len(_events(reports, "ping")[0]["rtts"]) == 3
