"""The local control channel between the CLI (or an app) and a running node.

A pyzmq REP socket, by default at ``ipc://STATE_DIR/control.sock``. One
request is one JSON object ``{"command": NAME, "args": {...}}``; one reply
is ``{"ok": true, "result": {...}}`` or ``{"ok": false, "error": "one line"}``.
Requests are capped at :data:`REQUEST_BYTES_MAX` (zmq drops larger ones).

pyzmq has no trio support, so :class:`ControlServer` owns its socket from a
single task and waits on the socket's ``zmq.FD`` with
:func:`trio.lowlevel.wait_readable`. That descriptor is edge-triggered and
only says "something changed": ``zmq.EVENTS`` is checked before every wait,
and the wait is re-armed only when no message is ready. Commands run inside
that task one at a time (REP is strictly request-reply), each bounded by a
timeout. The ipc socket file is removed when the server stops.

:func:`call` is the blocking client for the CLI: REQ with send/receive
timeouts and no linger, so a dead node gives a clear one-line error rather
than a hang.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio
import zmq

from colonymesh.node.errors import ColonymeshError, InputError

log = logging.getLogger("colonymesh.node.control")

REQUEST_BYTES_MAX = 64 * 1024
COMMAND_TIMEOUT_S = 30.0
IPC_PATH_BYTES_MAX = 100  # sun_path is 108 bytes on Linux, with room for libzmq

Command = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class ControlError(ColonymeshError):
    """The control channel failed: no node answering, or it refused the command."""


def ipc_path(address: str) -> Path | None:
    return Path(address[len("ipc://") :]) if address.startswith("ipc://") else None


def check_address(address: str) -> None:
    path = ipc_path(address)
    if path is not None and len(os.fsencode(str(path))) > IPC_PATH_BYTES_MAX:
        raise InputError(
            f"control socket path {path} is too long for a unix socket "
            f"(> {IPC_PATH_BYTES_MAX} bytes); choose a shorter state_dir or [control] address"
        )


class ControlServer:
    """Serves commands on a zmq REP socket from one task (see the module docs)."""

    def __init__(self, address: str, commands: dict[str, Command]) -> None:
        check_address(address)
        self.address = address
        self._commands = commands
        self.served = 0

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        context = zmq.Context()
        socket = context.socket(zmq.REP)
        path = ipc_path(self.address)
        try:
            socket.setsockopt(zmq.LINGER, 0)
            socket.setsockopt(zmq.MAXMSGSIZE, REQUEST_BYTES_MAX)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                await trio.to_thread.run_sync(_remove_stale_socket, path)
            try:
                socket.bind(self.address)
            except zmq.ZMQError as error:
                raise ControlError(f"cannot bind control socket {self.address}: {error}") from None
            if path is not None:
                os.chmod(path, 0o600)  # the control channel is the node's owner's only
            task_status.started()
            while True:
                request = await _receive(socket)
                reply = await self._handle(request)
                await _send(socket, json.dumps(reply).encode())
        finally:
            # trio may still have the descriptor registered; tell it before zmq closes it.
            trio.lowlevel.notify_closing(_int_option(socket, zmq.FD))
            socket.close(linger=0)
            context.term()
            if path is not None:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    async def _handle(self, request: bytes) -> dict[str, Any]:
        try:
            document = json.loads(request)
        except (ValueError, UnicodeDecodeError):
            return {"ok": False, "error": "request is not JSON"}
        if not isinstance(document, dict) or not isinstance(document.get("command"), str):
            return {"ok": False, "error": 'expected {"command": NAME, "args": {...}}'}
        name = document["command"]
        args = document.get("args") or {}
        command = self._commands.get(name)
        if command is None:
            return {"ok": False, "error": f"unknown command {name!r}"}
        if not isinstance(args, dict):
            return {"ok": False, "error": "args must be an object"}
        self.served += 1
        try:
            with trio.fail_after(COMMAND_TIMEOUT_S):
                return {"ok": True, "result": await command(args)}
        except trio.TooSlowError:
            return {"ok": False, "error": f"{name} took longer than {COMMAND_TIMEOUT_S:g} s"}
        except ColonymeshError as error:
            return {"ok": False, "error": str(error)}
        except Exception as error:  # a command's bug must not take the channel down
            log.exception("control command %s failed", name)
            return {"ok": False, "error": f"internal error: {type(error).__name__}: {error}"}


def _remove_stale_socket(path: Path) -> None:
    """Remove a socket file left by a node that died, but never a live node's."""
    if not path.exists():
        return
    try:
        call(f"ipc://{path}", "ping", timeout_s=0.5)
    except ControlError:
        path.unlink()
        return
    raise ControlError(f"another node already serves {path}")


def _int_option(socket: zmq.Socket[bytes], option: int) -> int:
    value = socket.getsockopt(option)
    if not isinstance(value, int):
        raise ControlError(f"zmq option {option} is not an integer")
    return value


async def _wait(socket: zmq.Socket[bytes], flag: int) -> None:
    # Edge-triggered: the FD fires on a change, so look at EVENTS before waiting.
    fd = _int_option(socket, zmq.FD)
    while not _int_option(socket, zmq.EVENTS) & flag:
        await trio.lowlevel.wait_readable(fd)


async def _receive(socket: zmq.Socket[bytes]) -> bytes:
    while True:
        await _wait(socket, zmq.POLLIN)
        try:
            return socket.recv(zmq.NOBLOCK)
        except zmq.Again:
            continue


async def _send(socket: zmq.Socket[bytes], data: bytes) -> None:
    while True:
        await _wait(socket, zmq.POLLOUT)
        try:
            socket.send(data, zmq.NOBLOCK)
            return
        except zmq.Again:
            continue


def call(
    address: str, command: str, args: dict[str, Any] | None = None, *, timeout_s: float = 5.0
) -> dict[str, Any]:
    """Send one command to the node at ``address``; its result, or ``ControlError``."""
    path = ipc_path(address)
    if path is not None and not path.exists():
        raise ControlError(f"no node is running here (no control socket at {path})")
    context = zmq.Context()
    socket = context.socket(zmq.REQ)
    try:
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.SNDTIMEO, int(timeout_s * 1000))
        socket.setsockopt(zmq.RCVTIMEO, int(timeout_s * 1000))
        socket.connect(address)
        socket.send(json.dumps({"command": command, "args": args or {}}).encode())
        raw = socket.recv()
    except zmq.Again:
        raise ControlError(f"no answer from the node at {address} within {timeout_s:g} s") from None
    except zmq.ZMQError as error:
        raise ControlError(f"control channel {address}: {error}") from None
    finally:
        socket.close(linger=0)
        context.term()
    try:
        reply = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ControlError(f"the node at {address} answered something that is not JSON") from None
    if not isinstance(reply, dict):
        raise ControlError(f"the node at {address} answered {reply!r}")
    if not reply.get("ok"):
        raise ControlError(f"{command}: {reply.get('error', 'failed')}")
    result = reply.get("result")
    return result if isinstance(result, dict) else {}
