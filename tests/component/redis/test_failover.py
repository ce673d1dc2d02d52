"""Failover of the rendered Redis Sentinel stack: a killed master is replaced and rejoins as a replica."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.component.redis.processes import (
    FAST_FAILOVER,
    POLL_SECONDS,
    RenderedRedis,
    StockRedis,
    TwoMasterChecker,
    stack_for,
)
from tests.support import wait_for
from tradingstack.redisclient import RedisUnavailableError, SentinelRedisClient, observe_master

pytestmark = pytest.mark.component


def client_for(processes: RenderedRedis) -> SentinelRedisClient:
    return SentinelRedisClient(
        processes.sentinel_addresses, processes.spec.master_name, processes.password, socket_timeout=0.5
    )


def test_killed_master_is_replaced_and_rejoins_as_replica(sentinel_stack: RenderedRedis) -> None:
    stack = sentinel_stack
    client = client_for(stack)
    with TwoMasterChecker(stack).running() as checker:
        old_master = stack.wait_stable(timeout=30)
        assert old_master == 0, "a new stack bootstraps with ordinal 0 as master"
        client.write_confirmed("before-failover", "1")

        stack.kill_redis(old_master)
        client.write_confirmed("after-failover", "2", retry_seconds=60)

        observation = observe_master(stack.sentinel_addresses, stack.spec.master_name, stack.password)
        assert observation.master is not None
        new_master = stack.index_of(observation.master)
        assert new_master != old_master
        assert observation.agreeing == stack.spec.sentinels
        assert stack.role(new_master) == "master"

        stack.start_redis(old_master)
        wait_for(
            lambda: stack.role(old_master) == "slave",
            timeout=30,
            interval=POLL_SECONDS,
            what="the old master to come back as a replica",
        )
        assert stack.wait_stable(timeout=30) == new_master
        assert client.master.mget(["before-failover", "after-failover"]) == [b"1", b"2"]
    client.close()
    checker.assert_single_master()


def test_restarted_master_follows_the_newest_configuration_not_the_majority(sentinel_stack: RenderedRedis) -> None:
    """For up to 2 s after a failover, sentinels that have not heard of it still name the old master. Asked
    by a restarting old master, two such sentinels outvote the one that knows: the start script must go by
    the configuration epoch and rejoin as a replica of the promoted server."""
    stack = sentinel_stack
    old_master = stack.wait_stable(timeout=30)
    stack.kill_redis(old_master)
    new_master = stack.wait_promoted(old_master)
    stale = [stack.start_isolated_sentinel(f"stale-sentinel-{i}", old_master) for i in range(2)]

    with TwoMasterChecker(stack).running() as checker:
        stack.start_redis(old_master, sentinels=[stack.sentinel_addresses[0], *stale])
        stack.wait_replicating(old_master)
    assert stack.agreed_master() == new_master
    checker.assert_single_master()


def test_master_restarted_during_its_failover_waits_and_rejoins_as_replica(sentinel_stack: RenderedRedis) -> None:
    """Restarted the moment the sentinels agree it is down (o_down), before a replica is promoted: starting
    as the master they still name would make two masters until Sentinel demotes it ~10 s later."""
    stack = sentinel_stack
    old_master = stack.wait_stable(timeout=30)
    with TwoMasterChecker(stack).running() as checker:
        stack.kill_redis(old_master)
        wait_for(
            stack.master_odown,
            timeout=30,
            interval=0.02,
            what="a sentinel to flag the master o_down",
        )
        stack.start_redis(old_master)
        new_master = stack.wait_promoted(old_master)
        stack.wait_replicating(old_master)
    assert stack.agreed_master() == new_master
    checker.assert_single_master()


def test_prestop_hook_hands_mastership_over(sentinel_stack: RenderedRedis) -> None:
    stack = sentinel_stack
    old_master = stack.wait_stable(timeout=30)
    stack.run_prestop(old_master)
    new_master = stack.agreed_master()
    assert new_master is not None
    assert new_master != old_master
    wait_for(
        lambda: stack.role(old_master) == "slave",
        timeout=30,
        interval=POLL_SECONDS,
        what="the old master to be demoted",
    )


def test_prestop_hook_of_a_replica_changes_nothing(sentinel_stack: RenderedRedis) -> None:
    stack = sentinel_stack
    master = stack.wait_stable(timeout=30)
    replica = next(i for i in range(stack.spec.replicas) if i != master)
    stack.run_prestop(replica)
    assert stack.agreed_master() == master


def test_a_master_without_replicas_refuses_writes_as_unavailable(sentinel_stack: RenderedRedis) -> None:
    """min-replicas-to-write: a master cut off from its replicas accepts nothing that a failover could lose."""
    stack = sentinel_stack
    master = stack.wait_stable(timeout=30)
    for replica in (i for i in range(stack.spec.replicas) if i != master):
        stack.kill_redis(replica)
    client = client_for(stack)
    with pytest.raises(RedisUnavailableError, match="NOREPLICAS"):
        client.write_confirmed("unprotected", "1")
    client.close()


def test_checker_sees_two_writable_masters_when_a_stock_master_restarts(tmp_path: Path) -> None:
    """Negative control: without the start script a restarted old master comes back as a writable master."""
    stock = StockRedis(tmp_path, stack_for(FAST_FAILOVER).spec.redis)
    try:
        stock.start()
        with TwoMasterChecker(stock).running() as checker:
            old_master = stock.wait_stable(timeout=30)
            stock.kill_redis(old_master)
            stock.wait_promoted(old_master)
            stock.start_redis(old_master)
            wait_for(
                lambda: bool(checker.violations),
                timeout=60,
                interval=POLL_SECONDS,
                what="the checker to see two writable masters",
            )
    finally:
        stock.stop()
