"""`SentinelRedisClient`: a Redis master found through Sentinel, guarded by backoff and a circuit breaker."""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from tradingstack.contract import RedisEnv
from tradingstack.health.contract import DependencyHealth, DependencyStatus
from tradingstack.resilience.clock import Clock, Sleep, SystemClock
from tradingstack.resilience.guard import CircuitState, ConnectionGuard

T = TypeVar("T")

# Error replies that mean "no usable master right now" rather than a bug in the command.
_UNAVAILABLE_REPLY = re.compile(r"^(NOREPLICAS|READONLY|LOADING|MASTERDOWN|TRYAGAIN)\b")


class RedisUnavailableError(Exception):
    """No master could be reached (or attempts are held back by the backoff or the open circuit)."""


class WriteNotAcknowledgedError(Exception):
    """The master applied a write but fewer replicas than asked confirmed it within the timeout."""

    def __init__(self, acknowledged: int, required: int) -> None:
        super().__init__(f"write acknowledged by {acknowledged} replica(s), {required} required")
        self.acknowledged = acknowledged
        self.required = required


def parse_address(address: str) -> tuple[str, int]:
    """`host:port` -> (host, port)."""
    host, _, port = address.strip().rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"expected host:port, got {address!r}")
    return host, int(port)


@dataclass(frozen=True)
class RedisTls:
    """How to reach servers and sentinels that serve TLS only (`spec.tls`): the CA to verify them with, as a file
    (the services: `RedisEnv.TLS_CA_FILE`) or as PEM text (the operator, from the stack's Secret).

    The certificate must chain to that CA and name the host dialled: the sentinels announce and report the pods'
    DNS names, which the stack's certificate covers (`render.tls.redis_server_names`). The client presents no
    certificate of its own; it authenticates with the password."""

    ca_file: str | None = None
    ca_pem: str | None = None

    def options(self) -> dict[str, Any]:
        """redis-py's connection options (for `redis.Redis` and for `Sentinel`'s connections alike)."""
        return {
            "ssl": True,
            "ssl_cert_reqs": "required",
            "ssl_check_hostname": True,
            "ssl_ca_certs": self.ca_file,
            "ssl_ca_data": self.ca_pem,
        }

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> RedisTls | None:
        """From the env the operator injects: TLS when `RedisEnv.TLS_CA_FILE` is set."""
        ca_file = environ.get(RedisEnv.TLS_CA_FILE)
        return cls(ca_file=ca_file) if ca_file else None


def tls_options(tls: RedisTls | None) -> dict[str, Any]:
    """`tls.options()`, or nothing for plaintext."""
    return tls.options() if tls is not None else {}


def no_retry() -> Retry:
    """redis-py retries with its own sleeps by default; retries here follow the guard instead."""
    return Retry(NoBackoff(), 0)


def _is_unavailable(error: Exception) -> bool:
    if isinstance(error, redis.ConnectionError | redis.TimeoutError):
        return True
    return isinstance(error, redis.ResponseError) and _UNAVAILABLE_REPLY.match(str(error)) is not None


