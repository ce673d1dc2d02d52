"""The chart's Grafana dashboard as the tests read it: its expressions, by row."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

DASHBOARD = (
    Path(__file__).resolve().parents[1]
    / "charts"
    / "tradingstack-operator"
    / "dashboards"
    / "tradingstack-operator.json"
)
REDIS_ROW = "Redis (spec.redis.metrics)"
POSTGRES_ROW = "PostgreSQL (spec.postgres.metrics)"
EXPORTER_METRIC = re.compile(r"\b(?:redis|pg)_[a-z_]+\b")
"""The names redis_exporter and postgres_exporter give their metrics."""


def panels() -> list[dict[str, Any]]:
    return list(json.loads(DASHBOARD.read_text())["panels"])


def row_expressions(title: str) -> list[str]:
    """The expressions of the panels under the (expanded) row `title`, up to the next row."""
    found: list[str] = []
    current = None
    for panel in panels():
        if panel["type"] == "row":
            current = panel["title"]
        elif current == title:
            found += [target["expr"] for target in panel["targets"]]
    return found


def exporter_metrics(title: str) -> set[str]:
    """The exporter metrics the row `title` reads."""
    return {name for expr in row_expressions(title) for name in EXPORTER_METRIC.findall(expr)}
