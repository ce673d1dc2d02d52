"""The services component: a Deployment, a Service and (above one replica) a PDB per trading service; the
connection env of the stores each one uses, the probes of the health contract, where the operator reads health."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tests.unit.components.kinds import assert_declares_what_it_renders
from tests.unit.components.recorded import DEADLINE, live_workloads, workload
from tests.unit.test_render import example
from tradingstack.api import ServiceStatus, TradingStack
from tradingstack.components import render, services
from tradingstack.components.assess import Assessment
from tradingstack.health.contract import DependencyHealth, DependencyStatus, ServiceHealth
from tradingstack.health.rollup import rollup
from tradingstack.render.services import health_url

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def _env(obj: dict[str, Any]) -> dict[str, Any]:
    container = obj["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e for e in container["env"]}


def test_connection_env_is_injected_only_for_used_stores() -> None:
    stack = example("quantum-trader.yaml")
    deployments = {
        o["metadata"]["name"]: o for o in render(stack, stack.owner_reference()) if o["kind"] == "Deployment"
    }
    risk = _env(deployments["quantum-trader-risk-safety"])
    assert "REDIS_SENTINELS" in risk and "REDIS_MASTER_NAME" in risk
    assert "DATABASE_URL" not in risk
    ai = _env(deployments["quantum-trader-ai-engine"])
    assert ai["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "quantum-trader-redis"
    assert "secretKeyRef" in ai["DATABASE_URL"]["valueFrom"]
    execution = _env(deployments["quantum-trader-execution"])
    assert execution["EXCHANGE_API_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "api-key"
    assert execution["HEALTH_DEGRADED_IS_READY"]["value"] == "false"


def test_probes_follow_the_health_contract() -> None:
    stack = example("quantum-trader.yaml")
    deployment = next(
        o
        for o in render(stack, stack.owner_reference())
        if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("rl-training")
    )
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300


def test_the_operator_reads_health_on_the_container_port() -> None:
    stack = example("quantum-trader.yaml")
    service = stack.spec.services[0]
    deployment = next(o for o in render(stack, stack.owner_reference())
                      if o["kind"] == "Deployment" and o["metadata"]["name"].endswith(service.name))  # fmt: skip
    port = deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    assert health_url(service, "10.244.0.7") == f"http://10.244.0.7:{port}{service.health.path}"
    assert health_url(service, "fd00::7") == f"http://[fd00::7]:{port}{service.health.path}"


def test_declares_every_kind_it_renders() -> None:
    assert_declares_what_it_renders(services.COMPONENT, example("quantum-trader.yaml"), set())


def test_services_are_assessed_from_their_deployments_and_health() -> None:
    stack = TradingStack.model_validate(
        {
            "metadata": {"name": "qt"},
            "spec": {"services": [{"name": "api", "image": "x:1", "port": 8000, "replicas": 2},
                                  {"name": "web", "image": "x:1", "port": 8001, "replicas": 2},
                                  {"name": "batch", "image": "x:1", "port": 8002, "replicas": 0}]},
        }
    )  # fmt: skip
    workloads = live_workloads(
        workload("Deployment", "qt-api", 2, 2),
        workload("Deployment", "qt-web", 1, 2, DEADLINE),
        workload("Deployment", "qt-batch", 0, 0),
    )
    unhealthy = ServiceHealth.create("api", "1", 5.0, NOW, {"redis": DependencyHealth(status=DependencyStatus.DOWN)})
    result = services.assess(stack, workloads, rollup({"api": unhealthy, "web": None}))
    assert result.services == {
        "api": ServiceStatus(ready=2, desired=2, health="UNHEALTHY"),
        "web": ServiceStatus(ready=1, desired=2, health="UNREACHABLE"),
        "batch": ServiceStatus(ready=0, desired=0, health="UNKNOWN"),
    }
    assert (result.ready, result.message) == (1, "1/3 services ready, scaled to zero: batch")
    assert result.assessment.waiting == ("services web",)
    assert result.assessment.degraded[0] == ("RolloutFailed", "web: stuck")
    assert result.assessment.degraded[1][0] == "ServicesUnhealthy"


def test_services_without_health_documents_are_unknown_and_all_ready_waits_for_nothing() -> None:
    stack = TradingStack.model_validate(
        {"metadata": {"name": "qt"}, "spec": {"services": [{"name": "api", "image": "x:1", "port": 8000}]}}
    )
    result = services.assess(stack, live_workloads(workload("Deployment", "qt-api", 1)), None)
    assert result.services["api"].health == "UNKNOWN"
    assert (result.message, result.assessment) == ("1/1 services ready", Assessment())
