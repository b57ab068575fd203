"""Settings of the transport driver (timeouts, caps, sizes), with their reasons."""

from __future__ import annotations

from dataclasses import dataclass, field

from colonymesh import __version__
from colonymesh.node.transport.yamux import YamuxConfig


@dataclass(frozen=True, slots=True)
class TransportConfig:
    dial_timeout_s: float = 10.0
    # TCP connect to yamux ready; bounds what a silent or slow-loris peer can hold.
    upgrade_timeout_s: float = 10.0
    # Per-stream protocol negotiation.
    negotiate_timeout_s: float = 10.0
    # A socket write making no progress this long means the peer stopped reading.
    write_timeout_s: float = 30.0
    # Bytes asked of the socket per read; large reads amortise per-call overhead.
    receive_bytes: int = 256 * 1024
    # Answers the peer provoked (ping ACKs, RSTs) queued before we stop reading it.
    control_backlog_bytes: int = 1024 * 1024
    connections_max: int = 512
    # Inbound connections still in their handshake; the rest wait in the kernel backlog.
    handshakes_max: int = 64
    agent_version: str = f"colonymesh/{__version__}"
    yamux: YamuxConfig = field(default_factory=YamuxConfig)
