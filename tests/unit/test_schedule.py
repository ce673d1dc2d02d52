"""The restart schedule: DST days, catch-up after downtime, suspension, order and run ids."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradingstack.api.spec import DEFAULT_RESTART_ORDER, RestartsSpec, ServiceSpec
from tradingstack.schedule.restarts import due_run, next_run, restart_order, run_id

ZONES = ["UTC", "Europe/Oslo", "America/New_York", "Australia/Lord_Howe", "America/Santiago", "Asia/Kolkata"]


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def restarts(**fields: Any) -> RestartsSpec:
    return RestartsSpec.model_validate(fields)


def runs_on(spec: RestartsSpec, day: date) -> list[datetime]:
    """The scheduled runs that fall on `day` in the schedule's time zone, in UTC."""
    zone = ZoneInfo(spec.time_zone)
    start = datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(), tzinfo=zone).astimezone(UTC)
    found: list[datetime] = []
    moment = next_run(spec, start - timedelta(microseconds=1))
    while moment is not None and moment < end:
        found.append(moment)
        moment = next_run(spec, moment)
    return found


# Europe/Oslo 2026: clocks go 02:00 -> 03:00 on 29 March and 03:00 -> 02:00 on 25 October.
# America/New_York 2026: clocks go 02:00 -> 03:00 on 8 March and 02:00 -> 01:00 on 1 November.
@pytest.mark.parametrize(
    ("zone", "schedule", "day", "expected"),
    [
        # The skipped 02:30 runs once, at the end of the gap (03:00 local), as Debian cron and cronsim do.
        ("Europe/Oslo", "30 2 * * *", date(2026, 3, 29), utc(2026, 3, 29, 1, 0)),
        ("America/New_York", "30 2 * * *", date(2026, 3, 8), utc(2026, 3, 8, 7, 0)),
        # A repeated wall-clock time runs once, at its first occurrence (still summer time).
        ("Europe/Oslo", "30 2 * * *", date(2026, 10, 25), utc(2026, 10, 25, 0, 30)),
        ("America/New_York", "30 1 * * *", date(2026, 11, 1), utc(2026, 11, 1, 5, 30)),
        # 02:30 is not repeated in New York (the repeated hour is 01:00-02:00): plain standard time.
        ("America/New_York", "30 2 * * *", date(2026, 11, 1), utc(2026, 11, 1, 7, 30)),
        # Outside the changed hour the local time is kept, whichever offset applies that day.
        ("Europe/Oslo", "30 4 * * *", date(2026, 3, 29), utc(2026, 3, 29, 2, 30)),
        ("Europe/Oslo", "30 4 * * *", date(2026, 10, 25), utc(2026, 10, 25, 3, 30)),
        ("America/New_York", "30 4 * * *", date(2026, 3, 8), utc(2026, 3, 8, 8, 30)),
        ("America/New_York", "30 4 * * *", date(2026, 11, 1), utc(2026, 11, 1, 9, 30)),
    ],
)
def test_dst_days_run_once(zone: str, schedule: str, day: date, expected: datetime) -> None:
    spec = restarts(schedule=schedule, timeZone=zone)
    assert runs_on(spec, day) == [expected]


def test_a_repeated_time_already_run_is_not_run_again_in_the_second_pass() -> None:
    spec = restarts(schedule="30 2 * * *", timeZone="Europe/Oslo")
    # 01:15 UTC is 02:15 CET, inside the repeated hour, after the 02:30 CEST run at 00:30 UTC.
    assert next_run(spec, utc(2026, 10, 25, 1, 15)) == utc(2026, 10, 26, 1, 30)


def test_due_run_on_the_spring_forward_day_is_the_shifted_time() -> None:
    spec = restarts(schedule="30 2 * * *", timeZone="Europe/Oslo")
    assert due_run(spec, utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 0, 59)) is None
    assert due_run(spec, utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 5)) == utc(2026, 3, 29, 1, 0)


def test_downtime_catches_up_one_run_inside_the_window_only() -> None:
    spec = restarts(schedule="30 4 * * *", windowMinutes=60)
    last = utc(2026, 11, 23, 4, 30)
    assert due_run(spec, last, utc(2026, 11, 26, 5, 10)) == utc(2026, 11, 26, 4, 30)
    assert due_run(spec, last, utc(2026, 11, 26, 5, 31)) is None
    assert due_run(spec, last, utc(2026, 11, 26, 4, 29)) is None


def test_downtime_never_bursts_even_when_several_runs_fit_the_window() -> None:
    spec = restarts(schedule="*/10 * * * *", windowMinutes=60)
    now = utc(2026, 11, 26, 12, 34)
    first = due_run(spec, utc(2026, 11, 23), now)
    assert first == utc(2026, 11, 26, 12, 30)
    # Once the catch-up run is recorded, nothing else is due until the next scheduled time.
    for minute in range(34, 40):
        assert due_run(spec, first, utc(2026, 11, 26, 12, minute)) is None
    assert due_run(spec, first, utc(2026, 11, 26, 12, 40)) == utc(2026, 11, 26, 12, 40)


