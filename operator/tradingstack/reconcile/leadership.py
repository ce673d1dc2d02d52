"""Leader election on a coordination.k8s.io/v1 Lease, as pure decisions: what to write, or whom to wait for.

The elector (`reconcile.leader_election`) reads the Lease, calls `plan_leadership` and writes the returned spec
with the Lease's resourceVersion, so of two operators writing at once only one succeeds (the other gets a 409 and
stands by). A Lease is free when it has no holder or its holder has not renewed it for leaseDurationSeconds.

A leader that cannot renew stops reconciling once `leadership_lost` says so: the renew deadline is shorter than
the lease duration, so it has stopped before any standby can see the Lease expire (clock skew between the
operators' nodes eats into that margin).

Times in the Lease are RFC 3339 MicroTime in UTC: "2026-12-03T05:00:00.000000Z".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tradingstack.schedule.cron import as_utc

LEASE_NAME = "tradingstack-operator"


@dataclass(frozen=True)
class Timings:
    """How long a Lease is valid, how long a leader keeps leading without renewing, how often everyone tries."""

    lease_duration: timedelta = timedelta(seconds=15)
    renew_deadline: timedelta = timedelta(seconds=10)
    retry_period: timedelta = timedelta(seconds=2)

    def __post_init__(self) -> None:
        # The leader must give up before its Lease expires for others, and retry at least once before that.
        if not self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("leader election needs retry period < renew deadline < lease duration")


@dataclass(frozen=True)
class ObservedLease:
    """What the planner reads from a Lease object."""

    holder: str | None
    """spec.holderIdentity; None (or empty in the object) when the Lease was released."""
    lease_duration: timedelta | None
    """spec.leaseDurationSeconds, the validity the holder asked for."""
    acquire_time: datetime | None
    renew_time: datetime | None
    transitions: int
    """spec.leaseTransitions: how often the holder changed."""
    resource_version: str
    """metadata.resourceVersion, the precondition of the replace that acts on this observation."""

    def expires_at(self, default_duration: timedelta) -> datetime | None:
        """When the Lease becomes free; None when it never was renewed (free now)."""
        if self.renew_time is None:
            return None
        return self.renew_time + (self.lease_duration or default_duration)


@dataclass(frozen=True)
class LeaseSpec:
    """The spec of a Lease to write."""

    holder: str | None
    lease_duration: timedelta
    acquire_time: datetime
    renew_time: datetime
    transitions: int

    def to_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "leaseDurationSeconds": int(self.lease_duration.total_seconds()),
            "acquireTime": micro_time(self.acquire_time),
            "renewTime": micro_time(self.renew_time),
            "leaseTransitions": self.transitions,
        }
        if self.holder is not None:
            spec["holderIdentity"] = self.holder
        return spec


@dataclass(frozen=True)
class Acquire:
    """The Lease is free (absent, released, expired, or our own stale one): write `spec` to lead from now."""

    spec: LeaseSpec


@dataclass(frozen=True)
class Renew:
    """We hold a valid Lease: write `spec` (a new renewTime) to keep it."""

    spec: LeaseSpec


@dataclass(frozen=True)
class Standby:
    """`holder` leads until at least `expires_at` (later if it renews): do not reconcile, look again later."""

    holder: str
    expires_at: datetime


LeaderDecision = Acquire | Renew | Standby


def micro_time(moment: datetime) -> str:
    """RFC 3339 MicroTime in UTC, as the API server writes it."""
    return as_utc(moment).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str | None) -> datetime | None:
    return as_utc(datetime.fromisoformat(value)) if value else None


def observed_lease(lease: Mapping[str, Any]) -> ObservedLease:
    """The planner's view of a Lease object as the API returns it."""
    spec = lease.get("spec") or {}
    duration = spec.get("leaseDurationSeconds")
    return ObservedLease(
        holder=spec.get("holderIdentity") or None,
        lease_duration=timedelta(seconds=duration) if duration else None,
        acquire_time=parse_time(spec.get("acquireTime")),
        renew_time=parse_time(spec.get("renewTime")),
        transitions=int(spec.get("leaseTransitions") or 0),
        resource_version=str(lease["metadata"]["resourceVersion"]),
    )


def plan_leadership(
    observed: ObservedLease | None, identity: str, lease_duration: timedelta, now: datetime
) -> LeaderDecision:
    """Decide what `identity` does about the Lease at `now`.

    A Lease is valid up to and including renewTime + leaseDurationSeconds (of the holder's Lease, ours when it
    has none). The transition count goes up whenever the holder changes, a released Lease's missing holder
    included.
    """
    now = as_utc(now)
    if observed is None:
        return Acquire(LeaseSpec(identity, lease_duration, now, now, transitions=0))
    expires_at = observed.expires_at(lease_duration)
    if observed.holder is not None and expires_at is not None and now <= expires_at:
        if observed.holder != identity:
            return Standby(observed.holder, expires_at)
        if observed.acquire_time is not None:
            return Renew(LeaseSpec(identity, lease_duration, observed.acquire_time, now, observed.transitions))
    # Free, or ours but stale (e.g. an operator restarted under the same pod name): a new term starts now.
    transitions = observed.transitions + (observed.holder != identity)
    return Acquire(LeaseSpec(identity, lease_duration, now, now, transitions))


def leadership_lost(last_renewed: datetime, now: datetime, renew_deadline: timedelta) -> bool:
    """Whether a leader whose last successful write of the Lease was at `last_renewed` must stop leading:
    after the renew deadline, which comes before the Lease can expire for the standbys."""
    return as_utc(now) - as_utc(last_renewed) > renew_deadline


def plan_release(observed: ObservedLease | None, identity: str, now: datetime) -> LeaseSpec | None:
    """The spec that hands the Lease over at once (no holder: free for anyone); None when it is not ours."""
    if observed is None or observed.holder != identity:
        return None
    now = as_utc(now)
    return LeaseSpec(
        holder=None,
        lease_duration=timedelta(seconds=1),
        acquire_time=observed.acquire_time or now,
        renew_time=now,
        transitions=observed.transitions,
    )
