"""The reference trading service: health contract endpoints, Prometheus metrics and an echo API.

- `/health`: the full `ServiceHealth` document (200, or 503 when UNHEALTHY; the body is always the document).
- `/health/live`: 200 while the process answers; never looks at dependencies (no restart storms).
- `/health/ready`: 200 when HEALTHY, or DEGRADED when degraded is ready (`HEALTH_DEGRADED_IS_READY`); 503 otherwise.
  The three paths are the operator's `spec.services[].health` paths (`HEALTH_PATH`, `HEALTH_LIVE_PATH`,
  `HEALTH_READY_PATH`), these by default.
- `/metrics`: request counts and latency, dependency and service status gauges.
- anything else: echoes the service name, method, path and request id, so a caller (the gateway tests) can
  tell which process answered. Every request runs with the correlation id from `X-Request-ID` (or a new
  one), returned in the response header and written in the JSON log lines.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from demo_service.config import Config
from tradingstack.health.checks import Check, CircuitBreaker, RedisPing, check_postgres, run_checks
from tradingstack.health.contract import DependencyStatus, HealthStatus, ServiceHealth, is_ready
from tradingstack.logs import log_context, setup_json_logging
from tradingstack.redisclient import RedisTls

log = logging.getLogger("demo_service")

METRICS_PATH = "/metrics"

CONFIG_KEY = web.AppKey("config", Config)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests_total", "HTTP requests answered", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "http_request_duration_seconds", "HTTP request latency", ["method", "route"], registry=self.registry
        )
        self.dependency_up = Gauge(
            "dependency_up", "1 when the dependency's last check was UP, else 0", ["dependency"], registry=self.registry
        )
        self.health = Gauge(
            "service_health_status",
            "1 for the current health status, 0 for the others",
            ["status"],
            registry=self.registry,
        )

    def record_health(self, health: ServiceHealth) -> None:
        for name, dependency in health.dependencies.items():
            self.dependency_up.labels(name).set(1 if dependency.status is DependencyStatus.UP else 0)
        for status in HealthStatus:
            self.health.labels(status.value).set(1 if status is health.status else 0)


class ServiceState:
    """What the handlers share: configuration, dependency checks, metrics, start time."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.started = time.monotonic()
        self.metrics = Metrics()
        self.probe_paths = frozenset({config.health_path, config.live_path, config.ready_path, METRICS_PATH})
        """Polled constantly by kubelet and Prometheus: logged at DEBUG only."""
        self.redis: RedisPing | None = None
        self.checks: dict[str, Check] = {}
        timeout = config.check_timeout_seconds
        redis_critical = "redis" in config.critical_dependencies
        if config.redis_url is not None:
            self.redis = RedisPing.from_url(config.redis_url, timeout_seconds=timeout, critical=redis_critical)
        elif config.redis_sentinels:
            self.redis = RedisPing.from_sentinels(
                config.redis_sentinels,
                config.redis_master_name,
                config.redis_password,
                timeout_seconds=timeout,
                critical=redis_critical,
                tls_options=RedisTls(ca_file=config.redis_tls_ca_file).options() if config.redis_tls_ca_file else None,
            )
        if self.redis is not None:
            self.checks["redis"] = self._guarded(self.redis.health_check)
        if config.postgres_conninfo is not None:
            conninfo = config.postgres_conninfo
            postgres_critical = "postgres" in config.critical_dependencies
            self.checks["postgres"] = self._guarded(
                lambda: check_postgres(conninfo, timeout_seconds=timeout, critical=postgres_critical)
            )

    def _guarded(self, check: Check) -> Check:
        return CircuitBreaker(
            check,
            failure_threshold=self.config.circuit_failure_threshold,
            cooldown_seconds=self.config.circuit_cooldown_seconds,
        )

    async def health(self) -> ServiceHealth:
        document = ServiceHealth.create(
            service=self.config.service_name,
            version=self.config.version,
            uptime_seconds=round(time.monotonic() - self.started, 3),
            timestamp=datetime.now(UTC),
            dependencies=await run_checks(self.checks),
        )
        self.metrics.record_health(document)
        return document

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.close()


STATE_KEY = web.AppKey("state", ServiceState)
CORRELATION_ID = "correlation_id"
"""Request key holding the request's correlation id."""


@web.middleware
async def correlation_and_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    correlation_id = request.headers.get("X-Request-ID") or uuid.uuid4().hex
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    request[CORRELATION_ID] = correlation_id
    started = time.monotonic()
    with log_context(correlation_id=correlation_id, service=state.config.service_name):
        try:
            response = await handler(request)
        except web.HTTPException as err:
            response = err
        elapsed = time.monotonic() - started
        state.metrics.requests.labels(request.method, route, str(response.status)).inc()
        state.metrics.latency.labels(request.method, route).observe(elapsed)
        log.log(
            logging.DEBUG if request.path in state.probe_paths else logging.INFO,
            "%s %s -> %s",
            request.method,
            request.path,
            response.status,
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status,
                "durationMs": round(elapsed * 1000, 2),
            },
        )
    response.headers["X-Request-ID"] = correlation_id
    return response


async def health(request: web.Request) -> web.Response:
    document = await request.app[STATE_KEY].health()
    status = 503 if document.status is HealthStatus.UNHEALTHY else 200
    return web.json_response(text=document.model_dump_json(by_alias=True), status=status)


async def live(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def ready(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    document = await state.health()
    answer = {"status": document.status.value}
    if is_ready(document.status, state.config.degraded_is_ready):
        return web.json_response(answer)
    return web.json_response(answer, status=503)


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[STATE_KEY].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def echo(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "service": request.app[CONFIG_KEY].service_name,
            "method": request.method,
            "path": request.path,
            "requestId": request[CORRELATION_ID],
        }
    )


def create_app(config: Config) -> web.Application:
    app = web.Application(middlewares=[correlation_and_metrics])
    state = ServiceState(config)
    app[CONFIG_KEY] = config
    app[STATE_KEY] = state

    async def close_state(_: web.Application) -> None:
        await state.close()

    app.on_cleanup.append(close_state)
    app.router.add_get(config.health_path, health)
    app.router.add_get(config.live_path, live)
    app.router.add_get(config.ready_path, ready)
    app.router.add_get(METRICS_PATH, metrics)
    # Registered last: routes match in registration order.
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


def main() -> None:
    config = Config.from_env()
    # Masks the values of REDIS_PASSWORD, PGPASSWORD, ... (secret-looking names) and DSN passwords.
    setup_json_logging(config.log_level)
    log.info("starting", extra={"port": config.port, "version": config.version})
    web.run_app(create_app(config), host=config.host, port=config.port, access_log=None, print=None)
