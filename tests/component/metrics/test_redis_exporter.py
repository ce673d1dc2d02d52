"""The rendered redis_exporter sidecar against the rendered Redis Sentinel servers: it authenticates with the
password of the stack's Secret and reports each server's role and replicas; a wrong password reports redis_up 0."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.component.metrics.sidecar import RunningExporter, rendered_sidecar, running_sidecar
from tests.component.redis.processes import FAST_FAILOVER, HOST, RenderedRedis, running_redis, stack_for
from tests.dashboard import REDIS_ROW, exporter_metrics
from tradingstack.contract import RedisExporterEnv, SecretKey
from tradingstack.render.common import REDIS_PORT
from tradingstack.render.redis import redis_secret_name

pytestmark = pytest.mark.component
STACK = stack_for({**FAST_FAILOVER, "metrics": {"enabled": True}})
SIDECAR = rendered_sidecar(STACK, "comp-redis")


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RenderedRedis]:
    with running_redis(tmp_path_factory.mktemp("redis"), FAST_FAILOVER) as processes:
        yield processes


@contextmanager
def exporter(servers: RenderedRedis, index: int, password: str, log: Path) -> Iterator[RunningExporter]:
    """The sidecar of server `index`'s pod, given `password` as the value of the stack's Secret."""
    pod_address = f"127.0.0.1:{REDIS_PORT.number}"
    moves = {RedisExporterEnv.ADDRESS: (pod_address, f"{HOST}:{servers.redis_ports[index]}")}
    secrets = {(redis_secret_name(STACK), SecretKey.PASSWORD): password}
    with running_sidecar(SIDECAR, secrets, RedisExporterEnv.LISTEN_ADDRESS, moves, log) as running:
        yield running


def roles(running: RunningExporter) -> list[str]:
    return [labels["role"] for labels, _ in running.scrape()["redis_instance_info"]]


def test_the_sidecar_reports_the_master_and_its_replicas(servers: RenderedRedis, tmp_path: Path) -> None:
    master = servers.wait_stable(timeout=60)
    with exporter(servers, master, servers.password, tmp_path / "exporter.log") as running:
        assert running.value("redis_up") == 1
        assert roles(running) == ["master"]
        assert running.value("redis_connected_slaves") == FAST_FAILOVER["replicas"] - 1
        assert running.value("redis_connected_clients") >= 1
        assert running.value("redis_memory_used_bytes") > 0
        assert exporter_metrics(REDIS_ROW) <= set(running.scrape()), "the dashboard reads what the exporter serves"


def test_the_sidecar_of_a_replica_reports_its_role(servers: RenderedRedis, tmp_path: Path) -> None:
    master = servers.wait_stable(timeout=60)
    replica = next(i for i in servers.running_redis() if i != master)
    with exporter(servers, replica, servers.password, tmp_path / "exporter.log") as running:
        assert running.value("redis_up") == 1
        assert roles(running) == ["slave"]
        assert running.value("redis_connected_slaves") == 0


def test_a_wrong_password_is_reported_as_down(servers: RenderedRedis, tmp_path: Path) -> None:
    with exporter(servers, 0, "not-the-password", tmp_path / "exporter.log") as running:
        samples: dict[str, Any] = running.scrape()
        assert running.value("redis_up") == 0
        assert "redis_instance_info" not in samples
