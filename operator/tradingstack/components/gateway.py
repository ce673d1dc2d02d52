"""The NGINX gateway: nginx.conf, Deployment, Service and (above one replica) a PDB."""

from __future__ import annotations

from collections.abc import Mapping

from tradingstack.api import TradingStack
from tradingstack.components.assess import Assessment
from tradingstack.components.base import APPLIED, Component, uses
from tradingstack.components.observe import ChildKey, WorkloadState
from tradingstack.render.common import child_name
from tradingstack.render.gateway import COMPONENT as GATEWAY_COMPONENT
from tradingstack.render.gateway import render_gateway

COMPONENT = Component(
    name="gateway",
    kinds=(
        uses("ConfigMap", "v1", "configmaps", APPLIED, "nginx.conf", apply_rank=2),
        uses("Deployment", "apps/v1", "deployments", APPLIED, "the gateway's pods", apply_rank=6),
        uses("Service", "v1", "services", APPLIED, "the gateway's address", apply_rank=4),
        uses("PodDisruptionBudget", "policy/v1", "poddisruptionbudgets", APPLIED, "keep one up", apply_rank=9),
    ),
    enabled=lambda spec: spec.gateway.enabled,
    render=lambda stack, owner, cluster: render_gateway(stack, owner, cluster.domain),
)


def assess(stack: TradingStack, workloads: Mapping[ChildKey, WorkloadState]) -> Assessment:
    """The stack waits for the gateway until its Deployment is rolled out (it has no condition of its own)."""
    if not stack.spec.gateway.enabled:
        return Assessment()
    state = workloads.get(("Deployment", child_name(stack, GATEWAY_COMPONENT)))
    return Assessment(waiting=() if state is not None and state.rolled_out else ("gateway",))
