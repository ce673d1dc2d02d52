"""Fixtures: a rendered Redis Sentinel stack of real processes, torn down (with its logs on failure)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.component.redis.processes import FAST_FAILOVER, HostNetwork, RenderedRedis, running_redis


@pytest.fixture
def sentinel_stack(tmp_path: Path) -> Iterator[RenderedRedis]:
    """3 redis-server + 3 redis-sentinel from the rendered ConfigMap, master agreed and replicas in sync."""
    with running_redis(tmp_path, FAST_FAILOVER) as processes:
        yield processes


@pytest.fixture
def networked_stack(tmp_path: Path) -> Iterator[RenderedRedis]:
    """`sentinel_stack` with each server on a host of its own, so the network between them can be cut."""
    with (
        HostNetwork(FAST_FAILOVER["replicas"]) as network,
        running_redis(tmp_path, FAST_FAILOVER, network) as processes,
    ):
        yield processes
