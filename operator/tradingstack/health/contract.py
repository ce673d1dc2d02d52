"""The health contract every trading service serves (from the seed), as pydantic models.

`GET /health` returns a `ServiceHealth` document. The service status is computed from its dependencies:
any DOWN dependency that is `critical` makes it UNHEALTHY; otherwise any DOWN or DEGRADED dependency makes it
DEGRADED; otherwise HEALTHY.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class HealthStatus(StrEnum):
    HEALTHY = "HEALTHY"
    DEGRADED = "DEGRADED"
    UNHEALTHY = "UNHEALTHY"


class DependencyStatus(StrEnum):
    UP = "UP"
    DOWN = "DOWN"
    DEGRADED = "DEGRADED"


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, use_attribute_docstrings=True
    )


class DependencyHealth(_Model):
    """Result of checking one dependency."""

    status: DependencyStatus
    """UP, DOWN or DEGRADED."""

    latency_ms: float | None = Field(default=None, ge=0)
    """Round-trip time of the check, when it got an answer."""

    message: str = ""
    """Why it is not UP (never contains credentials)."""

    critical: bool = True
    """A critical dependency that is DOWN makes the service UNHEALTHY; a non-critical one only DEGRADED."""


def overall_status(dependencies: dict[str, DependencyHealth]) -> HealthStatus:
    deps = dependencies.values()
    if any(d.status is DependencyStatus.DOWN and d.critical for d in deps):
        return HealthStatus.UNHEALTHY
    if any(d.status is not DependencyStatus.UP for d in deps):
        return HealthStatus.DEGRADED
    return HealthStatus.HEALTHY


class ServiceHealth(_Model):
    """The document served at the health path."""

    service: str
    """Service name."""

    status: HealthStatus
    """HEALTHY, DEGRADED or UNHEALTHY, computed from the dependencies."""

    version: str
    """Version of the running service."""

    uptime_seconds: float = Field(ge=0)
    """Seconds since the process started."""

    timestamp: datetime
    """When the document was produced (UTC)."""

    dependencies: dict[str, DependencyHealth] = Field(default_factory=dict)
    """Checked dependencies by name (redis, postgres, ...)."""

    @classmethod
    def create(
        cls,
        service: str,
        version: str,
        uptime_seconds: float,
        timestamp: datetime,
        dependencies: dict[str, DependencyHealth],
    ) -> ServiceHealth:
        return cls(
            service=service,
            status=overall_status(dependencies),
            version=version,
            uptime_seconds=uptime_seconds,
            timestamp=timestamp,
            dependencies=dependencies,
        )


def is_ready(status: HealthStatus, degraded_is_ready: bool) -> bool:
    """Readiness mapping: HEALTHY is ready; DEGRADED only when the service allows it; UNHEALTHY never."""
    return status is HealthStatus.HEALTHY or (status is HealthStatus.DEGRADED and degraded_is_ready)
