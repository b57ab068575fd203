"""colonymesh: a peer-to-peer ColonyOS.

Every node is a peer: there is no central server. The parts live in
subpackages: ``colonymesh.node`` (identity, wire, transport, discovery, the
ledger, the peer and CLI), ``colonymesh.consensus`` (Raft), ``colonymesh.fs``
(the meta-filesystem), ``colonymesh.executors`` and ``colonymesh.simulations``.
"""

from typing import Any

from colonymesh._version import __version__

__all__ = ["PythonFunctions", "__version__", "connect", "connect_sync"]

_LAZY = {
    "connect": "colonymesh.node.sdk",
    "connect_sync": "colonymesh.node.sdk",
    "PythonFunctions": "colonymesh.executors.python",
}


def __getattr__(name: str) -> Any:
    """The SDK's entry points, imported on first use so ``import colonymesh`` stays cheap."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'colonymesh' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
