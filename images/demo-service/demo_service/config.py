"""Configuration from environment variables (the operator injects them; tests set them for a process).

The names are `tradingstack.contract`'s, which the operator's renderer uses too (a unit test feeds the rendered
env of every service of the example into `Config.from_env`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from tradingstack.contract import PostgresEnv, Probe, RedisEnv, ServiceEnv, parse_flag


def _names(value: str) -> frozenset[str]:
    return frozenset(part.strip() for part in value.split(",") if part.strip())


@dataclass(frozen=True)
class Config:
    service_name: str
    port: int
    version: str
    host: str
    degraded_is_ready: bool
    health_path: str
    """Where the full health document is served; the operator reads it there."""
    live_path: str
    ready_path: str
    redis_url: str | None
    """Direct Redis URL; takes precedence over Sentinel discovery."""
    redis_sentinels: list[tuple[str, int]]
    """host:port pairs of the sentinels (comma-separated in the env)."""
    redis_master_name: str
    redis_password: str | None
    redis_tls_ca_file: str | None
    """With `spec.tls`: the CA file the sentinels and servers are verified with (TLS only when set)."""
    postgres_conninfo: str | None
    """The Postgres URL, or "" when only the libpq variables are set (libpq reads them), or None: no Postgres."""
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
        for address in _names(env.get(RedisEnv.SENTINELS, "")):
            host, _, port = address.rpartition(":")
            sentinels.append((host, int(port)))
        if PostgresEnv.URL in env:
            conninfo: str | None = env[PostgresEnv.URL]
        elif PostgresEnv.HOST in env:
            conninfo = ""
        else:
            conninfo = None
        return cls(
            service_name=env.get(ServiceEnv.SERVICE_NAME, "demo-service"),
            port=int(env.get(ServiceEnv.PORT, "8000")),
            version=env.get(ServiceEnv.VERSION, "0.0.0"),
            host=env.get(ServiceEnv.HOST, "0.0.0.0"),  # noqa: S104 - a service in a pod listens on all addresses
            degraded_is_ready=parse_flag(env.get(ServiceEnv.DEGRADED_IS_READY, "true")),
            health_path=env.get(ServiceEnv.HEALTH_PATH, Probe.HEALTH),
            live_path=env.get(ServiceEnv.LIVE_PATH, Probe.LIVE),
            ready_path=env.get(ServiceEnv.READY_PATH, Probe.READY),
            redis_url=env.get(RedisEnv.URL),
            redis_sentinels=sorted(sentinels),
            redis_master_name=env.get(RedisEnv.MASTER_NAME, "tradingstack"),
            redis_password=env.get(RedisEnv.PASSWORD) or None,
            redis_tls_ca_file=env.get(RedisEnv.TLS_CA_FILE) or None,
            postgres_conninfo=conninfo,
            critical_dependencies=_names(env.get(ServiceEnv.CRITICAL_DEPENDENCIES, "redis,postgres")),
            check_timeout_seconds=float(env.get(ServiceEnv.CHECK_TIMEOUT_SECONDS, "2")),
            circuit_failure_threshold=int(env.get(ServiceEnv.CIRCUIT_FAILURE_THRESHOLD, "3")),
            circuit_cooldown_seconds=float(env.get(ServiceEnv.CIRCUIT_COOLDOWN_SECONDS, "60")),
            log_level=env.get(ServiceEnv.LOG_LEVEL, "INFO"),
        )
