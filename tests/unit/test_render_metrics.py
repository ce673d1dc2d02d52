"""The data stores' exporter sidecars (`spec.redis.metrics`, `spec.postgres.metrics`): rendered only when enabled,
on the `metrics` port of the pods, Services and NetworkPolicies, with the password of the store's own Secret."""

from __future__ import annotations

from typing import Any

import pytest

from tests.kubelet import resolved_env
from tests.psa import restricted_violations
from tradingstack.api import TradingStack
from tradingstack.api.spec import POSTGRES_IMAGE, REDIS_IMAGE
from tradingstack.cli import dump_yaml
from tradingstack.components import render
from tradingstack.contract import Exporter, PostgresExporterEnv, RedisExporterEnv
from tradingstack.render import postgres, redis
from tradingstack.render.common import METRICS_CONTAINER, POSTGRES_METRICS_PORT, REDIS_METRICS_PORT

ON = {"metrics": {"enabled": True}}


def stack_of(redis_spec: dict[str, Any] | None = None, postgres_spec: dict[str, Any] | None = None) -> TradingStack:
    return TradingStack.model_validate(
        {
            "metadata": {"name": "quant", "namespace": "trading", "uid": "0b5c1a2e-uid"},
            "spec": {"redis": redis_spec or {}, "postgres": postgres_spec or {}},
        }
    )


def objects(stack: TradingStack) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in render(stack, stack.owner_reference())}


def pod_of(stack: TradingStack, statefulset: str) -> dict[str, Any]:
    pod: dict[str, Any] = objects(stack)[("StatefulSet", statefulset)]["spec"]["template"]["spec"]
    return pod


def containers(stack: TradingStack, statefulset: str) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in pod_of(stack, statefulset)["containers"]}


def env_refs(container: dict[str, Any]) -> dict[str, Any]:
    return {var["name"]: var.get("value", var.get("valueFrom")) for var in container["env"]}


def service_ports(stack: TradingStack, service: str) -> dict[str, int]:
    return {p["name"]: p["port"] for p in objects(stack)[("Service", service)]["spec"]["ports"]}


def open_ports(stack: TradingStack, policy: str) -> list[int]:
    """Ports of the policy's rules that admit every source (no `from`)."""
    rules = objects(stack)[("NetworkPolicy", policy)]["spec"]["ingress"]
    return [p["port"] for rule in rules if "from" not in rule for p in rule["ports"]]


@pytest.mark.parametrize("spec", [{}, {"metrics": {"enabled": False, "image": "example/exporter:1"}}])
def test_disabled_metrics_render_exactly_what_a_stack_without_them_renders(spec: dict[str, Any]) -> None:
    plain = dump_yaml(render(stack_of(), stack_of().owner_reference()))
    stack = stack_of(spec, spec)
    assert dump_yaml(render(stack, stack.owner_reference())) == plain
    assert METRICS_CONTAINER not in containers(stack, "quant-redis")
    assert METRICS_CONTAINER not in containers(stack, "quant-postgres")


def test_the_redis_exporter_runs_beside_each_server_and_not_beside_the_sentinels() -> None:
    stack = stack_of(ON)
    sidecar = containers(stack, "quant-redis")[METRICS_CONTAINER]
    assert list(containers(stack, "quant-redis")) == ["redis", METRICS_CONTAINER]
    assert list(containers(stack, "quant-redis-sentinel")) == ["sentinel"]
    assert sidecar["command"] == [Exporter.REDIS_COMMAND]
    assert sidecar["ports"] == [{"name": "metrics", "containerPort": 9121, "protocol": "TCP"}]
    env = env_refs(sidecar)
    assert env[RedisExporterEnv.ADDRESS] == "redis://127.0.0.1:6379"
    assert env[RedisExporterEnv.LISTEN_ADDRESS] == ":9121"


@pytest.mark.parametrize(("spec", "secret"), [({}, "quant-redis"), ({"existingSecret": "mine"}, "mine")])
def test_the_redis_exporter_authenticates_with_the_servers_password(spec: dict[str, Any], secret: str) -> None:
    stack = stack_of({**spec, **ON})
    pod = containers(stack, "quant-redis")
    reference = {"secretKeyRef": {"name": redis.redis_secret_name(stack), "key": "password"}}
    assert redis.redis_secret_name(stack) == secret
    assert env_refs(pod[METRICS_CONTAINER])[RedisExporterEnv.PASSWORD] == reference
    assert env_refs(pod["redis"])["REDIS_PASSWORD"] == reference  # what the server's start script sets


