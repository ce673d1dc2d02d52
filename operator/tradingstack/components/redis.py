"""Redis with Sentinel: configs, Services, the two StatefulSets, PDBs; the operator labels the master pod."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from tradingstack.api import TradingStack
from tradingstack.components.assess import Assessment, ConditionUpdate, store_assessment, store_condition
from tradingstack.components.base import APPLIED, GENERATED_SECRETS, Component, uses
from tradingstack.components.observe import ChildKey, PodState, WorkloadState
from tradingstack.contract import Label
from tradingstack.render.common import child_name
from tradingstack.render.redis import REDIS_COMPONENT, render_redis

COMPONENT = Component(
    name="redis",
    kinds=(
        uses("ConfigMap", "v1", "configmaps", APPLIED, "Redis and Sentinel configs and start scripts", apply_rank=2),
        uses("Service", "v1", "services", APPLIED, "headless and master Services", apply_rank=4),
        uses("StatefulSet", "apps/v1", "statefulsets", APPLIED, "Redis servers and sentinels", apply_rank=5),
        uses("PodDisruptionBudget", "policy/v1", "poddisruptionbudgets", APPLIED, "keep a quorum", apply_rank=9),
        uses("Pod", "v1", "pods", "list patch", "label the pod the sentinels agree is the master"),
        GENERATED_SECRETS,
    ),
    enabled=lambda spec: spec.redis.enabled,
    render=lambda stack, owner, cluster: render_redis(stack, owner, cluster.domain),
)


def redis_pods(pods: Iterable[PodState]) -> list[PodState]:
    """The Redis servers' pods (not the sentinels')."""
    return [pod for pod in pods if pod.labels.get(Label.NAME) == REDIS_COMPONENT]


def assess(stack: TradingStack, workloads: Mapping[ChildKey, WorkloadState]) -> Assessment:
    """RedisReady from the Redis servers' StatefulSet."""
    if not stack.spec.redis.enabled:
        return Assessment({"RedisReady": ConditionUpdate("True", "Disabled", "redis.enabled is false")})
    state = workloads.get(("StatefulSet", child_name(stack, REDIS_COMPONENT)))
    return store_assessment("RedisReady", store_condition(state, "Redis"), "redis")
