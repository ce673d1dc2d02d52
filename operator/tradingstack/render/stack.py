"""`render(stack, owner)`: every child object of a TradingStack, in a deterministic order."""

from __future__ import annotations

from tradingstack.api import OwnerReference, TradingStack
from tradingstack.render.common import DEFAULT_CLUSTER_DOMAIN, Manifest, apply_deletion_policy
from tradingstack.render.gateway import render_gateway
from tradingstack.render.network import render_network_policies
from tradingstack.render.postgres import render_postgres
from tradingstack.render.redis import render_redis
from tradingstack.render.services import render_services

# Dependencies before dependants, so a one-shot `kubectl apply` of the output also works in order.
KIND_ORDER = (
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "PersistentVolumeClaim",
    "Service",
    "StatefulSet",
    "Deployment",
    "CronJob",
    "Job",
    "PodDisruptionBudget",
    "NetworkPolicy",
)


def _sort_key(obj: Manifest) -> tuple[int, str]:
    kind = obj["kind"]
    rank = KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)
    return rank, obj["metadata"]["name"]


def render(stack: TradingStack, owner: OwnerReference, domain: str = DEFAULT_CLUSTER_DOMAIN) -> list[Manifest]:
    """`domain`: the cluster's DNS domain, in every name one pod uses to reach another."""
    spec = stack.spec
    manifests = render_services(stack, owner, domain)
    if spec.redis.enabled:
        manifests += render_redis(stack, owner, domain)
    if spec.postgres.enabled:
        manifests += render_postgres(stack, owner, domain)
    if spec.gateway.enabled:
        manifests += render_gateway(stack, owner, domain)
    manifests += render_network_policies(stack, owner)
    names = [(m["kind"], m["metadata"]["name"]) for m in manifests]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise ValueError(f"rendered objects with the same kind and name: {clashes}")
    policy = stack.spec.deletion_policy
    return sorted((apply_deletion_policy(m, policy) for m in manifests), key=_sort_key)
