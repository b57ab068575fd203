"""Larger DHT populations (slow): hop counts against log2 N, lookups under churn.

Prints the figures it measured, e.g. `pytest -m slow -s tests/node/test_dht_scale.py`.
"""

from __future__ import annotations

import math
import random
import statistics
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_dht_network import Net

from colonymesh.node.dht.effects import DhtConfig, LookupFinished
from colonymesh.node.dht.ids import id_to_bytes, node_id_of


@pytest.mark.slow
@pytest.mark.parametrize("n", [500, 1500])
def test_lookup_hops_and_success_at_scale(n: int) -> None:
    net = Net(n, seed=n, config=DhtConfig(request_timeout_s=2.0))
    keys = list(net.nodes)
    net.join_all(keys[0])
    rng = random.Random(1)
    net.down = set(rng.sample(keys[1:], n // 5))  # 20% gone without a word
    live = [k for k in keys if k not in net.down]
    hops: list[int] = []
    ok = 0
    lookups = 200
    for _ in range(lookups):
        start, wanted = rng.sample(live, 2)
        op, out = net.nodes[start].find_node(id_to_bytes(node_id_of(wanted)), net.now)
        net.emit(net.nodes[start], out)
        net.run()
        (done,) = [e for e in net.last(start, LookupFinished) if e.op_id == op]
        ok += bool(done.closest) and done.closest[0].public_key == wanted
        hops.append(done.hops)
    median = statistics.median(hops)
    print(f"\nN={n}: success {ok}/{lookups}, median hops {median}, max {max(hops)}")
    assert ok >= 0.99 * lookups
    assert median <= 0.5 * math.log2(n)
