"""The NGINX gateway: nginx.conf, Deployment, Service and (above one replica) a PDB."""

from __future__ import annotations

from tradingstack.components.base import APPLIED, Component, uses
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
    render=render_gateway,
)
