"""Time as an injected dependency, so tests drive the backoff and the breaker without sleeping."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

Sleep = Callable[[float], None]


class Clock(Protocol):
    def monotonic(self) -> float: ...


class SystemClock:
    """The real monotonic clock."""

    def monotonic(self) -> float:
        return time.monotonic()
