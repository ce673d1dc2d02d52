"""The trading services: a Deployment, a Service and (above one replica) a PodDisruptionBudget each."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tradingstack.api import ServiceStatus, TradingStack
from tradingstack.api.status import HealthState
from tradingstack.components.assess import Assessment
from tradingstack.components.base import APPLIED, Component, uses
from tradingstack.components.observe import ChildKey, WorkloadState
from tradingstack.health.rollup import StackHealth
from tradingstack.render.common import child_name
from tradingstack.render.halt import halted_services
from tradingstack.render.services import render_services

COMPONENT = Component(
    name="services",
    kinds=(
        uses("Deployment", "apps/v1", "deployments", APPLIED, "the trading services' pods", apply_rank=6),
        uses("Service", "v1", "services", APPLIED, "stable addresses of the services", apply_rank=4),
        uses("PodDisruptionBudget", "policy/v1", "poddisruptionbudgets", APPLIED, "keep replicas up", apply_rank=9),
    ),
    render=lambda stack, owner, cluster: render_services(stack, owner, cluster.domain),
)


@dataclass(frozen=True)
class ServicesAssessment:
    services: dict[str, ServiceStatus]
    """Value for status.services."""
    ready: int
    """Services rolled out and ready (a service scaled to zero is not counted)."""
    message: str
    """`ready/total services ready`, and which are scaled to zero."""
    assessment: Assessment
    """What the stack waits for (`services a, b`); degraded: RolloutFailed, then what the health documents say."""


def _health_state(health: StackHealth | None, service: str) -> HealthState:
    if health is None or service not in health.services:
        return "UNKNOWN"
    return health.services[service].value


def assess(
    stack: TradingStack, workloads: Mapping[ChildKey, WorkloadState], health: StackHealth | None
) -> ServicesAssessment:
    """From each service's Deployment and the roll-up of the health documents (None: not read). A service the
    kill switch stops is expected at zero replicas: like one scaled to zero, it holds nothing up."""
    spec = stack.spec
    halted = set(halted_services(stack))
    services: dict[str, ServiceStatus] = {}
    not_ready: list[str] = []
    failed: list[str] = []
    for service in spec.services:
        current = workloads.get(("Deployment", child_name(stack, service.name)))
        services[service.name] = ServiceStatus(
            ready=current.ready if current else 0,
            desired=0 if service.name in halted else service.replicas,
            health=_health_state(health, service.name),
        )
        if current is None or not current.rolled_out:
            not_ready.append(service.name)
        if current is not None and current.rollout_failure:
            failed.append(f"{service.name}: {current.rollout_failure}")
    # A service scaled to zero is what the spec asks for, so it holds nothing up, but it serves nothing either.
    scaled_to_zero = [
        s.name for s in spec.services if s.replicas == 0 and s.name not in not_ready and s.name not in halted
    ]
    stopped = [s.name for s in spec.services if s.name in halted and s.name not in not_ready]
    ready = len(spec.services) - len(not_ready) - len(scaled_to_zero) - len(stopped)
    message = f"{ready}/{len(spec.services)} services ready"
    if scaled_to_zero:
        message += f", scaled to zero: {', '.join(scaled_to_zero)}"
    if stopped:
        message += f", halted: {', '.join(stopped)}"
    degraded = [("RolloutFailed", "; ".join(failed))] if failed else []
    if health is not None and health.degraded:
        degraded.append((health.reason, health.message))
    waiting = (f"services {', '.join(not_ready)}",) if not_ready else ()
    return ServicesAssessment(services, ready, message, Assessment(waiting=waiting, degraded=tuple(degraded)))
