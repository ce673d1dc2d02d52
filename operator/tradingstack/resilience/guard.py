"""When the next attempt to reach Redis may start: exponential backoff plus a circuit breaker.

After a failure the next attempt waits 1, 2, 4, 8, 16, then 30 s (capped). After `failure_threshold`
consecutive failures the circuit opens: no attempt at all for `open_seconds`; then it half-opens and lets one
trial through, which closes it on success and reopens it on failure.

A failover is not an outage: Sentinel needs down-after-milliseconds plus an election to replace a dead master,
and a client that backs off for seconds (or opens its breaker for a minute) in that window turns a few
seconds of failover into a long outage. So during the first `failover_grace_seconds` of an outage, failures
are retried every `failover_retry_seconds` and not counted; only an outage that outlasts the grace is met
with backoff and the breaker.

A dependency never yet reached is starting, not struggling (a service usually starts before its Redis and
Postgres are ready): with `startup_retry_seconds` set, failures before the first success are retried at that
interval and not counted, so the breaker cannot hold back the first answer for a minute after the dependency
came up.
"""

from __future__ import annotations

import threading
from enum import StrEnum

from tradingstack.resilience.clock import Clock

BACKOFF_SECONDS = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)


def backoff_delay(consecutive_failures: int) -> float:
    """Delay before the next attempt after `consecutive_failures` (>= 1) counted failures."""
    return BACKOFF_SECONDS[min(consecutive_failures, len(BACKOFF_SECONDS)) - 1]


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class ConnectionGuard:
    """Thread-safe bookkeeping of failures; it never sleeps itself, it says how long to wait."""

    def __init__(
        self,
        clock: Clock,
        failure_threshold: int = 3,
        open_seconds: float = 60.0,
        failover_grace_seconds: float = 0.0,
        failover_retry_seconds: float = 0.1,
        startup_retry_seconds: float | None = None,
    ) -> None:
        self._clock = clock
        self.failure_threshold = failure_threshold
        self.open_seconds = open_seconds
        self.failover_grace_seconds = failover_grace_seconds
        self.failover_retry_seconds = failover_retry_seconds
        self.startup_retry_seconds = startup_retry_seconds
        self._ever_succeeded = False
        self._lock = threading.Lock()
        self._failures = 0
        self._outage_started: float | None = None
        self._retry_at = 0.0
        self._opened_at: float | None = None
        self._trial_in_flight = False
        self.last_error = ""

    @property
    def consecutive_failures(self) -> int:
        """Failures counted towards backoff and breaker (those within the failover grace are not)."""
        return self._failures

    @property
    def state(self) -> CircuitState:
        with self._lock:
            return self._state(self._clock.monotonic())

    def _state(self, now: float) -> CircuitState:
        if self._opened_at is None:
            return CircuitState.CLOSED
        if now < self._opened_at + self.open_seconds:
            return CircuitState.OPEN
        return CircuitState.HALF_OPEN

    def wait_seconds(self) -> float:
        """Seconds until the next attempt is allowed (0: now)."""
        with self._lock:
            now = self._clock.monotonic()
            if self._state(now) is CircuitState.OPEN:
                assert self._opened_at is not None
                return self._opened_at + self.open_seconds - now
            return max(0.0, self._retry_at - now)

    def acquire(self) -> bool:
        """May an attempt start now? In half-open state only one trial at a time is let through."""
        with self._lock:
            now = self._clock.monotonic()
            state = self._state(now)
            if state is CircuitState.OPEN:
                return False
            if state is CircuitState.HALF_OPEN:
                if self._trial_in_flight:
                    return False
                self._trial_in_flight = True
                return True
            return now >= self._retry_at

    def record_success(self) -> None:
        with self._lock:
            self._ever_succeeded = True
            self._failures = 0
            self._outage_started = None
            self._retry_at = 0.0
            self._opened_at = None
            self._trial_in_flight = False
            self.last_error = ""

    def record_failure(self, error: str) -> None:
        with self._lock:
            now = self._clock.monotonic()
            self.last_error = error
            self._trial_in_flight = False
            if self._outage_started is None:
                self._outage_started = now
            if not self._ever_succeeded and self.startup_retry_seconds is not None:
                self._retry_at = now + self.startup_retry_seconds
            elif self._state(now) is CircuitState.HALF_OPEN:
                self._failures += 1
                self._opened_at = now
            elif now - self._outage_started < self.failover_grace_seconds:
                self._retry_at = now + self.failover_retry_seconds
            else:
                self._failures += 1
                self._retry_at = now + backoff_delay(self._failures)
                if self._failures >= self.failure_threshold:
                    self._opened_at = now

    def describe(self) -> str:
        """Why attempts are held back, for health messages and errors (never contains credentials)."""
        with self._lock:
            now = self._clock.monotonic()
            state = self._state(now)
            if state is CircuitState.OPEN:
                assert self._opened_at is not None
                remaining = self._opened_at + self.open_seconds - now
                return (
                    f"circuit open after {self._failures} consecutive failures, next attempt in {remaining:.1f}s"
                    f" (last error: {self.last_error})"
                )
            if now < self._retry_at:
                return f"backing off for {self._retry_at - now:.1f}s (last error: {self.last_error})"
            return f"{state} (last error: {self.last_error or 'none'})"
