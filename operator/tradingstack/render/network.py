"""NetworkPolicies: only the stack's own pods reach Redis and Postgres.

The operator may also reach the sentinels (it asks them who the master is), from any namespace it runs in. The
exporters' `metrics` port (`spec.redis.metrics`, `spec.postgres.metrics`) is open to every source, as the
services' and the operator's metrics ports are (no policy selects those pods): whatever Prometheus scrapes them
may scrape the data stores' metrics, which carry no data and no credentials. Redis, Sentinel and PostgreSQL
themselves stay closed to it.
"""

from __future__ import annotations

from typing import Any

from tradingstack.api import OwnerReference, TradingStack
from tradingstack.contract import OPERATOR_APP_NAME, Label
from tradingstack.render import postgres, redis
from tradingstack.render.common import POSTGRES_PORT, REDIS_PORT, SENTINEL_PORT, Manifest, Port, manifest, metadata

OPERATOR_POD_LABELS = {Label.NAME: OPERATOR_APP_NAME}


def _ports(*ports: Port) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": port.number} for port in ports]


def _policy(
    stack: TradingStack,
    owner: OwnerReference,
    component: str,
    pod_names: list[str],
    ingress: list[dict[str, Any]],
) -> Manifest:
    return manifest(
        "networking.k8s.io/v1",
        "NetworkPolicy",
        metadata(stack, owner, component, name=f"{stack.name}-{component}-access"),
        spec={
            "podSelector": {
                "matchLabels": {"app.kubernetes.io/instance": stack.name},
                "matchExpressions": [{"key": Label.NAME, "operator": "In", "values": pod_names}],
            },
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        },
    )


def _scrapers(ports: list[Port]) -> list[dict[str, Any]]:
    """An ingress rule without `from`: any source, on the exporter's port only (none when it is disabled)."""
    return [{"ports": _ports(*ports)}] if ports else []


def _pgbackrest_clients(stack: TradingStack) -> list[dict[str, Any]]:
    """The pgBackRest TLS server (pitr) serves the backup Jobs' pods only; it also checks their certificate."""
    ports = postgres.pitr_ports(stack)
    if not ports:
        return []
    jobs = {"podSelector": {"matchLabels": {Label.STACK: stack.name, Label.NAME: postgres.BACKUP_COMPONENT}}}
    return [{"from": [jobs], "ports": _ports(*ports)}]


def render_network_policies(stack: TradingStack, owner: OwnerReference) -> list[Manifest]:
    from_stack = {"podSelector": {"matchLabels": {Label.STACK: stack.name}}}
    policies: list[Manifest] = []
    if stack.spec.redis.enabled:
        from_operator = {"namespaceSelector": {}, "podSelector": {"matchLabels": OPERATOR_POD_LABELS}}
        policies.append(
            _policy(
                stack,
                owner,
                "redis",
                ["redis", "redis-sentinel"],
                [
                    {"from": [from_stack], "ports": _ports(REDIS_PORT, SENTINEL_PORT)},
                    {"from": [from_operator], "ports": _ports(SENTINEL_PORT)},
                    *_scrapers(redis.metrics_ports(stack)),
                ],
            )
        )
    if stack.spec.postgres.enabled:
        policies.append(
            _policy(
                stack,
                owner,
                "postgres",
                ["postgres"],
                [
                    {"from": [from_stack], "ports": _ports(POSTGRES_PORT)},
                    *_scrapers(postgres.metrics_ports(stack)),
                    *_pgbackrest_clients(stack),
                ],
            )
        )
    return policies
