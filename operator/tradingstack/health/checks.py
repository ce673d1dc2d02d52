"""Dependency checks (I/O) producing `DependencyHealth`: Postgres, HTTP endpoints, Redis.

Every check has a deadline and never raises: a failure is a DOWN result whose message names the error class
and a masked description (no credentials, whatever the driver put in its exception text).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import aiohttp
import psycopg
import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel

from tradingstack.health.contract import DependencyHealth, DependencyStatus
from tradingstack.logs import mask_text
from tradingstack.resilience.clock import Clock, SystemClock
from tradingstack.resilience.guard import BACKOFF_SECONDS, ConnectionGuard

Check = Callable[[], Awaitable[DependencyHealth]]

DEFAULT_TIMEOUT_SECONDS = 2.0
SLOW_FRACTION = 0.5
"""An answer slower than this fraction of the timeout is DEGRADED: the dependency works but is struggling."""


class RedisHealthSource(Protocol):
    """Anything that can report Redis health (the redisclient connection manager, `RedisPing`)."""

    async def health_check(self) -> DependencyHealth: ...


def _elapsed_ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 2)


def _down(err: BaseException, critical: bool) -> DependencyHealth:
    detail = mask_text(str(err)).strip().splitlines()
    message = f"{type(err).__name__}: {detail[0]}" if detail else type(err).__name__
    return DependencyHealth(status=DependencyStatus.DOWN, message=message[:300], critical=critical)


def _answered(started: float, timeout_seconds: float, critical: bool) -> DependencyHealth:
    latency = _elapsed_ms(started)
    if latency > timeout_seconds * 1000 * SLOW_FRACTION:
        return DependencyHealth(
            status=DependencyStatus.DEGRADED, latency_ms=latency, message="slow answer", critical=critical
        )
    return DependencyHealth(status=DependencyStatus.UP, latency_ms=latency, critical=critical)


async def check_postgres(
    conninfo: str = "", *, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS, critical: bool = True
) -> DependencyHealth:
    """Connect and run `SELECT 1`. An empty `conninfo` uses libpq's PG* environment variables."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout_seconds):
            connection = await psycopg.AsyncConnection.connect(conninfo, connect_timeout=max(1, int(timeout_seconds)))
            async with connection:
                await connection.execute("SELECT 1")
    except (TimeoutError, psycopg.Error, OSError) as err:
        return _down(err, critical)
    return _answered(started, timeout_seconds, critical)


async def check_http(
    url: str,
    *,
    session: aiohttp.ClientSession | None = None,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    critical: bool = False,
) -> DependencyHealth:
    """GET `url`; UP on a 2xx/3xx answer, DOWN otherwise. Pass a `session` to reuse connections."""
    if session is None:
        async with aiohttp.ClientSession() as own_session:
            return await check_http(url, session=own_session, timeout_seconds=timeout_seconds, critical=critical)
    started = time.monotonic()
    try:
        request = session.get(url, timeout=aiohttp.ClientTimeout(total=timeout_seconds), allow_redirects=False)
        async with request as response:
            status = response.status
    except (TimeoutError, aiohttp.ClientError, OSError) as err:
        return _down(err, critical)
    if status >= 400:
        return DependencyHealth(
            status=DependencyStatus.DOWN, latency_ms=_elapsed_ms(started), message=f"HTTP {status}", critical=critical
        )
    return _answered(started, timeout_seconds, critical)


class RedisPing:
    """`RedisHealthSource` that PINGs Redis directly (a URL, or the master found through Sentinel)."""

    def __init__(
        self, client: aioredis.Redis, *, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS, critical: bool = True
    ):
        self._client = client
        self._timeout = timeout_seconds
        self._critical = critical

    @classmethod
    def from_url(
        cls, url: str, *, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS, critical: bool = True
    ) -> RedisPing:
        client = aioredis.Redis.from_url(url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds)
        return cls(client, timeout_seconds=timeout_seconds, critical=critical)

    @classmethod
    def from_sentinels(
        cls,
        sentinels: list[tuple[str, int]],
        master_name: str,
        password: str | None = None,
        *,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        critical: bool = True,
        tls_options: Mapping[str, Any] | None = None,
    ) -> RedisPing:
        """`tls_options`: redis-py's TLS options when the sentinels and servers serve TLS only (`spec.tls`;
        `redisclient.RedisTls.options`)."""
        tls = dict(tls_options or {})
        sentinel = Sentinel(
            sentinels,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            password=password,
            sentinel_kwargs={"socket_timeout": timeout_seconds, "password": password, **tls},
            **tls,
        )
        return cls(sentinel.master_for(master_name), timeout_seconds=timeout_seconds, critical=critical)

    async def health_check(self) -> DependencyHealth:
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._timeout):
                await self._client.ping()
        except (TimeoutError, aioredis.RedisError, OSError) as err:
            return _down(err, self._critical)
        return _answered(started, self._timeout, self._critical)

    async def close(self) -> None:
        await self._client.aclose()


class CircuitBreaker:
    """A check behind the Redis client's `ConnectionGuard`: after a DOWN result the check is not called again
    for the backoff (1, 2, 4, ... s), and after `failure_threshold` DOWN results in a row not for
    `cooldown_seconds`; then one trial call decides. Meanwhile the last failure is reported, saying why.
    Keeps health polling from piling connection attempts onto a dependency that is already struggling. Until
    the dependency first answers it is starting, not struggling: it is tried again after the first backoff step
    and nothing is counted, so a service that starts before its stores reports UP as soon as they are."""

    def __init__(
        self,
        check: Check,
        *,
        failure_threshold: int = 3,
        cooldown_seconds: float = 60.0,
        clock: Clock | None = None,
    ) -> None:
        self._check = check
        self._guard = ConnectionGuard(
            clock or SystemClock(),
            failure_threshold=failure_threshold,
            open_seconds=cooldown_seconds,
            startup_retry_seconds=BACKOFF_SECONDS[0],
        )
        self._failure: DependencyHealth | None = None

    async def __call__(self) -> DependencyHealth:
        if self._failure is not None and not self._guard.acquire():
            return self._failure.model_copy(update={"message": self._guard.describe()})
        result = await self._check()
        if result.status is DependencyStatus.DOWN:
            self._guard.record_failure(result.message)
            self._failure = result
        else:
            self._guard.record_success()
            self._failure = None
        return result


async def run_checks(checks: Mapping[str, Check]) -> dict[str, DependencyHealth]:
    """Run all checks concurrently; results by name, in the order given."""
    results = await asyncio.gather(*(check() for check in checks.values()))
    return dict(zip(checks, results, strict=True))
