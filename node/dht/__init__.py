"""Kademlia for colonymesh as sans-I/O cores: ids, routing table, iterative lookup, records.

`DhtNode` composes them; drivers (trio transport, simulator) feed it messages and
ticks and carry out the effects it returns. Nothing here does I/O or reads a clock.
"""
