"""The trading services: a Deployment, a Service and (above one replica) a PodDisruptionBudget each."""

from __future__ import annotations

from tradingstack.components.base import APPLIED, Component, uses
from tradingstack.render.services import render_services

COMPONENT = Component(
    name="services",
    kinds=(
        uses("Deployment", "apps/v1", "deployments", APPLIED, "the trading services' pods", apply_rank=6),
        uses("Service", "v1", "services", APPLIED, "stable addresses of the services", apply_rank=4),
        uses("PodDisruptionBudget", "policy/v1", "poddisruptionbudgets", APPLIED, "keep replicas up", apply_rank=9),
    ),
    render=render_services,
)
