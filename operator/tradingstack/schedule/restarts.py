"""When the daily restarts run and in which order: pure functions of the spec and an injected `now`."""

from __future__ import annotations

from datetime import datetime, timedelta

from tradingstack.api.spec import DEFAULT_RESTART_ORDER, RestartsSpec, ServiceSpec
from tradingstack.schedule.cron import as_utc, occurrences, occurrences_from

RUN_ID_FORMAT = "%Y%m%dT%H%M%SZ"
"""Run identifiers are the scheduled time in UTC, e.g. 20261126T043000Z: sortable and annotation-safe."""


def _not_before_suspension(spec: RestartsSpec, start: datetime) -> datetime:
    """`start`, moved to suspendUntil if that is later: no scheduled run starts before suspendUntil."""
    if spec.suspend_until is None:
        return start
    return max(start, as_utc(spec.suspend_until))


def next_run(spec: RestartsSpec, after: datetime) -> datetime | None:
    """The first scheduled run strictly after `after` and not before suspendUntil, in UTC.

    None when restarts are disabled or the schedule never fires again.
    """
    if not spec.enabled:
        return None
    after = as_utc(after)
    if spec.suspend_until is not None and as_utc(spec.suspend_until) > after:
        upcoming = occurrences_from(spec.schedule, spec.time_zone, as_utc(spec.suspend_until))
    else:
        upcoming = occurrences(spec.schedule, spec.time_zone, after)
    return next(upcoming, None)


def due_run(spec: RestartsSpec, last_run: datetime | None, now: datetime) -> datetime | None:
    """The scheduled time of the run that should start at `now`, or None.

    That is the latest scheduled time that is at or before `now`, strictly after `last_run`, at most
    windowMinutes before `now` and not before suspendUntil. After downtime this yields one catch-up run (the
    latest missed one still inside the window), never the whole backlog.
    """
    if not spec.enabled:
        return None
    now = as_utc(now)
    window_start = now - timedelta(minutes=spec.window_minutes)
    start = _not_before_suspension(spec, window_start)
    due: datetime | None = None
    for scheduled in occurrences_from(spec.schedule, spec.time_zone, start):
        if scheduled > now:
            break
        if last_run is None or scheduled > as_utc(last_run):
            due = scheduled
    return due


def restart_order(services: list[ServiceSpec], spec: RestartsSpec) -> list[str]:
    """Names of the services to restart, in order.

    The explicit `order` first, then the remaining services in DEFAULT_RESTART_ORDER, then the others by name.
    Excluded services and services scaled to zero (nothing to restart) are left out.
    """
    eligible = {service.name for service in services if service.replicas > 0} - set(spec.exclude)
    explicit = [name for name in dict.fromkeys(spec.order) if name in eligible]
    default_rank = {name: rank for rank, name in enumerate(DEFAULT_RESTART_ORDER)}
    rest = sorted(eligible - set(explicit), key=lambda name: (default_rank.get(name, len(DEFAULT_RESTART_ORDER)), name))
    return explicit + rest


def run_id(scheduled: datetime) -> str:
    """Stable identifier of the run scheduled at `scheduled`; the value stamped on the pod templates."""
    return as_utc(scheduled).strftime(RUN_ID_FORMAT)
