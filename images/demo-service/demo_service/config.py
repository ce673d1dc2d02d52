"""Configuration from environment variables (the operator injects them; tests set them for a process)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


def _flag(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _names(value: str) -> frozenset[str]:
    return frozenset(part.strip() for part in value.split(",") if part.strip())


@dataclass(frozen=True)
class Config:
    service_name: str
    port: int
    version: str
    host: str
    degraded_is_ready: bool
    redis_url: str | None
    """Direct Redis URL (REDIS_URL); takes precedence over Sentinel discovery."""
    redis_sentinels: list[tuple[str, int]]
    """host:port pairs from REDIS_SENTINELS (comma-separated)."""
    redis_master_name: str
    redis_password: str | None
    postgres_conninfo: str | None
    """DATABASE_URL, or "" when only PG* variables are set (libpq reads them), or None: no Postgres."""
    critical_dependencies: frozenset[str]
    """Dependencies whose outage makes the service UNHEALTHY rather than DEGRADED."""
    check_timeout_seconds: float
    circuit_failure_threshold: int
    circuit_cooldown_seconds: float
    log_level: str

    @property
    def uses_redis(self) -> bool:
        return self.redis_url is not None or bool(self.redis_sentinels)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Config:
        sentinels = []
        for address in _names(env.get("REDIS_SENTINELS", "")):
            host, _, port = address.rpartition(":")
            sentinels.append((host, int(port)))
        if "DATABASE_URL" in env:
            conninfo: str | None = env["DATABASE_URL"]
        elif "PGHOST" in env:
            conninfo = ""
        else:
            conninfo = None
        return cls(
            service_name=env.get("SERVICE_NAME", "demo-service"),
            port=int(env.get("PORT", "8000")),
            version=env.get("VERSION", "0.0.0"),
            host=env.get("HOST", "0.0.0.0"),  # noqa: S104 - a service in a pod listens on all addresses
            degraded_is_ready=_flag(env.get("DEGRADED_IS_READY", "true")),
            redis_url=env.get("REDIS_URL"),
            redis_sentinels=sorted(sentinels),
            redis_master_name=env.get("REDIS_MASTER_NAME", "tradingstack"),
            redis_password=env.get("REDIS_PASSWORD") or None,
            postgres_conninfo=conninfo,
            critical_dependencies=_names(env.get("CRITICAL_DEPENDENCIES", "redis,postgres")),
            check_timeout_seconds=float(env.get("HEALTH_CHECK_TIMEOUT_SECONDS", "2")),
            circuit_failure_threshold=int(env.get("CIRCUIT_FAILURE_THRESHOLD", "3")),
            circuit_cooldown_seconds=float(env.get("CIRCUIT_COOLDOWN_SECONDS", "60")),
            log_level=env.get("LOG_LEVEL", "INFO"),
        )
