"""The peer: identity, certificates, the wire codec, transport, discovery, the ledger, API and CLI.

Importing this package is cheap on purpose; submodules are imported where used.
"""
