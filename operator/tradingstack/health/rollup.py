"""Stack-level health from the services' health documents (pure).

The operator reads the document of every running pod of a service by the pod's IP, not through the Service:
the Service drops a pod once its readiness probe fails, which is exactly when its UNHEALTHY document matters.
A service's state is its worst pod's (`worst_document`). A service none of whose pods answered is passed as
None and reported as UNREACHABLE, which is not the same as down: the service may be fine and the operator's
network path broken (a NetworkPolicy, the operator running outside the cluster). So UNREACHABLE is reported but
never degrades the stack; only a service that itself says DEGRADED or UNHEALTHY does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from tradingstack.health.contract import DependencyStatus, HealthStatus, ServiceHealth


class ServiceHealthState(StrEnum):
    """A service's health as the stack status reports it (`status.services.<name>.health`)."""

    HEALTHY = "HEALTHY"
    DEGRADED = "DEGRADED"
    UNHEALTHY = "UNHEALTHY"
    UNREACHABLE = "UNREACHABLE"


@dataclass(frozen=True)
class StackHealth:
    """Per-service health and the inputs of the stack's Degraded condition."""

    services: dict[str, ServiceHealthState]
    degraded: bool
    """True when any service reports DEGRADED or UNHEALTHY."""
    reason: str
    """CamelCase reason: AllHealthy, or the worst state found (ServicesUnhealthy, ServicesDegraded, and
    ServicesUnreachable when nothing worse is present)."""
    message: str
    """Which services are affected and why (dependency names and statuses; never dependency messages, which
    the services wrote and the operator does not control)."""


_REASONS = {
    ServiceHealthState.UNHEALTHY: "ServicesUnhealthy",
    ServiceHealthState.DEGRADED: "ServicesDegraded",
    ServiceHealthState.UNREACHABLE: "ServicesUnreachable",
}
"""Worst first: the condition's reason names the worst state present."""
_DEGRADING = {ServiceHealthState.UNHEALTHY, ServiceHealthState.DEGRADED}


_SEVERITY = {HealthStatus.HEALTHY: 0, HealthStatus.DEGRADED: 1, HealthStatus.UNHEALTHY: 2}


def worst_document(documents: Iterable[ServiceHealth | None]) -> ServiceHealth | None:
    """The document of a service's worst pod; None when no pod answered. A pod that did not answer (starting,
    stopping) does not hide the others' state: the ready counts report it."""
    answered = [document for document in documents if document is not None]
    return max(answered, key=lambda document: _SEVERITY[document.status], default=None)


def _state(document: ServiceHealth | None) -> ServiceHealthState:
    if document is None:
        return ServiceHealthState.UNREACHABLE
    return ServiceHealthState(document.status.value)


def _describe(name: str, document: ServiceHealth | None) -> str:
    if document is None:
        return f"{name} UNREACHABLE"
    failing = [
        f"{dep} {health.status.value}"
        for dep, health in sorted(document.dependencies.items())
        if health.status is not DependencyStatus.UP
    ]
    return f"{name} {document.status.value}" + (f" ({', '.join(failing)})" if failing else "")


def rollup(documents: Mapping[str, ServiceHealth | None]) -> StackHealth:
    """Roll the documents (by service name; None = unreachable) up into the stack's health."""
    services = {name: _state(document) for name, document in sorted(documents.items())}
    affected = [name for name, state in services.items() if state is not ServiceHealthState.HEALTHY]
    if not affected:
        return StackHealth(services, degraded=False, reason="AllHealthy", message="all services are healthy")
    worst = next(state for state in _REASONS if state in services.values())
    message = "; ".join(_describe(name, documents[name]) for name in affected)
    degraded = any(state in _DEGRADING for state in services.values())
    return StackHealth(services, degraded=degraded, reason=_REASONS[worst], message=message)
