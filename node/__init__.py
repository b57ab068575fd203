"""The peer: identity, certificates, the wire codec, transport, discovery, the ledger, API and CLI.

Importing this package is cheap on purpose; submodules are imported where used.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from colonymesh.node.peer.peer import Peer, PeerConfig, SyncPeer

__all__ = ["Peer", "PeerConfig", "SyncPeer"]


def __getattr__(name: str) -> Any:
    """``colonymesh.node.Peer`` and friends, imported on first use (keeps the package cheap)."""
    if name in __all__:
        from colonymesh.node.peer import peer

        return getattr(peer, name)
    raise AttributeError(f"module 'colonymesh.node' has no attribute {name!r}")
