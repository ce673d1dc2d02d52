"""Redis client for the trading services and the operator: Sentinel discovery, backoff, circuit breaker.

- `SentinelRedisClient`: what a service uses (built from the env the operator injects, `from_env()`).
- `observe_master`: what the operator uses to learn which server the sentinels agree is the master.
"""

from tradingstack.redisclient.client import (
    AsyncHealthSource,
    RedisTls,
    RedisUnavailableError,
    SentinelRedisClient,
    WriteNotAcknowledgedError,
    parse_address,
)
from tradingstack.redisclient.observe import MasterAddress, MasterObservation, observe_master
from tradingstack.resilience.clock import Clock, Sleep, SystemClock
from tradingstack.resilience.guard import BACKOFF_SECONDS, CircuitState, ConnectionGuard, backoff_delay

__all__ = [
    "BACKOFF_SECONDS",
    "AsyncHealthSource",
    "CircuitState",
    "Clock",
    "ConnectionGuard",
    "MasterAddress",
    "MasterObservation",
    "RedisTls",
    "RedisUnavailableError",
    "SentinelRedisClient",
    "Sleep",
    "SystemClock",
    "WriteNotAcknowledgedError",
    "backoff_delay",
    "observe_master",
    "parse_address",
]
