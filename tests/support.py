"""Small helpers every test tier uses: a free local port, and polling with a deadline (never a timed assert)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


_handed_out: set[int] = set()


def free_port() -> int:
    """A local port nothing listens on, never the same twice in one test run. The kernel may give a port it
    just gave again once the probe socket is closed; two servers of one fixture then collide (CI saw a Redis
    server and a sentinel handed the same port)."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


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
