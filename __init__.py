"""colonymesh: a peer-to-peer ColonyOS.

Every node is a peer: there is no central server. The parts live in
subpackages: ``colonymesh.node`` (identity, wire, transport, discovery, the
ledger, the peer and CLI), ``colonymesh.consensus`` (Raft), ``colonymesh.fs``
(the meta-filesystem), ``colonymesh.executors`` and ``colonymesh.simulations``.
"""

from colonymesh._version import __version__

__all__ = ["__version__"]
