"""The peer driver: colony gating, messaging, connections, and the embeddable :class:`Peer`.

Modules, each one job:

* :mod:`.gating` — the membership exchange on ``/colonymesh/membership/1.0.0``,
  refusal causes, the stream filter and handler guard, the sweeper that cuts
  lapsed or revoked members;
* :mod:`.messaging` — signed-envelope request/response and one-way messages
  (``/colonymesh/request/1.0.0``, ``/colonymesh/send/1.0.0``), deadlines,
  typed errors, the handler registry;
* :mod:`.framing` — varint length-prefixed, size-capped frames;
* :mod:`.connections` — one connection per peer, the cap, dial by peer id,
  exponential back-off with jitter, bootstrap keepers;
* :mod:`.sync` — revocations pulled on admission and pushed when learned;
* :mod:`.peer` — :class:`Peer` (``async with Peer.open(config)``) and
  :class:`SyncPeer` (a thread running trio, for programs without it);
* :mod:`.daemon` — what ``colonymesh node run`` runs.

All of it is a trio driver over :mod:`colonymesh.node.transport`; the parts
that need no I/O (judging a presentation, back-off, frame splitting) are
plain functions and classes taking ``now``.
"""
