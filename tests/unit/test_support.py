"""The test helpers themselves: a port handed out is never handed out again in the same run."""

from __future__ import annotations

from tests.support import free_port


def test_free_ports_are_distinct_across_many_calls() -> None:
    ports = [free_port() for _ in range(3000)]
    assert len(set(ports)) == len(ports)
