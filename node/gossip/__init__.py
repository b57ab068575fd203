"""Epidemic broadcast for colonymesh as a sans-I/O core (gossipsub-v1.1-style mesh).

`GossipRouter` is fed messages, peer (dis)connections and ticks, and returns
effects; drivers (trio transport, simulator) carry them out.
"""
