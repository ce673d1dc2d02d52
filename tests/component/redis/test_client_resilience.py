"""Backoff and circuit breaker of SentinelRedisClient against a real server that is stopped and started.

Time is an injected fake clock: the tests move it forward instead of sleeping, and never measure durations.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.component.redis.processes import POLL_SECONDS, RenderedRedis, running_redis
from tests.support import wait_for
from tradingstack.health.contract import DependencyStatus
from tradingstack.redisclient import (
    BACKOFF_SECONDS,
    AsyncHealthSource,
    CircuitState,
    RedisUnavailableError,
    SentinelRedisClient,
    WriteNotAcknowledgedError,
    backoff_delay,
)

pytestmark = pytest.mark.component

SINGLE_SERVER = {"replicas": 1, "sentinels": 1, "quorum": 1, "minReplicasToWrite": 0, "downAfterMilliseconds": 2000}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def single_server(tmp_path: Path) -> Iterator[RenderedRedis]:
    """One redis-server watched by one sentinel (no failover possible: stopping it is an outage)."""
    with running_redis(tmp_path, SINGLE_SERVER) as processes:
        yield processes


def client_for(stack: RenderedRedis, clock: FakeClock, grace: float = 0.0) -> SentinelRedisClient:
    return SentinelRedisClient(
        stack.sentinel_addresses,
        stack.spec.master_name,
        stack.password,
        clock=clock,
        socket_timeout=0.5,
        failover_grace_seconds=grace,
    )


def connections_received(stack: RenderedRedis) -> int:
    return int(stack.server(0).info("stats")["total_connections_received"])


def ping(client: SentinelRedisClient) -> None:
    client.execute(lambda master: master.ping())


def circuit_state(client: SentinelRedisClient) -> CircuitState:
    """The breaker's state now. Read through a call: mypy narrows `client.guard.state` after an assert as if it
    were a stored attribute, and would carry that state across the fake clock moving it."""
    return client.guard.state


def test_backoff_schedule_doubles_up_to_thirty_seconds() -> None:
    assert [backoff_delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 30, 30, 30]
    assert BACKOFF_SECONDS[-1] == 30


def test_breaker_opens_after_three_failures_then_half_opens(single_server: RenderedRedis) -> None:
    stack, clock = single_server, FakeClock()
    client = client_for(stack, clock)
    assert client.health_check().status is DependencyStatus.UP

    stack.kill_redis(0)
    for failures, delay in enumerate(BACKOFF_SECONDS[:2], start=1):
        with pytest.raises(RedisUnavailableError):
            ping(client)
        assert client.guard.consecutive_failures == failures
        assert client.guard.wait_seconds() == delay
        with pytest.raises(RedisUnavailableError, match="backing off"):
            ping(client)  # held back: no attempt, so not counted
        assert client.guard.consecutive_failures == failures
        clock.advance(delay)

    with pytest.raises(RedisUnavailableError):
        ping(client)
    assert circuit_state(client) is CircuitState.OPEN
    assert client.guard.wait_seconds() == 60
    down = client.health_check()
    assert down.status is DependencyStatus.DOWN
    assert "circuit open" in down.message
    assert stack.password not in down.message

    stack.start_redis(0)
    wait_for(lambda: stack.role(0) == "master", timeout=30, interval=POLL_SECONDS, what="the server to be back")
    before = connections_received(stack)
    clock.advance(59)
    with pytest.raises(RedisUnavailableError, match="circuit open"):
        ping(client)
    assert connections_received(stack) == before + 1, "an open circuit must not touch the server"

    clock.advance(1)
    assert circuit_state(client) is CircuitState.HALF_OPEN
    recovering = client.health_check()
    assert recovering.status is DependencyStatus.DEGRADED
    assert recovering.latency_ms is not None
    assert circuit_state(client) is CircuitState.CLOSED
    assert client.health_check().status is DependencyStatus.UP
    assert asyncio.run(AsyncHealthSource(client).health_check()).status is DependencyStatus.UP
    client.close()


def test_failed_half_open_trial_reopens_the_circuit(single_server: RenderedRedis) -> None:
    stack, clock = single_server, FakeClock()
    client = client_for(stack, clock)
    stack.kill_redis(0)
    for delay in BACKOFF_SECONDS[:3]:
        with pytest.raises(RedisUnavailableError):
            ping(client)
        clock.advance(delay)
    clock.advance(60)
    assert circuit_state(client) is CircuitState.HALF_OPEN
    with pytest.raises(RedisUnavailableError):
        ping(client)
    assert circuit_state(client) is CircuitState.OPEN
    assert client.guard.wait_seconds() == 60
    client.close()


def test_failures_within_the_failover_grace_are_retried_quickly_and_not_counted(single_server: RenderedRedis) -> None:
    stack, clock = single_server, FakeClock()
    client = client_for(stack, clock, grace=10)
    stack.kill_redis(0)
    for _ in range(5):
        with pytest.raises(RedisUnavailableError):
            ping(client)
        assert client.guard.consecutive_failures == 0
        assert client.guard.wait_seconds() == pytest.approx(client.guard.failover_retry_seconds)
        clock.advance(client.guard.failover_retry_seconds)

    clock.advance(10)
    with pytest.raises(RedisUnavailableError):
        ping(client)
    assert client.guard.consecutive_failures == 1
    assert client.guard.wait_seconds() == BACKOFF_SECONDS[0]
    client.close()


def test_write_confirmed_refuses_a_write_no_replica_acknowledged(single_server: RenderedRedis) -> None:
    stack = single_server
    client = client_for(stack, FakeClock())
    with pytest.raises(WriteNotAcknowledgedError, match=r"acknowledged by 0 replica\(s\), 1 required"):
        client.write_confirmed("unreplicated", "x", replicas=1, timeout_ms=100)
    client.close()
