"""The demo service serves the health contract against real Redis and PostgreSQL, through an outage."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.component.health.processes import (
    POLL_INTERVAL,
    STARTUP_TIMEOUT,
    DemoService,
    RedisServer,
    http_status,
    start_demo_service,
)
from tests.component.postgres.server import PostgresServer
from tests.support import wait_for
from tradingstack.contract import PostgresEnv, RedisEnv, ServiceEnv
from tradingstack.health.contract import ServiceHealth

pytestmark = pytest.mark.component

FAST_CIRCUIT = {
    ServiceEnv.CIRCUIT_FAILURE_THRESHOLD: "2",
    ServiceEnv.CIRCUIT_COOLDOWN_SECONDS: "1",
    ServiceEnv.CHECK_TIMEOUT_SECONDS: "2",
}


def health(service: DemoService) -> tuple[int, ServiceHealth]:
    try:
        with urllib.request.urlopen(f"{service.url}/health", timeout=10) as response:  # noqa: S310 - 127.0.0.1
            return int(response.status), ServiceHealth.model_validate_json(response.read())
    except urllib.error.HTTPError as err:
        return err.code, ServiceHealth.model_validate_json(err.read())


def metrics(service: DemoService) -> str:
    with urllib.request.urlopen(f"{service.url}/metrics", timeout=10) as response:  # noqa: S310 - 127.0.0.1
        return str(response.read().decode())


@pytest.fixture
def services(tmp_path: Path, redis_server: RedisServer, postgres: PostgresServer) -> Iterator[dict[str, DemoService]]:
    """Three services on the same Redis and Postgres, differing in how they treat a Redis outage."""
    common = {RedisEnv.URL: redis_server.url, PostgresEnv.URL: postgres.url(), **FAST_CIRCUIT}
    variants: dict[str, dict[str, str]] = {
        # Redis is critical: an outage makes it UNHEALTHY.
        "execution": {ServiceEnv.CRITICAL_DEPENDENCIES: "redis,postgres", ServiceEnv.DEGRADED_IS_READY: "true"},
        # Copes without Redis (DEGRADED) and keeps serving.
        "monitoring-health": {ServiceEnv.CRITICAL_DEPENDENCIES: "postgres", ServiceEnv.DEGRADED_IS_READY: "true"},
        # Copes without Redis but takes itself out of rotation while DEGRADED.
        "portfolio": {ServiceEnv.CRITICAL_DEPENDENCIES: "postgres", ServiceEnv.DEGRADED_IS_READY: "false"},
    }
    started: dict[str, DemoService] = {}
    try:
        for name, env in variants.items():
            started[name] = start_demo_service(name, tmp_path, **common, **env)
        yield started
    finally:
        for service in started.values():
            service.stop()


def _all_healthy(services: dict[str, DemoService]) -> bool:
    return all(health(s)[1].status == "HEALTHY" for s in services.values())


async def test_redis_outage_and_recovery(
    services: dict[str, DemoService], redis_server: RedisServer, postgres: PostgresServer
) -> None:
    wait_for(
        lambda: _all_healthy(services), what="all services HEALTHY", timeout=STARTUP_TIMEOUT, interval=POLL_INTERVAL
    )
    for service in services.values():
        status, document = health(service)
        assert status == 200
        assert set(document.dependencies) == {"redis", "postgres"}
        assert all(d.status == "UP" and d.latency_ms is not None for d in document.dependencies.values())
        assert http_status(f"{service.url}/health/ready") == 200

    redis_server.stop()
    wait_for(
        lambda: all(health(s)[1].dependencies["redis"].status == "DOWN" for s in services.values()),
        what="redis DOWN in every health document",
        timeout=STARTUP_TIMEOUT,
        interval=POLL_INTERVAL,
    )
    expected: dict[str, tuple[str, int, int]] = {
        # name: (status, /health code, /health/ready code)
        "execution": ("UNHEALTHY", 503, 503),
        "monitoring-health": ("DEGRADED", 200, 200),
        "portfolio": ("DEGRADED", 200, 503),
    }
    for name, (status_name, health_code, ready_code) in expected.items():
        service = services[name]
        code, document = health(service)
        assert (document.status, code) == (status_name, health_code), name
        assert document.dependencies["postgres"].status == "UP"
        assert document.dependencies["redis"].message
        assert http_status(f"{service.url}/health/ready") == ready_code, name
        assert http_status(f"{service.url}/health/live") == 200, name
        assert 'dependency_up{dependency="redis"} 0.0' in metrics(service)
        assert f'service_health_status{{status="{status_name}"}} 1.0' in metrics(service)

    redis_server.start()
    wait_for(
        lambda: _all_healthy(services),
        what="all services HEALTHY again after Redis is back",
        timeout=STARTUP_TIMEOUT,
        interval=POLL_INTERVAL,
    )
    for service in services.values():
        assert http_status(f"{service.url}/health/ready") == 200
        assert 'dependency_up{dependency="redis"} 1.0' in metrics(service)

    secrets = (redis_server.password, postgres.password)
    for service in services.values():
        text = service.log_path.read_text()
        assert not any(secret in text for secret in secrets), f"{service.name} logged a credential"


async def test_refused_postgres_login_is_down_without_the_password(tmp_path: Path, postgres: PostgresServer) -> None:
    wrong = "Wr0ng-pa55word-xyz"
    service = start_demo_service("risk-safety", tmp_path, DATABASE_URL=postgres.url(password=wrong), **FAST_CIRCUIT)
    try:
        code, document = health(service)
        dependency = document.dependencies["postgres"]
        assert (code, document.status, dependency.status) == (503, "UNHEALTHY", "DOWN")
        assert "password authentication failed" in dependency.message
        raw: dict[str, Any] = json.loads(document.model_dump_json())
        assert wrong not in json.dumps(raw)
        assert postgres.password not in json.dumps(raw)
        assert wrong not in service.log_path.read_text()
        assert http_status(f"{service.url}/health/live") == 200
    finally:
        service.stop()
