"""Health contract: overall status rules, probe mapping, roll-up, published schema, circuit breaker."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradingstack.health.checks import Check, CircuitBreaker
from tradingstack.health.contract import (
    DependencyHealth,
    DependencyStatus,
    HealthStatus,
    ServiceHealth,
    is_ready,
    overall_status,
)
from tradingstack.health.rollup import ServiceHealthState, rollup, worst_document
from tradingstack.health.schema import schema_text

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "health-contract.schema.json"
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

UP = DependencyHealth(status=DependencyStatus.UP, latency_ms=1.5)
DOWN = DependencyHealth(status=DependencyStatus.DOWN, message="connection refused")
DOWN_OPTIONAL = DependencyHealth(status=DependencyStatus.DOWN, message="refused", critical=False)
SLOW = DependencyHealth(status=DependencyStatus.DEGRADED, latency_ms=1500)

dependencies = st.dictionaries(
    st.sampled_from(["redis", "postgres", "binance", "model-store"]),
    st.builds(DependencyHealth, status=st.sampled_from(DependencyStatus), critical=st.booleans()),
)


def document(service: str, **deps: DependencyHealth) -> ServiceHealth:
    return ServiceHealth.create(service=service, version="1.0", uptime_seconds=5, timestamp=NOW, dependencies=deps)


@pytest.mark.parametrize(
    ("deps", "expected"),
    [
        ({}, HealthStatus.HEALTHY),
        ({"redis": UP, "postgres": UP}, HealthStatus.HEALTHY),
        ({"redis": SLOW, "postgres": UP}, HealthStatus.DEGRADED),
        ({"redis": DOWN_OPTIONAL, "postgres": UP}, HealthStatus.DEGRADED),
        ({"redis": DOWN, "postgres": UP}, HealthStatus.UNHEALTHY),
        ({"redis": DOWN, "postgres": SLOW}, HealthStatus.UNHEALTHY),
    ],
)
def test_overall_status_rules(deps: dict[str, DependencyHealth], expected: HealthStatus) -> None:
    assert overall_status(deps) is expected


@given(dependencies)
def test_status_is_healthy_exactly_when_all_up_and_unhealthy_exactly_when_a_critical_one_is_down(
    deps: dict[str, DependencyHealth],
) -> None:
    status = overall_status(deps)
    assert (status is HealthStatus.HEALTHY) == all(d.status is DependencyStatus.UP for d in deps.values())
    assert (status is HealthStatus.UNHEALTHY) == any(
        d.status is DependencyStatus.DOWN and d.critical for d in deps.values()
    )


@pytest.mark.parametrize(
    ("status", "degraded_is_ready", "ready"),
    [
        (HealthStatus.HEALTHY, False, True),
        (HealthStatus.HEALTHY, True, True),
        (HealthStatus.DEGRADED, True, True),
        (HealthStatus.DEGRADED, False, False),
        (HealthStatus.UNHEALTHY, True, False),
        (HealthStatus.UNHEALTHY, False, False),
    ],
)
def test_readiness_mapping(status: HealthStatus, degraded_is_ready: bool, ready: bool) -> None:
    assert is_ready(status, degraded_is_ready) is ready


def test_document_is_served_in_camel_case_and_parses_back() -> None:
    served = json.loads(document("execution", redis=UP).model_dump_json(by_alias=True))
    assert served["uptimeSeconds"] == 5
    assert served["dependencies"]["redis"]["latencyMs"] == 1.5
    assert ServiceHealth.model_validate(served) == document("execution", redis=UP)


def test_committed_schema_is_current() -> None:
    assert SCHEMA_FILE.read_text() == schema_text(), (
        "docs/health-contract.schema.json is stale: python -m tradingstack.health.schema --write "
        "docs/health-contract.schema.json"
    )


def test_schema_describes_the_served_fields() -> None:
    schema = json.loads(schema_text())
    assert set(schema["properties"]) == {"service", "status", "version", "uptimeSeconds", "timestamp", "dependencies"}
    assert schema["$defs"]["HealthStatus"]["enum"] == ["HEALTHY", "DEGRADED", "UNHEALTHY"]


def test_rollup_reports_unreachable_apart_from_down() -> None:
    result = rollup(
        {
            "execution": document("execution", redis=DOWN),
            "portfolio": document("portfolio", redis=SLOW),
            "risk-safety": None,
            "ai-engine": document("ai-engine", redis=UP),
        }
    )
    assert result.services == {
        "ai-engine": ServiceHealthState.HEALTHY,
        "execution": ServiceHealthState.UNHEALTHY,
        "portfolio": ServiceHealthState.DEGRADED,
        "risk-safety": ServiceHealthState.UNREACHABLE,
    }
    assert result.degraded
    assert result.reason == "ServicesUnhealthy"
    assert (
        result.message
        == "execution UNHEALTHY (redis DOWN); portfolio DEGRADED (redis DEGRADED); risk-safety UNREACHABLE"
    )
    assert "connection refused" not in result.message


def test_a_service_is_as_healthy_as_its_worst_answering_pod() -> None:
    healthy, degraded, unhealthy = document("a", redis=UP), document("a", redis=SLOW), document("a", redis=DOWN)
    assert worst_document([healthy, unhealthy, None, degraded]) is unhealthy
    assert worst_document([None, healthy, degraded]) is degraded
    assert worst_document([None, healthy]) is healthy
    assert worst_document([None, None]) is None
    assert worst_document([]) is None


@pytest.mark.parametrize(
    ("documents", "degraded", "reason"),
    [
        ({}, False, "AllHealthy"),
        ({"a": document("a", redis=UP)}, False, "AllHealthy"),
        ({"a": document("a", redis=UP), "b": None}, False, "ServicesUnreachable"),
        ({"a": document("a", redis=SLOW), "b": None}, True, "ServicesDegraded"),
        ({"a": document("a", redis=SLOW)}, True, "ServicesDegraded"),
    ],
)
def test_rollup_condition(documents: dict[str, ServiceHealth | None], degraded: bool, reason: str) -> None:
    result = rollup(documents)
    assert (result.degraded, result.reason) == (degraded, reason)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def scripted_check(results: list[DependencyHealth]) -> tuple[Check, list[DependencyHealth]]:
    """A check answering `results` in order, and the list of the answers it gave."""
    calls: list[DependencyHealth] = []

    async def check() -> DependencyHealth:
        calls.append(results[len(calls)])
        return calls[-1]

    return check, calls


async def test_circuit_breaker_opens_after_the_threshold_and_retries_after_the_cooldown() -> None:
    clock = FakeClock()
    check, calls = scripted_check([UP, DOWN, DOWN, UP])
    breaker = CircuitBreaker(check, failure_threshold=2, cooldown_seconds=30, clock=clock)
    assert (await breaker()).status is DependencyStatus.UP
    assert (await breaker()).status is DependencyStatus.DOWN
    backing_off = await breaker()
    assert len(calls) == 2, "within the backoff after a failure the check is not called"
    assert backing_off.status is DependencyStatus.DOWN and backing_off.message.startswith("backing off for 1.0s")
    clock.now += 1  # the first backoff step
    assert (await breaker()).status is DependencyStatus.DOWN
    clock.now += 29
    skipped = await breaker()
    assert len(calls) == 3, "an open circuit must not call the check"
    assert skipped.status is DependencyStatus.DOWN
    assert skipped.message.startswith("circuit open")
    clock.now += 1
    assert (await breaker()).status is DependencyStatus.UP
    assert len(calls) == 4


async def test_circuit_breaker_never_opens_on_a_dependency_that_has_not_answered_yet() -> None:
    """A service starts before its stores: its first failures are retried every second and never counted, so
    the first answer after the store came up is UP (the breaker held it back for a minute on the real node)."""
    clock = FakeClock()
    starting = 30
    check, calls = scripted_check([DOWN] * starting + [UP, DOWN, DOWN])
    breaker = CircuitBreaker(check, failure_threshold=2, cooldown_seconds=60, clock=clock)
    for _ in range(starting):
        assert (await breaker()).status is DependencyStatus.DOWN
        assert (await breaker()).message.startswith("backing off for 1.0s"), "startup retries are 1 s apart"
        clock.now += 1
    assert len(calls) == starting
    assert (await breaker()).status is DependencyStatus.UP
    assert (await breaker()).status is DependencyStatus.DOWN
    clock.now += 1
    assert (await breaker()).status is DependencyStatus.DOWN
    clock.now += 1
    assert (await breaker()).message.startswith("circuit open"), "once it has answered, an outage is counted"
