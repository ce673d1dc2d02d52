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
from tradingstack.contract import CANARY_SUFFIX, Annotation, Label, ServiceEnv, format_flag
from tradingstack.render import postgres, redis, tls
from tradingstack.render.common import (
    DEFAULT_CLUSTER_DOMAIN,
    Manifest,
    child_service,
    container_security_context,
    http_port,
    manifest,
    metadata,
    pod_disruption_budget,
    pod_security_context,
    pod_template_metadata,
    resources,
    scratch_volume,
    selector_labels,
    spread_and_anti_affinity,
    template_revision,
)
from tradingstack.render.halt import halted_services

STARTUP_PERIOD_SECONDS = 5


def service_env(stack: TradingStack, service: ServiceSpec, domain: str) -> list[dict[str, Any]]:
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
        env += redis.connection_env(stack, domain)
    if "postgres" in service.uses:
        env += postgres.connection_env(stack, domain)
    env += [var.model_dump(by_alias=True, exclude_none=True) for var in service.env]
    return env


def _http_probe(path: str, period: int, failures: int, timeout: int = 2) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": timeout,
    }


def _deployment(
    stack: TradingStack, owner: OwnerReference, service: ServiceSpec, domain: str, halted: bool
) -> Manifest:
    """`halted`: the stack's kill switch stops this service (`render.halt`): zero replicas, the pods ended with
    their normal termination grace period."""
    health = service.health
    container = {
        "name": service.name,
        "image": service.image,
        "ports": [http_port(service.port).container_port()],
        "env": service_env(stack, service, domain),
        "resources": resources(service.resources),
        "securityContext": container_security_context(),
        "startupProbe": _http_probe(
            health.live_path, STARTUP_PERIOD_SECONDS, math.ceil(health.startup_seconds / STARTUP_PERIOD_SECONDS)
        ),
        "livenessProbe": _http_probe(health.live_path, period=10, failures=3),
        "readinessProbe": _http_probe(health.ready_path, period=5, failures=2),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, *tls.client_mounts(stack, service.uses)],
    }
    template = {
        "metadata": pod_template_metadata(stack, service.name),
        "spec": {
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": pod_security_context(),
            "affinity": spread_and_anti_affinity(stack, service.name),
            "containers": [container],
            "volumes": [scratch_volume("tmp", "256Mi"), *tls.client_volumes(stack, service.uses)],
        },
    }
    return manifest(
        "apps/v1",
        "Deployment",
        metadata(stack, owner, service.name, annotations={Annotation.REVISION: template_revision(template)}),
        spec={
            "replicas": 0 if halted else service.replicas,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector_labels(stack, service.name)},
            # Surge one pod and never go below the desired count: daily restarts keep full capacity.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": template,
        },
    )


def canary_deployment(main: Manifest) -> Manifest:
    """The canary of a service's rendered Deployment `main`: the same pod template (image, env, probes, security),
    one replica, named `<deployment>-canary`.

    Its pods carry `Label.NAME: <service>-canary` and `Label.CANARY: true`: `Label.NAME` is in the selector of
    the main Deployment, of the Service and of the PodDisruptionBudget, so none of them matches a canary pod (no
    selector of an existing object changes; selectors are immutable) and the canary takes no traffic through the
    Service. `Label.STACK` and `Label.COMPONENT` stay, so the operator lists, watches and health-checks it, and the
    NetworkPolicies (which admit the stack's pods by `Label.STACK`) let it reach Redis and Postgres. `Recreate`:
    a canary of a new revision replaces the old one rather than running beside it."""
    meta = main["metadata"]
    spec = main["spec"]
    revision = meta["annotations"][Annotation.REVISION]
    service = spec["template"]["metadata"]["labels"][Label.NAME]
    canary_name = {Label.NAME: service + CANARY_SUFFIX}
    template = spec["template"]
    template_meta = template["metadata"]
    return {
        **main,
        "metadata": {
            **meta,
            "name": meta["name"] + CANARY_SUFFIX,
            "labels": {**meta["labels"], **canary_name, Label.CANARY: "true"},
            "annotations": {Annotation.REVISION: revision},
        },
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 1,
            "selector": {"matchLabels": {**spec["selector"]["matchLabels"], **canary_name}},
            "strategy": {"type": "Recreate"},
            "template": {
                **template,
                "metadata": {
                    **template_meta,
                    "labels": {**template_meta["labels"], **canary_name, Label.CANARY: "true"},
                    "annotations": {**template_meta.get("annotations", {}), Annotation.REVISION: revision},
                },
            },
        },
    }


def health_url(service: ServiceSpec, pod_ip: str) -> str:
    """The health document of one pod of a service, by the pod's IP (the operator reads each pod's)."""
    host = f"[{pod_ip}]" if ":" in pod_ip else pod_ip
    return f"http://{host}:{service.port}{service.health.path}"


def render_services(stack: TradingStack, owner: OwnerReference, domain: str = DEFAULT_CLUSTER_DOMAIN) -> list[Manifest]:
    manifests: list[Manifest] = []
    halted = set(halted_services(stack))
    for service in stack.spec.services:
        manifests += [
            _deployment(stack, owner, service, domain, service.name in halted),
            child_service(stack, owner, service.name, http_port(service.port)),
        ]
        if service.replicas > 1:  # also while halted: a halt neither prunes nor recreates it
            manifests.append(pod_disruption_budget(stack, owner, service.name))
    return manifests
