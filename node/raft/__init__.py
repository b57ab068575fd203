"""Raft on the colony's transport: the wire codec of consensus messages and the trio driver."""
