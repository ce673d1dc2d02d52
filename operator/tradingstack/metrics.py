"""Prometheus metrics of the operator (served by `tradingstack run` on --metrics-port)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import get_args

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tradingstack.api import TradingStackStatus
from tradingstack.api.status import HealthState

HEALTH_STATES: tuple[str, ...] = get_args(HealthState)

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


StackKey = tuple[str, str]
"""(namespace, stack)."""


class StackMetrics(Collector):
    """Per-stack series, read from each stack's last computed status at scrape time: a deleted stack's series
    disappear with it (`forget`), and nothing is kept that the status does not say."""

    def __init__(self) -> None:
        self._statuses: dict[StackKey, TradingStackStatus] = {}
        self._master_changes: dict[StackKey, int] = {}
        self._lock = threading.Lock()

    def update(self, key: StackKey, status: TradingStackStatus) -> None:
        with self._lock:
            before = self._statuses.get(key)
            changes = self._master_changes.setdefault(key, 0)
            if before is not None and before.redis.master and status.redis.master != before.redis.master:
                self._master_changes[key] = changes + 1
            self._statuses[key] = status

    def forget(self, key: StackKey) -> None:
        with self._lock:
            self._statuses.pop(key, None)
            self._master_changes.pop(key, None)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            statuses, changes = dict(self._statuses), dict(self._master_changes)
        families = {
            name: (CounterMetricFamily if counter else GaugeMetricFamily)(
                name.removesuffix("_total"), text, labels=["namespace", "stack", *extra]
            )
            for name, (counter, text, extra) in STACK_SERIES.items()
        }
        for key, status in sorted(statuses.items()):
            for name, labels, value in stack_samples(status, changes.get(key, 0)):
                families[name].add_metric([*key, *labels], value)
        yield from families.values()


STACK_SERIES: dict[str, tuple[bool, str, tuple[str, ...]]] = {
    "tradingstack_stack_condition": (False, "1 when the stack's condition is True, else 0.", ("condition",)),
    "tradingstack_service_ready_replicas": (False, "Ready pods of a service.", ("service",)),
    "tradingstack_service_desired_replicas": (False, "Desired pods of a service.", ("service",)),
    "tradingstack_service_health": (False, "1 for the service's health state, else 0.", ("service", "state")),
    "tradingstack_redis_master_changes_total": (True, "Redis master changes the operator followed.", ()),
    "tradingstack_redis_master_known": (False, "1 when the sentinels agree on a Redis master.", ()),
    "tradingstack_backup_last_success_timestamp_seconds": (False, "Time of the last successful backup.", ()),
    "tradingstack_backup_last_size_bytes": (False, "Size of the last successful backup.", ()),
    "tradingstack_backup_last_failed": (False, "1 when the last backup Job failed.", ()),
    "tradingstack_postgres_archive_lag_seconds": (
        False,
        "How long the oldest WAL segment not yet archived by pgBackRest has waited (0 when none waits).",
        (),
    ),
    "tradingstack_postgres_archive_failing": (
        False,
        "1 when the server's last archive_command failure came after its last success.",
        (),
    ),
    "tradingstack_postgres_recoverable_to_timestamp_seconds": (
        False,
        "Latest time a point-in-time restore is known to reach (the newest pgBackRest backup's end).",
        (),
    ),
    "tradingstack_postgres_leader_known": (
        False,
        "With postgres.instances > 1: 1 when the Patroni members report a leader, else 0.",
        (),
    ),
    "tradingstack_postgres_member_role": (
        False,
        "1 per Patroni member for its role (leader, sync_standby, replica).",
        ("member", "role"),
    ),
    "tradingstack_postgres_replication_lag_bytes": (
        False,
        "WAL bytes a Patroni replica is behind the leader (absent while Patroni does not know).",
        ("member",),
    ),
    "tradingstack_postgres_last_failover_timestamp_seconds": (
        False,
        "When the operator last saw the Patroni leader change, by whether it was a planned switchover.",
        ("planned",),
    ),
    "tradingstack_restart_last_failed": (False, "1 when the last restart run failed.", ()),
    "tradingstack_restart_next_run_timestamp_seconds": (False, "Time of the next scheduled restart run.", ()),
    "tradingstack_halted": (False, "1 while the stack is halted (spec.halt: haltable services stopped), else 0.", ()),
}
"""The per-stack series: name -> (counter?, help, labels after namespace and stack). docs/operating.md lists them."""

Sample = tuple[str, tuple[str, ...], float]


def _pitr_samples(status: TradingStackStatus) -> Iterator[Sample]:
    """Only what the pgBackRest Jobs have reported: an absent series is unknown, not healthy."""
    pitr = status.postgres.pitr
    if pitr is None:
        return
    if pitr.archive_lag_seconds is not None:
        yield "tradingstack_postgres_archive_lag_seconds", (), pitr.archive_lag_seconds
    if pitr.archive_failing is not None:
        yield "tradingstack_postgres_archive_failing", (), 1.0 if pitr.archive_failing else 0.0
    if pitr.recoverable_to is not None:
        yield "tradingstack_postgres_recoverable_to_timestamp_seconds", (), pitr.recoverable_to.timestamp()


def _patroni_samples(status: TradingStackStatus) -> Iterator[Sample]:
    """Only for a Patroni cluster whose members the operator read (a leader, one lost, or replicas)."""
    postgres = status.postgres
    if postgres.leader is None and postgres.leader_lost is None and not postgres.replicas:
        return
    yield "tradingstack_postgres_leader_known", (), 1.0 if postgres.leader else 0.0
    if postgres.leader is not None:
        yield "tradingstack_postgres_member_role", (postgres.leader, "leader"), 1.0
    for member in postgres.replicas:
        yield (
            "tradingstack_postgres_member_role",
            (member.name, "sync_standby" if member.synchronous else "replica"),
            1.0,
        )
        if member.lag_bytes is not None:
            yield "tradingstack_postgres_replication_lag_bytes", (member.name,), member.lag_bytes
    if (failover := postgres.last_failover) is not None:
        planned = "true" if failover.planned else "false"
        yield "tradingstack_postgres_last_failover_timestamp_seconds", (planned,), failover.time.timestamp()


def stack_samples(status: TradingStackStatus, master_changes: int) -> Iterator[Sample]:
    """The per-stack series of one status (pure: the collector adds the namespace and stack labels)."""
    for c in status.conditions:
        yield "tradingstack_stack_condition", (c.type,), 1.0 if c.status == "True" else 0.0
    for service, state in sorted(status.services.items()):
        yield "tradingstack_service_ready_replicas", (service,), state.ready
        yield "tradingstack_service_desired_replicas", (service,), state.desired
        for value in HEALTH_STATES:
            yield "tradingstack_service_health", (service, value), 1.0 if state.health == value else 0.0
    yield "tradingstack_redis_master_changes_total", (), master_changes
    if any(c.type == "RedisReady" and c.reason != "Disabled" for c in status.conditions):
        yield "tradingstack_redis_master_known", (), 1.0 if status.redis.master else 0.0
    if (backup := status.postgres.last_backup) is not None:
        yield "tradingstack_backup_last_success_timestamp_seconds", (), backup.time.timestamp()
        yield "tradingstack_backup_last_size_bytes", (), backup.size_bytes
    if status.postgres.last_backup_result is not None:
        yield "tradingstack_backup_last_failed", (), 1.0 if status.postgres.last_backup_result == "Failed" else 0.0
    yield from _pitr_samples(status)
    yield from _patroni_samples(status)
    if status.restarts.last_result is not None:
        yield "tradingstack_restart_last_failed", (), 1.0 if status.restarts.last_result == "Failed" else 0.0
    if status.restarts.next_run is not None:
        yield "tradingstack_restart_next_run_timestamp_seconds", (), status.restarts.next_run.timestamp()
    yield "tradingstack_halted", (), 1.0 if status.halt is not None else 0.0


STACK_METRICS = StackMetrics()
REGISTRY.register(STACK_METRICS)