class SentinelRedisClient:
    """The current master of `master_name`, discovered through the sentinels on every (re)connect.

    Backoff and breaker follow the seed (1 -> 30 s, open after 3 failures for 60 s, see `guard`).
    `failover_grace_seconds` (15 s by default: the default down-after of 5 s, an election and a promotion
    with room to spare) is how long an outage is treated as a failover in progress, retried every
    `failover_retry_seconds`. `clock` and `sleep` are injectable so tests never sleep for real. `tls`: the
    sentinels and servers serve TLS only (`spec.tls`).
    """

    def __init__(
        self,
        sentinels: Sequence[str],
        master_name: str,
        password: str | None,
        *,
        clock: Clock | None = None,
        sleep: Sleep = time.sleep,
        socket_timeout: float = 1.0,
        max_wait_ms: int = 1000,
        failover_grace_seconds: float = 15.0,
        failover_retry_seconds: float = 0.1,
        degraded_latency_ms: float = 100.0,
        tls: RedisTls | None = None,
    ) -> None:
        self._clock = clock or SystemClock()
        self._sleep = sleep
        self.degraded_latency_ms = degraded_latency_ms
        self.guard = ConnectionGuard(
            self._clock,
            failover_grace_seconds=failover_grace_seconds,
            failover_retry_seconds=failover_retry_seconds,
        )
        self.max_wait_ms = max_wait_ms
        connection: dict[str, Any] = {
            "password": password,
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_timeout,
            "retry": no_retry(),
            **tls_options(tls),
        }
        # WAIT blocks for up to its timeout before answering: the master's read timeout must outlast it.
        master_connection = connection | {"socket_timeout": socket_timeout + max_wait_ms / 1000}
        addresses = [parse_address(a) for a in sentinels]
        self._sentinel = Sentinel(addresses, sentinel_kwargs=dict(connection), **connection)
        self.master: redis.Redis = self._sentinel.master_for(master_name, **master_connection)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **options: Any) -> SentinelRedisClient:
        """Built from the variables the operator injects (`contract.RedisEnv`)."""
        return cls(
            [a for a in environ[RedisEnv.SENTINELS].split(",") if a.strip()],
            environ[RedisEnv.MASTER_NAME],
            environ.get(RedisEnv.PASSWORD) or None,
            **({"tls": RedisTls.from_env(environ)} | options),
        )

    def execute(self, operation: Callable[[redis.Redis], T]) -> T:
        """One attempt of `operation` against the master, unless the guard holds attempts back."""
        if not self.guard.acquire():
            raise RedisUnavailableError(self.guard.describe())
        try:
            result = operation(self.master)
        except redis.RedisError as error:
            if not _is_unavailable(error):
                # The server answered: the connection is fine even though the command was refused.
                self.guard.record_success()
                raise
            self.guard.record_failure(f"{type(error).__name__}: {error}")
            raise RedisUnavailableError(str(error)) from error
        self.guard.record_success()
        return result

    def call(self, operation: Callable[[redis.Redis], T], timeout_seconds: float) -> T:
        """`execute` with retries as the guard allows them, until `timeout_seconds` have passed."""
        deadline = self._clock.monotonic() + timeout_seconds
        while True:
            try:
                return self.execute(operation)
            except RedisUnavailableError:
                # A half-open trial running in another thread reports no wait: poll at the failover pace.
                wait = self.guard.wait_seconds() or self.guard.failover_retry_seconds
                if self._clock.monotonic() + wait > deadline:
                    raise
                self._sleep(wait)

    def write_confirmed(
        self,
        key: str,
        value: str | bytes,
        replicas: int = 1,
        timeout_ms: int = 1000,
        ex: int | None = None,
        retry_seconds: float = 0.0,
    ) -> None:
        """SET confirmed with `WAIT replicas timeout_ms`; raises WriteNotAcknowledgedError if too few confirm.

        Only an acknowledged write survives a failover: Sentinel promotes the replica with the most data.
        `retry_seconds` > 0 retries an unreachable master (e.g. across a failover) for that long.
        """

        if timeout_ms > self.max_wait_ms:
            raise ValueError(f"timeout_ms {timeout_ms} is above the client's max_wait_ms {self.max_wait_ms}")

        def set_and_wait(master: redis.Redis) -> int:
            # Two round trips, not a pipeline: after a refused SET (NOREPLICAS, READONLY) a pipelined WAIT
            # would still block for its whole timeout.
            master.set(key, value, ex=ex)
            return int(master.wait(replicas, timeout_ms))

        acknowledged = self.call(set_and_wait, retry_seconds)
        if acknowledged < replicas:
            raise WriteNotAcknowledgedError(acknowledged, replicas)

    def health_check(self) -> DependencyHealth:
        """UP with the PING latency; DEGRADED when slow or recovering (half-open); DOWN when unreachable."""
        recovering = self.guard.state is CircuitState.HALF_OPEN
        started = self._clock.monotonic()
        try:
            self.execute(lambda master: master.ping())
        except (RedisUnavailableError, redis.RedisError) as error:
            return DependencyHealth(status=DependencyStatus.DOWN, message=str(error))
        latency_ms = (self._clock.monotonic() - started) * 1000
        if recovering:
            message = "recovering: first answer after the circuit breaker was open"
            return DependencyHealth(status=DependencyStatus.DEGRADED, latency_ms=latency_ms, message=message)
        if latency_ms > self.degraded_latency_ms:
            message = f"slow: {latency_ms:.0f} ms above {self.degraded_latency_ms:.0f} ms"
            return DependencyHealth(status=DependencyStatus.DEGRADED, latency_ms=latency_ms, message=message)
        return DependencyHealth(status=DependencyStatus.UP, latency_ms=latency_ms)

    def close(self) -> None:
        self.master.close()
        self._sentinel.close()


class AsyncHealthSource:
    """`health_check` as a coroutine (the blocking check runs in a worker thread), for async health servers
    (`tradingstack.health.checks.RedisHealthSource`)."""

    def __init__(self, client: SentinelRedisClient) -> None:
        self.client = client

    async def health_check(self) -> DependencyHealth:
        return await asyncio.to_thread(self.client.health_check)
