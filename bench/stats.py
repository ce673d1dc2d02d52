"""Figures the benchmarks share."""

from __future__ import annotations

import statistics


def percentile(seconds: list[float], q: int) -> float:
    """The q-th percentile (inclusive method), or the only value of a single run."""
    if len(seconds) == 1:
        return seconds[0]
    return statistics.quantiles(seconds, n=100, method="inclusive")[q - 1]
