"""Leader election: the pure Lease planner at its clock edges, and the elector against an in-memory Lease."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from tradingstack.errors import ApiTemporaryError
from tradingstack.kube.client import Kube
from tradingstack.reconcile.leader_election import LOST_RACE, LeaderElector
from tradingstack.reconcile.leadership import (
    Acquire,
    LeaseSpec,
    ObservedLease,
    Renew,
    Standby,
    Timings,
    leadership_lost,
    micro_time,
    observed_lease,
    plan_leadership,
    plan_release,
)

NOW = datetime(2026, 12, 3, 5, 0, tzinfo=UTC)
LEASE = timedelta(seconds=15)
TICK = timedelta(microseconds=1)


def held(holder: str | None, renewed: datetime, transitions: int = 3, duration: int | None = 15) -> ObservedLease:
    return ObservedLease(
        holder=holder,
        lease_duration=timedelta(seconds=duration) if duration else None,
        acquire_time=renewed - timedelta(minutes=5),
        renew_time=renewed,
        transitions=transitions,
        resource_version="42",
    )


def test_no_lease_is_acquired_with_no_transitions() -> None:
    assert plan_leadership(None, "a", LEASE, NOW) == Acquire(LeaseSpec("a", LEASE, NOW, NOW, 0))


def test_another_holders_valid_lease_means_standby_until_it_expires() -> None:
    assert plan_leadership(held("b", NOW - timedelta(seconds=5)), "a", LEASE, NOW) == Standby(
        "b", NOW + timedelta(seconds=10)
    )


def test_a_lease_is_still_valid_exactly_at_its_expiry() -> None:
    decision = plan_leadership(held("b", NOW - LEASE), "a", LEASE, NOW)
    assert decision == Standby("b", NOW)


def test_an_expired_lease_of_another_holder_is_acquired_and_counts_a_transition() -> None:
    decision = plan_leadership(held("b", NOW - LEASE - TICK, transitions=3), "a", LEASE, NOW)
    assert decision == Acquire(LeaseSpec("a", LEASE, NOW, NOW, 4))


def test_the_holders_own_duration_decides_its_expiry() -> None:
    renewed = NOW - timedelta(seconds=20)
    assert isinstance(plan_leadership(held("b", renewed, duration=30), "a", LEASE, NOW), Standby)
    assert isinstance(plan_leadership(held("b", renewed, duration=None), "a", LEASE, NOW), Acquire)


def test_our_valid_lease_is_renewed_keeping_acquire_time_and_transitions() -> None:
    observed = held("a", NOW - timedelta(seconds=2), transitions=7)
    assert observed.acquire_time is not None
    assert plan_leadership(observed, "a", LEASE, NOW) == Renew(LeaseSpec("a", LEASE, observed.acquire_time, NOW, 7))


def test_our_own_stale_lease_is_reacquired_as_a_new_term_without_a_transition() -> None:
    decision = plan_leadership(held("a", NOW - LEASE - TICK, transitions=7), "a", LEASE, NOW)
    assert decision == Acquire(LeaseSpec("a", LEASE, NOW, NOW, 7))


def test_a_released_lease_is_free_at_once_and_the_new_holder_counts_a_transition() -> None:
    decision = plan_leadership(held(None, NOW, transitions=2), "a", LEASE, NOW)
    assert decision == Acquire(LeaseSpec("a", LEASE, NOW, NOW, 3))


def test_a_lease_never_renewed_is_free() -> None:
    never = ObservedLease("b", LEASE, None, None, 0, "1")
    assert plan_leadership(never, "a", LEASE, NOW) == Acquire(LeaseSpec("a", LEASE, NOW, NOW, 1))


def test_leadership_is_lost_only_after_the_renew_deadline() -> None:
    deadline = timedelta(seconds=10)
    assert not leadership_lost(NOW - deadline, NOW, deadline)
    assert leadership_lost(NOW - deadline - TICK, NOW, deadline)


def test_timings_keep_the_leader_inside_its_lease() -> None:
    assert Timings() == Timings(timedelta(seconds=15), timedelta(seconds=10), timedelta(seconds=2))
    with pytest.raises(ValueError, match="renew deadline"):
        Timings(lease_duration=timedelta(seconds=10), renew_deadline=timedelta(seconds=10))
    with pytest.raises(ValueError, match="retry period"):
        Timings(retry_period=timedelta(seconds=10))


def test_release_hands_over_only_our_lease() -> None:
    ours = held("a", NOW - timedelta(seconds=1), transitions=5)
    assert plan_release(ours, "a", NOW) == LeaseSpec(None, timedelta(seconds=1), ours.acquire_time or NOW, NOW, 5)
    assert plan_release(held("b", NOW), "a", NOW) is None
    assert plan_release(None, "a", NOW) is None


def test_lease_times_are_written_as_micro_time() -> None:
    spec = LeaseSpec("a", LEASE, NOW, NOW + timedelta(microseconds=5), 1).to_spec()
    assert spec == {
        "holderIdentity": "a",
        "leaseDurationSeconds": 15,
        "acquireTime": "2026-12-03T05:00:00.000000Z",
        "renewTime": "2026-12-03T05:00:00.000005Z",
        "leaseTransitions": 1,
    }
    assert "holderIdentity" not in LeaseSpec(None, LEASE, NOW, NOW, 1).to_spec()
    assert micro_time(datetime(2026, 12, 3, 6, 0, tzinfo=UTC).astimezone()) == "2026-12-03T06:00:00.000000Z"


def test_observed_lease_reads_the_api_object() -> None:
    lease = {
        "metadata": {"name": "tradingstack-operator", "resourceVersion": "9"},
        "spec": {
            "holderIdentity": "b",
            "leaseDurationSeconds": 15,
            "acquireTime": "2026-12-03T04:00:00.000000Z",
            "renewTime": "2026-12-03T05:00:00.123456Z",
            "leaseTransitions": 2,
        },
    }
    observed = observed_lease(lease)
    assert observed == ObservedLease(
        "b", LEASE, datetime(2026, 12, 3, 4, tzinfo=UTC), NOW + timedelta(microseconds=123456), 2, "9"
    )
    released = observed_lease({"metadata": {"resourceVersion": "10"}, "spec": {"holderIdentity": ""}})
    assert released == ObservedLease(None, None, None, None, 0, "10")


# ---------------------------------------------------------------------------------------------------------------
# the elector, against an in-memory Lease that checks resourceVersions like the API server


class FakeLeases:
    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.fail = False
        self.written_behind_our_back = False
        """The next replace finds a newer resourceVersion than the one read (another operator wrote)."""

    def _check(self) -> None:
        if self.fail:
            raise ApiTemporaryError("503 unavailable", code=503)

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        self._check()
        return self.lease

    def _store(self, spec: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        self.lease = {"metadata": {"resourceVersion": str(self.version)}, "spec": spec}
        return self.lease

    async def create_lease(self, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any] | None:
        self._check()
        return None if self.lease is not None else self._store(spec)

    async def replace_lease(
        self, namespace: str, name: str, spec: dict[str, Any], resource_version: str
    ) -> dict[str, Any] | None:
        self._check()
        if self.written_behind_our_back:
            self.version += 1
        return None if resource_version != str(self.version) else self._store(spec)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        await asyncio.sleep(0)


def elector(leases: FakeLeases, clock: Clock, identity: str) -> LeaderElector:
    return LeaderElector(cast(Kube, leases), "ops", identity, clock=clock, sleep=clock.sleep)


async def test_a_standby_waits_until_the_leaders_lease_expires() -> None:
    leases, clock = FakeLeases(), Clock()
    leader, standby = elector(leases, clock, "a"), elector(leases, clock, "b")
    await leader.wait_for_leadership()
    assert leader.is_leading()
    await standby.wait_for_leadership()
    assert clock.now - NOW > LEASE  # a never renewed: b took over once the Lease had expired
    assert leases.lease is not None and leases.lease["spec"]["holderIdentity"] == "b"
    assert leases.lease["spec"]["leaseTransitions"] == 1


async def test_a_lost_race_is_standby_not_an_error() -> None:
    leases, clock = FakeLeases(), Clock()
    contender = elector(leases, clock, "b")
    leases._store({"holderIdentity": "a", "renewTime": micro_time(NOW - LEASE - TICK), "leaseDurationSeconds": 15})
    leases.written_behind_our_back = True
    assert await contender.attempt() == Standby(LOST_RACE, NOW + LEASE)
    assert not contender.is_leading()


async def test_a_leader_that_cannot_renew_stops_before_its_lease_expires() -> None:
    leases, clock = FakeLeases(), Clock()
    leader = elector(leases, clock, "a")
    await leader.wait_for_leadership()
    leases.fail = True
    stop = asyncio.Event()
    await leader.keep_leading(stop)
    assert stop.is_set() and leader.lost and not leader.is_leading()
    lost_after = clock.now - NOW
    assert timedelta(seconds=10) < lost_after < LEASE


async def test_a_leader_whose_lease_was_taken_stops_at_once() -> None:
    leases, clock = FakeLeases(), Clock()
    leader = elector(leases, clock, "a")
    await leader.wait_for_leadership()
    leases._store({"holderIdentity": "b", "renewTime": micro_time(NOW), "leaseDurationSeconds": 15})
    stop = asyncio.Event()
    await leader.keep_leading(stop)
    assert stop.is_set() and leader.lost
    assert clock.now - NOW == timedelta(seconds=2)


async def test_release_frees_the_lease_for_the_standby_at_once() -> None:
    leases, clock = FakeLeases(), Clock()
    leader, standby = elector(leases, clock, "a"), elector(leases, clock, "b")
    await leader.wait_for_leadership()
    await leader.release()
    assert not leader.is_leading() and not leader.lost
    await standby.wait_for_leadership()
    assert clock.now == NOW
