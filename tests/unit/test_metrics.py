"""Per-stack metrics: series from the last status of each stack, gone when the stack is."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tradingstack.api import TradingStackStatus
from tradingstack.metrics import STACK_SERIES, StackMetrics


def status(master: str | None, health: str = "HEALTHY") -> TradingStackStatus:
    return TradingStackStatus.model_validate(
        {
            "phase": "Ready",
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "AllComponentsReady", "message": "",
                 "lastTransitionTime": "2026-12-02T05:00:00Z"},
                {"type": "RedisReady", "status": "True", "reason": "Ready", "message": "3/3 pods ready",
                 "lastTransitionTime": "2026-12-02T05:00:00Z"},
            ],
            "services": {"api": {"ready": 2, "desired": 3, "health": health}},
            "redis": {"master": master},
            "postgres": {"lastBackupResult": "Failed", "lastBackup": {"time": "2026-12-02T04:00:00Z",
                         "name": "b", "sizeBytes": 1234, "checksum": "sha256:0", "verified": True},
                         "pitr": {"archiveLagSeconds": 2.5, "archiveFailing": False,
                                  "recoverableTo": "2026-12-02T04:30:00Z"},
                         "leader": "qt-postgres-1",
                         "replicas": [{"name": "qt-postgres-0", "state": "running", "lagBytes": 4096},
                                      {"name": "qt-postgres-2", "state": "running", "synchronous": True}],
                         "lastFailover": {"time": "2026-12-02T04:30:00Z", "from": "qt-postgres-0",
                                          "to": "qt-postgres-1", "planned": True}},
            "restarts": {"lastResult": "Succeeded", "nextRun": "2026-12-03T05:00:00Z"},
        }
    )  # fmt: skip


def scrape(metrics: StackMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    registry = CollectorRegistry()
    registry.register(metrics)
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for sample in family.samples
    }


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples[(name, frozenset({"namespace": "trading", "stack": "qt", **labels}.items()))]


def test_series_per_stack_follow_the_status_and_vanish_with_the_stack() -> None:
    metrics = StackMetrics()
    key = ("trading", "qt")
    metrics.update(key, status("qt-redis-0"))
    metrics.update(key, status("qt-redis-0", health="DEGRADED"))
    metrics.update(key, status("qt-redis-1", health="DEGRADED"))
    samples = scrape(metrics)
    assert value(samples, "tradingstack_stack_condition", condition="Ready") == 1
    assert value(samples, "tradingstack_service_ready_replicas", service="api") == 2
    assert value(samples, "tradingstack_service_desired_replicas", service="api") == 3
    assert value(samples, "tradingstack_service_health", service="api", state="DEGRADED") == 1
    assert value(samples, "tradingstack_service_health", service="api", state="HEALTHY") == 0
    assert value(samples, "tradingstack_redis_master_changes_total") == 1
    assert value(samples, "tradingstack_redis_master_known") == 1
    assert value(samples, "tradingstack_backup_last_size_bytes") == 1234
    assert value(samples, "tradingstack_backup_last_failed") == 1
    assert value(samples, "tradingstack_postgres_archive_lag_seconds") == 2.5
    assert value(samples, "tradingstack_postgres_archive_failing") == 0
    recoverable_to = datetime(2026, 12, 2, 4, 30, tzinfo=UTC).timestamp()
    assert value(samples, "tradingstack_postgres_recoverable_to_timestamp_seconds") == recoverable_to
    assert value(samples, "tradingstack_postgres_leader_known") == 1
    assert value(samples, "tradingstack_postgres_member_role", member="qt-postgres-1", role="leader") == 1
    assert value(samples, "tradingstack_postgres_member_role", member="qt-postgres-2", role="sync_standby") == 1
    assert value(samples, "tradingstack_postgres_replication_lag_bytes", member="qt-postgres-0") == 4096
    assert (
        "tradingstack_postgres_replication_lag_bytes",
        frozenset({"namespace": "trading", "stack": "qt", "member": "qt-postgres-2"}.items()),
    ) not in samples  # unknown: absent, not 0
    assert value(samples, "tradingstack_postgres_last_failover_timestamp_seconds", planned="true") == recoverable_to
    assert value(samples, "tradingstack_restart_last_failed") == 0
    next_run = datetime(2026, 12, 3, 5, tzinfo=UTC).timestamp()
    assert value(samples, "tradingstack_restart_next_run_timestamp_seconds") == next_run
    assert {name for name, _ in samples} == set(STACK_SERIES)

    metrics.forget(key)
    assert scrape(metrics) == {}


def test_no_master_series_for_a_stack_without_redis() -> None:
    disabled = status(None)
    conditions = [
        c.model_copy(update={"reason": "Disabled"}) if c.type == "RedisReady" else c for c in disabled.conditions
    ]
    metrics = StackMetrics()
    metrics.update(("trading", "qt"), disabled.model_copy(update={"conditions": conditions}))
    assert "tradingstack_redis_master_known" not in {name for name, _ in scrape(metrics)}
