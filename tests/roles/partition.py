"""A test hook that cuts this OS process off the network, from a file's presence.

:func:`install` patches the transport of the process that calls it: while the
file named by ``$ROLES_PARTITION_FILE`` exists, every byte its established
connections receive or would send is dropped (a black hole: the peers see
silence, not a closed connection), new dials hang until their deadline and
inbound connections are closed at once. The executor lease test imports it
(through ``leasetasks``) in one executor process only; nothing else in the
colony is touched.
"""

from __future__ import annotations

import os
import time
from typing import Any

import trio

from colonymesh.node.transport import connection, host

_CHECK_EVERY_S = 0.02
_state = {"checked": 0.0, "blocked": False}


def blocked() -> bool:
    path = os.environ.get("ROLES_PARTITION_FILE", "")
    now = time.monotonic()
    if path and now - _state["checked"] >= _CHECK_EVERY_S:
        _state["checked"] = now
        _state["blocked"] = os.path.exists(path)
    return bool(path) and bool(_state["blocked"])


def install() -> None:
    if not os.environ.get("ROLES_PARTITION_FILE"):
        return
    feed = connection.Connection._feed
    flush = connection.Connection.flush
    serve_inbound = host.Host._serve_inbound
    open_tcp_stream = trio.open_tcp_stream

    def _feed(self: Any, data: memoryview) -> None:
        if not blocked():
            feed(self, data)

    async def _flush(self: Any) -> None:
        if blocked():
            while self.mux.has_output:
                self.mux.data_to_send()  # dropped on the floor
            return
        await flush(self)

    async def _serve(self: Any, raw: trio.SocketStream) -> None:
        if blocked():
            await raw.aclose()
            return
        await serve_inbound(self, raw)

    async def _open(*args: Any, **kwargs: Any) -> trio.SocketStream:
        while blocked():
            await trio.sleep(0.05)  # the SYN is lost; the dial's deadline ends it
        return await open_tcp_stream(*args, **kwargs)

    connection.Connection._feed = _feed  # type: ignore[method-assign]
    connection.Connection.flush = _flush  # type: ignore[method-assign]
    host.Host._serve_inbound = _serve  # type: ignore[method-assign]
    trio.open_tcp_stream = _open  # type: ignore[assignment]