def test_the_postgres_exporter_logs_in_as_the_stacks_role_to_its_own_pods_server() -> None:
    stack = stack_of(postgres_spec={"database": "orders", "existingSecret": "pg-credentials", **ON})
    pod = containers(stack, "quant-postgres")
    sidecar = pod[METRICS_CONTAINER]
    assert list(pod) == ["postgres", METRICS_CONTAINER]
    assert sidecar["command"] == [Exporter.POSTGRES_COMMAND]
    assert sidecar["ports"] == [{"name": "metrics", "containerPort": 9187, "protocol": "TCP"}]
    server, exporter = env_refs(pod["postgres"]), env_refs(sidecar)
    assert exporter[PostgresExporterEnv.USER] == server["POSTGRES_USER"]
    assert exporter[PostgresExporterEnv.PASSWORD] == server["POSTGRES_PASSWORD"]
    assert exporter[PostgresExporterEnv.PASSWORD]["secretKeyRef"]["name"] == postgres.secret_name(stack)
    assert exporter[PostgresExporterEnv.URI] == "127.0.0.1:5432/orders?sslmode=disable"
    assert exporter[PostgresExporterEnv.LISTEN_ADDRESS] == ":9187"
    assert resolved_env(sidecar)[PostgresExporterEnv.PASSWORD] == "<secret pg-credentials/password>"


@pytest.mark.parametrize(("statefulset", "image"), [("quant-redis", REDIS_IMAGE), ("quant-postgres", POSTGRES_IMAGE)])
def test_the_sidecar_is_restricted_small_and_ready_on_its_landing_page(statefulset: str, image: str) -> None:
    stack = stack_of({"image": "redis:7.4", **ON}, {"image": "postgres:15", **ON})
    pod = pod_of(stack, statefulset)
    sidecar = containers(stack, statefulset)[METRICS_CONTAINER]
    assert restricted_violations(pod) == []
    assert sidecar["image"] == image, "the project's image, whatever image the store runs"
    assert sidecar["securityContext"]["readOnlyRootFilesystem"] is True
    assert sidecar["readinessProbe"]["httpGet"] == {"path": "/", "port": "metrics"}
    assert sidecar["resources"] == {
        "requests": {"cpu": "10m", "memory": "32Mi"},
        "limits": {"cpu": "200m", "memory": "128Mi"},
    }
    assert "volumeMounts" not in sidecar


def test_image_and_resources_of_the_sidecars_come_from_the_spec() -> None:
    custom = {
        "enabled": True,
        "image": "registry.example/exporter:2",
        "resources": {"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"memory": "96Mi"}},
    }
    stack = stack_of({"metrics": custom}, {"metrics": custom})
    for statefulset in ("quant-redis", "quant-postgres"):
        sidecar = containers(stack, statefulset)[METRICS_CONTAINER]
        assert sidecar["image"] == "registry.example/exporter:2"
        assert sidecar["resources"] == {"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"memory": "96Mi"}}


def test_the_services_of_the_store_pods_expose_the_metrics_port() -> None:
    stack = stack_of(ON, ON)
    assert service_ports(stack, "quant-redis") == {"redis": 6379, "metrics": REDIS_METRICS_PORT.number}
    assert service_ports(stack, "quant-postgres") == {"postgres": 5432, "metrics": POSTGRES_METRICS_PORT.number}
    assert service_ports(stack, "quant-redis-master") == {"redis": 6379}
    assert service_ports(stack, "quant-redis-sentinel") == {"sentinel": 26379}
    assert service_ports(stack_of(), "quant-redis") == {"redis": 6379}


def test_the_network_policies_open_only_the_metrics_port_to_every_source() -> None:
    enabled, disabled = stack_of(ON, ON), stack_of()
    assert open_ports(enabled, "quant-redis-ingress") == [9121]
    assert open_ports(enabled, "quant-postgres-ingress") == [9187]
    assert open_ports(disabled, "quant-redis-ingress") == []
    assert open_ports(disabled, "quant-postgres-ingress") == []
    for policy in ("quant-redis-ingress", "quant-postgres-ingress", "quant-redis-sentinel-ingress"):
        closed = [rule for rule in objects(enabled)[("NetworkPolicy", policy)]["spec"]["ingress"] if "from" in rule]
        assert closed == objects(disabled)[("NetworkPolicy", policy)]["spec"]["ingress"], policy
    assert open_ports(enabled, "quant-redis-sentinel-ingress") == []  # the exporter runs in the servers' pods