def test_a_run_already_done_is_not_due_again() -> None:
    spec = restarts(schedule="30 4 * * *")
    assert due_run(spec, utc(2026, 11, 26, 4, 30), utc(2026, 11, 26, 4, 45)) is None
    assert due_run(spec, None, utc(2026, 11, 26, 4, 45)) == utc(2026, 11, 26, 4, 30)


def test_suspend_until_holds_back_scheduled_runs() -> None:
    spec = restarts(schedule="30 4 * * *", suspendUntil="2026-11-28T04:40:00Z")
    assert due_run(spec, None, utc(2026, 11, 27, 4, 45)) is None
    # The 04:30 run of the last suspended day stays held back although it is inside the window.
    assert due_run(spec, None, utc(2026, 11, 28, 4, 45)) is None
    assert next_run(spec, utc(2026, 11, 26)) == utc(2026, 11, 29, 4, 30)
    assert due_run(spec, None, utc(2026, 11, 29, 4, 31)) == utc(2026, 11, 29, 4, 30)


def test_a_run_exactly_at_suspend_until_is_allowed() -> None:
    spec = restarts(schedule="30 4 * * *", suspendUntil="2026-11-28T04:30:00+00:00")
    assert next_run(spec, utc(2026, 11, 26)) == utc(2026, 11, 28, 4, 30)
    assert due_run(spec, None, utc(2026, 11, 28, 4, 30)) == utc(2026, 11, 28, 4, 30)


def test_disabled_restarts_have_no_runs() -> None:
    spec = restarts(enabled=False)
    assert next_run(spec, utc(2026, 11, 26)) is None
    assert due_run(spec, None, utc(2026, 11, 26, 4, 31)) is None


def service(name: str, replicas: int = 1) -> ServiceSpec:
    return ServiceSpec(name=name, image="example/svc:1", port=8000, replicas=replicas)


def test_default_order_is_the_dependency_order_then_by_name() -> None:
    names = ["zeta", *reversed(DEFAULT_RESTART_ORDER), "alpha"]
    assert restart_order([service(n) for n in names], restarts()) == [*DEFAULT_RESTART_ORDER, "alpha", "zeta"]


def test_explicit_order_comes_first() -> None:
    services = [service(n) for n in ["alpha", *DEFAULT_RESTART_ORDER]]
    order = restart_order(services, restarts(order=["execution", "alpha", "portfolio"]))
    assert order == ["execution", "alpha", "portfolio", "rl-training", "ai-engine", "risk-safety", "monitoring-health"]


def test_excluded_and_scaled_down_services_are_left_out() -> None:
    services = [service("ai-engine"), service("execution"), service("portfolio", replicas=0), service("beta")]
    spec = restarts(order=["execution", "portfolio"], exclude=["ai-engine"])
    assert restart_order(services, spec) == ["execution", "beta"]


def test_run_id_is_the_utc_scheduled_time() -> None:
    scheduled = utc(2026, 11, 26, 4, 30)
    assert run_id(scheduled) == "20261126T043000Z"
    assert run_id(scheduled.astimezone(ZoneInfo("Europe/Oslo"))) == "20261126T043000Z"


daily = st.builds(
    lambda zone, hour, minute: restarts(schedule=f"{minute} {hour} * * *", timeZone=zone),
    st.sampled_from(ZONES),
    st.integers(0, 23),
    st.integers(0, 59),
)
moments = st.datetimes(datetime(2020, 1, 1), datetime(2035, 12, 31), timezones=st.just(UTC))


@given(daily, moments)
def test_next_run_is_strictly_later(spec: RestartsSpec, after: datetime) -> None:
    following = next_run(spec, after)
    assert following is not None and following > after and following.tzinfo is not None
    assert re.fullmatch(r"\d{8}T\d{6}Z", run_id(following))


@given(daily, st.dates(date(2020, 1, 1), date(2035, 12, 31)))
def test_a_daily_schedule_runs_exactly_once_each_local_day(spec: RestartsSpec, day: date) -> None:
    assert len(runs_on(spec, day)) == 1


@given(daily, st.one_of(st.none(), moments), moments, st.integers(1, 1440))
def test_due_run_is_a_scheduled_time_inside_the_window(
    spec: RestartsSpec, last_run: datetime | None, now: datetime, window: int
) -> None:
    spec = spec.model_copy(update={"window_minutes": window})
    due = due_run(spec, last_run, now)
    if due is None:
        return
    assert now - timedelta(minutes=window) <= due <= now
    assert last_run is None or due > last_run
    assert next_run(spec, due - timedelta(microseconds=1)) == due
    following = next_run(spec, due)
    assert following is None or following > now  # the latest missed run, not an older one
    assert due_run(spec, due, now) is None
