"""The peer driver: colony gating, messaging, connections, and the embeddable :class:`Peer`.

Everything here is a trio driver over :mod:`colonymesh.node.transport`; the
decisions that need no I/O (who is admitted, back-off schedules, frame
decoding) live in small pure helpers next to the tasks that use them.
"""
