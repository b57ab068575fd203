"""Raft as a generic, sans-I/O state machine over opaque commands, and its durable log store."""
