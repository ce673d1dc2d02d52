"""Both sides of the cross-process contract: what the renderer injects is what the processes read.

The example is rendered, each service container's env is resolved the way the kubelet resolves it (`$(VAR)`
expanded, Secret and field references replaced by stand-ins naming what they refer to) and fed into the
service library's configuration (`demo_service.config.Config.from_env`). Every spec knob a service consumes must
arrive with its effect; a renamed variable on either side fails here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from demo_service.app import create_app
from demo_service.config import Config
from tests.kubelet import resolved_env, secret_stand_in
from tests.unit.test_render import example
from tradingstack.api import ServiceSpec, TradingStack
from tradingstack.api.status import BackupInfo
from tradingstack.components import render
from tradingstack.contract import PostgresEnv, Probe, ServiceEnv, format_flag, parse_flag, termination
from tradingstack.contract.termination import BackupListing, ListedBackup, RestoreResult, ToolFailure
from tradingstack.contract.tls import REDIS_CA_FILE
from tradingstack.health.contract import HealthStatus, is_ready
from tradingstack.render import postgres, redis, tls
from tradingstack.render.common import DEFAULT_CLUSTER_DOMAIN as DOMAIN
from tradingstack.render.common import child_name


def service_containers(stack: TradingStack) -> dict[str, dict[str, Any]]:
    deployments = {
        o["metadata"]["name"]: o for o in render(stack, stack.owner_reference()) if o["kind"] == "Deployment"
    }
    return {
        s.name: deployments[child_name(stack, s.name)]["spec"]["template"]["spec"]["containers"][0]
        for s in stack.spec.services
    }


def assert_service_reads_its_spec(stack: TradingStack, service: ServiceSpec, container: Mapping[str, Any]) -> None:
    env = resolved_env(container)
    config = Config.from_env(env)
    health = service.health

    assert (config.service_name, config.port) == (service.name, service.port)
    assert config.degraded_is_ready is health.degraded_is_ready
    assert is_ready(HealthStatus.DEGRADED, config.degraded_is_ready) is health.degraded_is_ready
    # The service serves its endpoints where the probes ask and where the operator reads the document.
    assert (config.health_path, config.live_path, config.ready_path) == (
        health.path,
        health.live_path,
        health.ready_path,
    )
    assert container["livenessProbe"]["httpGet"]["path"] == config.live_path
    assert container["startupProbe"]["httpGet"]["path"] == config.live_path
    assert container["readinessProbe"]["httpGet"]["path"] == config.ready_path
    assert container["ports"][0]["containerPort"] == config.port

    if "redis" in service.uses:
        sentinels = [
            (host, int(port)) for host, _, port in (a.rpartition(":") for a in redis.sentinel_addresses(stack, DOMAIN))
        ]
        assert config.redis_sentinels == sorted(sentinels)
        assert config.redis_master_name == stack.spec.redis.master_name
        assert config.redis_password == secret_stand_in(redis.redis_secret_name(stack), "password")
        # With spec.tls the CA file the operator mounts (render.tls.client_mounts), else plaintext.
        assert config.redis_tls_ca_file == (REDIS_CA_FILE if stack.spec.tls.enabled else None)
    else:
        assert not config.uses_redis
    if "postgres" in service.uses:
        dsn = secret_stand_in(postgres.secret_name(stack), "dsn")
        assert config.postgres_conninfo == (f"{dsn}?{tls.dsn_query()}" if stack.spec.tls.enabled else dsn)
        assert env[PostgresEnv.HOST] == postgres.host(stack, DOMAIN)
    else:
        assert config.postgres_conninfo is None
    for var in service.env:
        assert var.name in env, f"{service.name}: user variable {var.name} not passed through"


def test_every_service_of_the_example_reads_what_its_spec_says() -> None:
    stack = example("quantum-trader.yaml")
    containers = service_containers(stack)
    # The example covers both values of degradedIsReady.
    assert {s.health.degraded_is_ready for s in stack.spec.services} == {True, False}
    for service in stack.spec.services:
        assert_service_reads_its_spec(stack, service, containers[service.name])


def test_every_service_reads_what_its_spec_says_with_tls() -> None:
    document = example("quantum-trader.yaml").model_dump(mode="json", by_alias=True, exclude_none=True)
    document["spec"]["tls"] = {"enabled": True}
    stack = TradingStack.model_validate(document)
    containers = service_containers(stack)
    for service in stack.spec.services:
        assert_service_reads_its_spec(stack, service, containers[service.name])


@pytest.mark.parametrize("degraded_is_ready", [True, False])
def test_changed_health_knobs_reach_the_service(degraded_is_ready: bool) -> None:
    """Non-default health paths and both degradedIsReady values, on every service."""
    document = example("quantum-trader.yaml").model_dump(mode="json", by_alias=True, exclude_none=True)
    for service in document["spec"]["services"]:
        service["health"] = {
            "path": "/status",
            "livePath": "/livez",
            "readyPath": "/readyz",
            "degradedIsReady": degraded_is_ready,
        }
    stack = TradingStack.model_validate(document)
    containers = service_containers(stack)
    for service in stack.spec.services:
        assert_service_reads_its_spec(stack, service, containers[service.name])


def test_the_service_routes_its_health_endpoints_on_the_configured_paths() -> None:
    config = Config.from_env(
        {ServiceEnv.HEALTH_PATH: "/status", ServiceEnv.LIVE_PATH: "/livez", ServiceEnv.READY_PATH: "/readyz"}
    )
    paths = {resource.canonical for resource in create_app(config).router.resources()}
    assert {"/status", "/livez", "/readyz"} <= paths
    assert Probe.LIVE not in paths


def test_defaults_agree_on_both_sides() -> None:
    """A service without any injected env serves the paths the spec defaults to."""
    config = Config.from_env({})
    health = ServiceSpec(name="svc", image="img:1", port=8000).health
    assert (config.health_path, config.live_path, config.ready_path) == (
        health.path,
        health.live_path,
        health.ready_path,
    )
    assert config.degraded_is_ready is health.degraded_is_ready


@pytest.mark.parametrize("value", [True, False])
def test_flags_round_trip(value: bool) -> None:
    assert parse_flag(format_flag(value)) is value


TIME = "2026-11-26T02:00:00Z"


@pytest.mark.parametrize(
    "message",
    [
        BackupInfo.model_validate(
            {"time": TIME, "name": "trading-1", "sizeBytes": 10, "checksum": "sha256:0", "verified": True}
        ),
        BackupListing(
            backups=[ListedBackup.model_validate({"name": "b", "time": TIME, "sizeBytes": 1, "verified": False})],
            total=3,
        ),
        RestoreResult(restored="trading-1", database="trading"),
        ToolFailure(error="pg_dump exited 1"),
        ToolFailure(error="database trading is not empty", refused=True),
        ToolFailure(error="the backup volume /backups is full", reason=termination.FailureReason.VOLUME_FULL),
    ],
)
def test_termination_messages_round_trip(message: termination.TerminationMessage) -> None:
    assert termination.parse(termination.render(message)) == message


def test_a_failure_is_written_without_defaults() -> None:
    assert termination.render(ToolFailure(error="boom")) == '{"error": "boom"}'


def test_a_crashed_tool_log_tail_is_a_failure_with_that_text() -> None:
    assert termination.parse("Traceback (most recent call last):\n  ...\n") == ToolFailure(
        error="Traceback (most recent call last):\n  ..."
    )
