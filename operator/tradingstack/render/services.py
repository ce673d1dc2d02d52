"""Trading microservices: one Deployment, Service and (above one replica) PodDisruptionBudget each.

Probes follow the health contract: liveness asks only whether the process answers (a failing dependency never
restarts a pod, so an outage of Redis cannot become a restart storm); readiness follows the service status
(HEALTHY, or DEGRADED when `degradedIsReady`, which the service learns from `ServiceEnv.DEGRADED_IS_READY`); the
startup probe gives slow model loading `startupSeconds` before liveness applies. The env names are the
`tradingstack.contract` ones the service library reads.
"""

from __future__ import annotations

import math
from typing import Any

from tradingstack.api import OwnerReference, ServiceSpec, TradingStack
from tradingstack.contract import ServiceEnv, format_flag
from tradingstack.render import postgres, redis
from tradingstack.render.common import (
    Manifest,
    child_name,
    container_security_context,
    manifest,
    metadata,
    pod_disruption_budget,
    pod_security_context,
    resources,
    selector_labels,
    spread_and_anti_affinity,
)

STARTUP_PERIOD_SECONDS = 5


def service_env(stack: TradingStack, service: ServiceSpec) -> list[dict[str, Any]]:
    """Identity, health-mapping and connection variables first, then the user's (which may refer to them)."""
    env: list[dict[str, Any]] = [
        {"name": ServiceEnv.SERVICE_NAME, "value": service.name},
        {"name": ServiceEnv.PORT, "value": str(service.port)},
        {"name": ServiceEnv.DEGRADED_IS_READY, "value": format_flag(service.health.degraded_is_ready)},
        {"name": ServiceEnv.HEALTH_PATH, "value": service.health.path},
        {"name": ServiceEnv.LIVE_PATH, "value": service.health.live_path},
        {"name": ServiceEnv.READY_PATH, "value": service.health.ready_path},
        {"name": ServiceEnv.POD_NAME, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": ServiceEnv.POD_NAMESPACE, "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]
    if "redis" in service.uses:
        env += redis.connection_env(stack)
    if "postgres" in service.uses:
        env += postgres.connection_env(stack)
    env += [var.model_dump(by_alias=True, exclude_none=True) for var in service.env]
    return env


def _http_probe(path: str, period: int, failures: int, timeout: int = 2) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": timeout,
    }


def _deployment(stack: TradingStack, owner: OwnerReference, service: ServiceSpec) -> Manifest:
    health = service.health
    container = {
        "name": service.name,
        "image": service.image,
        "ports": [{"name": "http", "containerPort": service.port, "protocol": "TCP"}],
        "env": service_env(stack, service),
        "resources": resources(service.resources),
        "securityContext": container_security_context(),
        "startupProbe": _http_probe(
            health.live_path, STARTUP_PERIOD_SECONDS, math.ceil(health.startup_seconds / STARTUP_PERIOD_SECONDS)
        ),
        "livenessProbe": _http_probe(health.live_path, period=10, failures=3),
        "readinessProbe": _http_probe(health.ready_path, period=5, failures=2),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    return manifest(
        "apps/v1",
        "Deployment",
        metadata(stack, owner, service.name),
        spec={
            "replicas": service.replicas,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector_labels(stack, service.name)},
            # Surge one pod and never go below the desired count: daily restarts keep full capacity.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": metadata(stack, owner, service.name)["labels"]},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": pod_security_context(),
                    "affinity": spread_and_anti_affinity(stack, service.name),
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}],
                },
            },
        },
    )


def _service(stack: TradingStack, owner: OwnerReference, service: ServiceSpec) -> Manifest:
    return manifest(
        "v1",
        "Service",
        metadata(stack, owner, service.name),
        spec={
            "type": "ClusterIP",
            "selector": selector_labels(stack, service.name),
            "ports": [{"name": "http", "port": service.port, "targetPort": "http", "protocol": "TCP"}],
        },
    )


def service_url(stack: TradingStack, service: ServiceSpec) -> str:
    """In-cluster base URL of a service (used by the gateway and the operator's health reads)."""
    return f"http://{child_name(stack, service.name)}.{stack.namespace}.svc:{service.port}"


def render_services(stack: TradingStack, owner: OwnerReference) -> list[Manifest]:
    manifests: list[Manifest] = []
    for service in stack.spec.services:
        manifests += [_deployment(stack, owner, service), _service(stack, owner, service)]
        if service.replicas > 1:
            manifests.append(pod_disruption_budget(stack, owner, service.name))
    return manifests
