"""Fixtures: a rendered Redis Sentinel stack of real processes, torn down (with its logs on failure)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.component.redis.processes import FAST_FAILOVER, RenderedRedis, stack_for


@pytest.fixture
def sentinel_stack(tmp_path: Path) -> Iterator[RenderedRedis]:
    """3 redis-server + 3 redis-sentinel from the rendered ConfigMap, master agreed and replicas in sync."""
    processes = RenderedRedis(tmp_path, stack_for(FAST_FAILOVER).spec.redis)
    try:
        processes.start()
        yield processes
    finally:
        processes.stop()
        print(processes.logs())  # pytest shows it only for a failed test
