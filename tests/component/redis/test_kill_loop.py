"""Ten master kills in a row at the lowest allowed down-after: no write acknowledged with WAIT is lost."""

from __future__ import annotations

import threading

import pytest

from tests.component.redis.processes import POLL_SECONDS, RenderedRedis, TwoMasterChecker
from tests.support import wait_for
from tradingstack.redisclient import RedisUnavailableError, SentinelRedisClient, WriteNotAcknowledgedError

pytestmark = pytest.mark.component

KILLS = 10


class Writer:
    """Writes unique keys as fast as the client allows; remembers those confirmed by WAIT."""

    def __init__(self, stack: RenderedRedis) -> None:
        self.client = SentinelRedisClient(
            stack.sentinel_addresses, stack.spec.master_name, stack.password, socket_timeout=0.5
        )
        self.acknowledged: list[str] = []
        self.crash: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)

    def _run(self) -> None:
        try:
            self._write_until_stopped()
        except BaseException as error:  # surfaced by `progressed`, else the test would only time out
            self.crash = error

    def progressed(self, since: int) -> bool:
        if self.crash is not None:
            raise AssertionError("the writer crashed") from self.crash
        return len(self.acknowledged) > since

    def _write_until_stopped(self) -> None:
        sequence = 0
        while not self._stop.is_set():
            key = f"write:{sequence}"
            sequence += 1
            try:
                self.client.write_confirmed(key, key, replicas=1, timeout_ms=500)
            except (RedisUnavailableError, WriteNotAcknowledgedError):
                self._stop.wait(self.client.guard.wait_seconds())
                continue
            self.acknowledged.append(key)

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.client.close()


def kill_master_until_writes_resume(stack: RenderedRedis, writer: Writer) -> None:
    """kill -9 the master, wait for a promoted replica to acknowledge writes, restart the old master."""
    master = stack.wait_stable(timeout=60)
    stack.kill_redis(master)
    stack.wait_promoted(master)
    writes_at_switch = len(writer.acknowledged)
    wait_for(
        lambda: writer.progressed(since=writes_at_switch),
        timeout=60,
        interval=POLL_SECONDS,
        what="writes acknowledged by the new master",
    )
    stack.start_redis(master)


def test_no_acknowledged_write_is_lost_across_ten_master_kills(sentinel_stack: RenderedRedis) -> None:
    stack = sentinel_stack
    with TwoMasterChecker(stack).running() as checker, Writer(stack) as writer:
        for _ in range(KILLS):
            kill_master_until_writes_resume(stack, writer)
        final_master = stack.wait_stable(timeout=60)

    assert writer.crash is None
    keys = writer.acknowledged
    assert len(keys) > KILLS
    values = stack.server(final_master, timeout=5).mget(keys)
    lost = [key for key, value in zip(keys, values, strict=True) if value != key]
    assert lost == [], f"{len(lost)} of {len(keys)} acknowledged writes lost"
    checker.assert_single_master()
