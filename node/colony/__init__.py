"""A colony at work: server peers replicating the ledger, members' client, executor runtime.

``server`` (Raft-replicated ledger and the handlers members use), ``client``
(proposals with leader following, reads, long-polls), ``worker`` (the
executor runtime), ``protocol`` (the messages between them), ``views`` (JSON
documents of records), ``local`` (a whole colony on loopback in one process).
"""
