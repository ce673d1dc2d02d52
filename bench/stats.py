"""Figures the benchmarks share."""

from __future__ import annotations

import statistics
from dataclasses import dataclass


def percentile(seconds: list[float], q: int) -> float:
    """The q-th percentile (inclusive method), or the only value of a single run."""
    if len(seconds) == 1:
        return seconds[0]
    return statistics.quantiles(seconds, n=100, method="inclusive")[q - 1]


@dataclass(frozen=True)
class Figures:
    """Seconds of repeated runs of one thing, as a table row: runs, p50, p95, each run."""

    label: str
    seconds: list[float]

    def percentile(self, q: int) -> float:
        return percentile(self.seconds, q)

    def row(self) -> str:
        runs = ", ".join(f"{s:.2f}" for s in self.seconds)
        return (
            f"| {self.label} | {len(self.seconds)} | {self.percentile(50):.2f} | {self.percentile(95):.2f} | {runs} |"
        )
