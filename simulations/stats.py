"""Deterministic summaries of measured values for scenario figures: quantiles and histograms.

Pure functions over lists of numbers; results are rounded so that the JSON a
seed produces is byte-identical across runs and platforms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["distribution", "histogram", "quantile"]


def quantile(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile of already sorted values (nearest rank); NaN-free: 0.0 if empty."""
    if not ordered:
        return 0.0
    rank = max(0, math.ceil(q * len(ordered)) - 1)
    return float(ordered[min(rank, len(ordered) - 1)])


def distribution(values: Sequence[float], digits: int = 6) -> dict[str, float]:
    """median, p90, p99, max and mean of ``values`` (zeros when there are none)."""
    ordered = sorted(values)
    mean = sum(ordered) / len(ordered) if ordered else 0.0
    return {
        "median": round(quantile(ordered, 0.5), digits),
        "p90": round(quantile(ordered, 0.9), digits),
        "p99": round(quantile(ordered, 0.99), digits),
        "max": round(ordered[-1] if ordered else 0.0, digits),
        "mean": round(mean, digits),
    }


def histogram(values: Sequence[float], bins: int = 40) -> dict[str, list[float]]:
    """Equal-width bins from 0 to the largest value: ``edges`` (bins + 1) and ``counts``."""
    top = max(values, default=0.0)
    width = top / bins if top > 0 else 1.0
    counts = [0] * bins
    for v in values:
        counts[min(int(v / width), bins - 1)] += 1
    return {
        "edges": [round(i * width, 6) for i in range(bins + 1)],
        "counts": [float(c) for c in counts],
    }
