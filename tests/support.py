"""Small helpers every test tier uses: a free local port, and polling with a deadline (never a timed assert)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(
    predicate: Callable[[], T | None],
    *,
    timeout: float = 120.0,
    interval: float = 1.0,
    what: str = "condition",
    tolerate: tuple[type[Exception], ...] = (),
) -> T:
    """Polls `predicate` until it returns something truthy and returns that; fails after `timeout` seconds.
    Exceptions of the `tolerate` types count as "not yet" (the last one is reported on failure)."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = predicate()
        except tolerate as exc:
            result, last_error = None, exc
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last error: {last_error}")
        time.sleep(interval)
