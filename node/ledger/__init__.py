"""The colony ledger: the state machine Raft replicates among server peers.

``Ledger.apply(index, entry) -> events`` is its one entry point (see
``ledger.py``); ``commands`` are the signed envelope bodies it accepts,
``events`` what applying them caused, ``model`` the records it keeps and
``matching`` which executor may run which spec, ``fsmeta`` the meta-filesystem's
labels, file revisions and snapshots. Pure: no I/O, no clock.
"""
