"""The dependency checks against real servers: UP when they answer, DOWN with a clean message when not."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.component.health.processes import DemoService, RedisServer, start_demo_service, stop
from tests.component.postgres.server import PostgresServer
from tests.support import free_port
from tradingstack.health.checks import RedisHealthSource, RedisPing, check_http, check_postgres, run_checks
from tradingstack.health.contract import DependencyStatus

pytestmark = pytest.mark.component

MASTER_NAME = "tradingstack"


@pytest.fixture
def sentinel_port(tmp_path: Path, redis_server: RedisServer) -> Iterator[int]:
    """A real redis-sentinel monitoring `redis_server` (it rewrites its config file, hence a private copy)."""
    port = free_port()
    config = tmp_path / "sentinel.conf"
    config.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor {MASTER_NAME} 127.0.0.1 {redis_server.port} 1\n"
        f"sentinel auth-pass {MASTER_NAME} {redis_server.password}\n"
    )
    binary = shutil.which("redis-sentinel")
    assert binary, "redis-sentinel not found: install redis-sentinel (hack/install-prereqs.sh)"
    process = subprocess.Popen([binary, str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield port
    finally:
        stop(process)


@pytest.fixture
def unhealthy_demo(tmp_path: Path) -> Iterator[DemoService]:
    """A demo service whose database is unreachable: /health answers 503, /health/live 200."""
    service = start_demo_service(
        "ai-engine", tmp_path, DATABASE_URL=f"postgresql://trading:pw@127.0.0.1:{free_port()}/trading"
    )
    yield service
    service.stop()


async def test_redis_ping_direct_and_through_sentinel(redis_server: RedisServer, sentinel_port: int) -> None:
    direct = RedisPing.from_url(redis_server.url)
    via_sentinel = RedisPing.from_sentinels([("127.0.0.1", sentinel_port)], MASTER_NAME, redis_server.password)
    sources: dict[str, RedisHealthSource] = {"direct": direct, "sentinel": via_sentinel}
    try:
        # The sentinel answers master queries once it has connected to the master.
        deadline = time.monotonic() + 30
        while (await via_sentinel.health_check()).status is not DependencyStatus.UP:
            assert time.monotonic() < deadline, "the master was not reachable through the sentinel within 30s"
            await asyncio.sleep(0.1)
        results = await run_checks({name: source.health_check for name, source in sources.items()})
        assert {name: r.status for name, r in results.items()} == {
            "direct": DependencyStatus.UP,
            "sentinel": DependencyStatus.UP,
        }
        redis_server.stop()
        results = await run_checks({name: source.health_check for name, source in sources.items()})
        assert all(r.status is DependencyStatus.DOWN for r in results.values())
        assert all(redis_server.password not in r.message for r in results.values())
    finally:
        await direct.close()
        await via_sentinel.close()


async def test_wrong_redis_password_is_down_without_the_password(redis_server: RedisServer) -> None:
    wrong = "not-the-redis-password"
    check = RedisPing.from_url(f"redis://:{wrong}@127.0.0.1:{redis_server.port}/0")
    try:
        result = await check.health_check()
    finally:
        await check.close()
    assert result.status is DependencyStatus.DOWN
    assert wrong not in result.message


async def test_postgres_check(postgres: PostgresServer) -> None:
    up = await check_postgres(postgres.url())
    assert up.status is DependencyStatus.UP
    assert up.latency_ms is not None
    closed = await check_postgres(f"postgresql://trading:{postgres.password}@127.0.0.1:{free_port()}/postgres")
    assert closed.status is DependencyStatus.DOWN
    assert postgres.password not in closed.message
    assert closed.critical


async def test_http_check(unhealthy_demo: DemoService) -> None:
    async with aiohttp.ClientSession() as session:
        up = await check_http(f"{unhealthy_demo.url}/health/live", session=session)
        failing = await check_http(f"{unhealthy_demo.url}/health", session=session, critical=True)
    assert up.status is DependencyStatus.UP
    assert up.critical is False
    assert (failing.status, failing.message, failing.critical) == (DependencyStatus.DOWN, "HTTP 503", True)
    refused = await check_http(f"http://127.0.0.1:{free_port()}/health")
    assert refused.status is DependencyStatus.DOWN
    assert refused.message.startswith("ClientConnectorError")
