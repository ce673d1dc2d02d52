"""A network partition: what the master acknowledged alone is lost in the failover, what WAIT confirmed is not.

On loopback, replication is too fast for an unconfirmed write to go missing, so a test there cannot tell a
client using WAIT from one that does not. Here each server has a host of its own and links are cut as a
partition cuts them (packets dropped, no reset).
"""

from __future__ import annotations

import pytest

from tests.component.redis.processes import RenderedRedis, TwoMasterChecker
from tradingstack.redisclient import SentinelRedisClient, WriteNotAcknowledgedError

pytestmark = pytest.mark.component


def test_only_writes_confirmed_by_wait_survive_a_partitioned_master(networked_stack: RenderedRedis) -> None:
    stack = networked_stack
    assert stack.network is not None
    client = SentinelRedisClient(stack.sentinel_addresses, stack.spec.master_name, stack.password, socket_timeout=0.5)
    with TwoMasterChecker(stack).running() as checker:
        old_master = stack.wait_stable(timeout=30)
        replicas = [i for i in range(stack.spec.replicas) if i != old_master]
        client.write_confirmed("confirmed-before", "1")

        for replica in replicas:
            stack.network.cut(replica)
        # min-replicas-to-write still counts replicas heard from within min-replicas-max-lag (10 s): the
        # master takes the write although no replica will ever receive it.
        assert client.master.set("master-only", "1")
        with pytest.raises(WriteNotAcknowledgedError):
            client.write_confirmed("unconfirmed", "1", timeout_ms=500)

        # The master ends up on the minority side; the replicas, reachable again, elect a new one.
        stack.network.cut(old_master)
        for replica in replicas:
            stack.network.heal(replica)
        new_master = stack.wait_promoted(old_master)
        client.write_confirmed("confirmed-after", "1", retry_seconds=60)
        stack.kill_redis(old_master)

    values = stack.server(new_master, timeout=5).mget(
        ["confirmed-before", "confirmed-after", "master-only", "unconfirmed"]
    )
    client.close()
    assert values[:2] == ["1", "1"], "a write confirmed by WAIT was lost"
    # The control: the partition really loses writes, so the assertion above could fail.
    assert values[2:] == [None, None], "writes no replica confirmed survived: the partition did not isolate"
    assert checker.polls > 0
    assert checker.violations == [], "two masters accepted writes at the same time"
