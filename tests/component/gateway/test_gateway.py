"""The rendered nginx.conf, run by a real nginx in front of real demo-service processes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import aiohttp
import pytest

from tests.component.gateway.conftest import Gateway, nginx_test
from tests.component.health.processes import POLL_INTERVAL, DemoService
from tests.support import wait_for
from tests.unit.components.test_gateway import example_stack

pytestmark = pytest.mark.component

GENEROUS = {"rateLimit": {"requestsPerSecond": 1000, "burst": 1000}}


async def test_each_prefix_reaches_its_own_service_with_the_prefix_stripped(
    start_gateway: Callable[..., Gateway], demo_services: dict[str, DemoService]
) -> None:
    gateway = start_gateway(**GENEROUS)
    async with aiohttp.ClientSession() as client:
        for name in demo_services:
            async with client.get(f"{gateway.url}/api/{name}/orders/42?side=buy") as response:
                assert response.status == 200
                body = await response.json()
            assert body["service"] == name
            assert body["path"] == "/orders/42"
        async with client.get(f"{gateway.url}/api/unknown/x") as response:
            assert response.status == 404


async def test_request_id_propagates_to_the_service_log_and_back(
    start_gateway: Callable[..., Gateway], demo_services: dict[str, DemoService]
) -> None:
    gateway = start_gateway(**GENEROUS)
    request_id = f"component-{uuid.uuid4()}"
    async with (
        aiohttp.ClientSession() as client,
        client.post(f"{gateway.url}/api/execution/trade", headers={"X-Request-ID": request_id}) as response,
    ):
        assert response.status == 200
        assert response.headers["X-Request-ID"] == request_id
        assert (await response.json())["requestId"] == request_id

    def service_line() -> dict[str, object] | None:
        records = demo_services["execution"].log_records()
        return next((r for r in records if r.get("correlation_id") == request_id), None)

    line = wait_for(
        service_line, what="the execution service's log line with the request id", timeout=10, interval=POLL_INTERVAL
    )
    assert line["path"] == "/trade"
    assert line["method"] == "POST"

    def access_line() -> dict[str, object] | None:
        records = [json.loads(row) for row in gateway.access_log.read_text().splitlines() if row.startswith("{")]
        return next((r for r in records if r.get("requestId") == request_id), None)

    access = wait_for(
        access_line, what="the gateway's JSON access log line with the request id", timeout=10, interval=POLL_INTERVAL
    )
    assert access["uri"] == "/api/execution/trade"
    assert access["status"] == 200


async def test_a_request_without_id_gets_one_from_the_gateway(
    start_gateway: Callable[..., Gateway],
) -> None:
    gateway = start_gateway(**GENEROUS)
    async with aiohttp.ClientSession() as client, client.get(f"{gateway.url}/api/ai-engine/") as response:
        generated = response.headers["X-Request-ID"]
        assert len(generated) == 32
        assert (await response.json())["requestId"] == generated


async def test_requests_past_the_burst_get_429_and_healthz_is_not_limited(
    start_gateway: Callable[..., Gateway],
) -> None:
    burst = 3
    gateway = start_gateway(rateLimit={"requestsPerSecond": 1, "burst": burst})
    statuses: list[int] = []
    async with aiohttp.ClientSession() as client:
        # The first 1 + burst requests are always accepted (the bucket only drains with time); at 1 request per
        # second, 50 requests in a row cannot all fit.
        for _ in range(50):
            async with client.get(f"{gateway.url}/api/risk-safety/limits") as response:
                statuses.append(response.status)
            if response.status == 429:
                break
        async with client.get(f"{gateway.url}/healthz") as response:
            assert response.status == 200
    assert statuses[: burst + 1] == [200] * (burst + 1)
    assert statuses[-1] == 429


def test_nginx_accepts_the_rendered_config_of_the_full_example() -> None:
    # Cluster DNS names do not resolve here and nginx resolves upstream servers when it loads the config, so the
    # same config is rendered with the local upstream host; everything else is identical.
    result = nginx_test(example_stack(), upstream_host="127.0.0.1")
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_nginx_rejects_a_broken_config() -> None:
    """The check above can fail: nginx -t refuses an unresolvable upstream host."""
    result = nginx_test(example_stack(), upstream_host="{service}.invalid")
    assert result.returncode != 0
    assert "host not found in upstream" in result.stderr
