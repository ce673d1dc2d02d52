"""Prometheus metrics of the operator (served by `tradingstack run` on --metrics-port)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILE_DURATION = Histogram(
    "tradingstack_reconcile_duration_seconds",
    "Time of one reconcile pass of a stack.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
RECONCILE_ERRORS = Counter(
    "tradingstack_reconcile_errors_total", "Reconcile passes that ended in an error, by reason.", ["reason"]
)
CHILDREN_APPLIED = Counter(
    "tradingstack_children_applied_total", "Child objects written with server-side apply, by kind.", ["kind"]
)
CHILDREN_PRUNED = Counter("tradingstack_children_pruned_total", "Child objects deleted as no longer desired.", ["kind"])
STACKS = Gauge("tradingstack_stacks", "Stacks handled by this operator, by phase.", ["phase"])
