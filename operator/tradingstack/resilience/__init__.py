"""Clocks and the connection guard (backoff and circuit breaker) shared by the Redis client and the health checks.

A package of its own so neither of the two depends on the other for it.
"""
