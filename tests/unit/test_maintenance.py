"""Change windows and freezes (schedule.maintenance) with explicit instants: DST, boundaries, overlaps, override."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tradingstack.api.spec import MaintenanceSpec
from tradingstack.schedule.maintenance import (
    HORIZON,
    Override,
    closed_reason,
    format_override,
    freeze_in_force,
    frozen_until,
    is_open,
    next_open,
    open_until,
    parse_override,
)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[arg-type, misc]


def maintenance(
    windows: list[dict[str, Any]] | None = None, freezes: list[dict[str, Any]] | None = None
) -> MaintenanceSpec:
    return MaintenanceSpec.model_validate({"windows": windows or [], "freezes": freezes or []})


def window(schedule: str, minutes: int, zone: str = "UTC") -> dict[str, Any]:
    return {"schedule": schedule, "durationMinutes": minutes, "timeZone": zone}


def freeze(start: datetime, end: datetime, reason: str = "year-end close") -> dict[str, Any]:
    return {"start": start.isoformat(), "end": end.isoformat(), "reason": reason}


@pytest.mark.parametrize(
    ("zone", "day_before", "day_after"),
    [
        # 22:00 local, before and after the spring-forward and fall-back changes of 2026, as UTC instants.
        ("Europe/Oslo", utc(2026, 3, 28, 21), utc(2026, 3, 29, 20)),  # CET +1 -> CEST +2 on 29 March
        ("Europe/Oslo", utc(2026, 10, 24, 20), utc(2026, 10, 25, 21)),  # CEST -> CET on 25 October
        ("America/New_York", utc(2026, 3, 8, 3), utc(2026, 3, 9, 2)),  # EST -5 -> EDT -4 on 8 March
        ("America/New_York", utc(2026, 11, 1, 2), utc(2026, 11, 2, 3)),  # EDT -> EST on 1 November
    ],
)
def test_a_22_00_window_opens_at_22_00_local_on_both_sides_of_a_dst_change(
    zone: str, day_before: datetime, day_after: datetime
) -> None:
    spec = maintenance([window("0 22 * * *", 60, zone)])
    for opening in (day_before, day_after):
        assert not is_open(spec, opening - timedelta(seconds=1))
        assert is_open(spec, opening)
        assert is_open(spec, opening + timedelta(minutes=59, seconds=59))
        assert not is_open(spec, opening + timedelta(minutes=60))
        assert next_open(spec, opening - timedelta(hours=3)) == opening
    # Consecutive local days: the next opening after the first window is 22:00 local of the second day.
    assert next_open(spec, day_before + timedelta(hours=1)) == day_after


def test_the_new_york_fall_back_day_opens_at_22_00_est() -> None:
    # 1 November 2026: the clocks went back at 02:00, so 22:00 that evening is EST, 03:00 UTC the next day.
    spec = maintenance([window("0 22 * * *", 60, "America/New_York")])
    assert next_open(spec, utc(2026, 11, 1, 12)) == utc(2026, 11, 2, 3)
    assert next_open(spec, utc(2026, 3, 8, 12)) == utc(2026, 3, 9, 2)  # spring-forward day: 22:00 EDT


@pytest.mark.parametrize(
    ("zone", "day", "opening"),
    [
        # 02:30 does not exist on the spring-forward day: cronsim (like Debian cron) opens at the end of the gap.
        ("Europe/Oslo", utc(2026, 3, 29), utc(2026, 3, 29, 1)),  # 03:00 CEST
        ("America/New_York", utc(2026, 3, 8, 5), utc(2026, 3, 8, 7)),  # 03:00 EDT
    ],
)
def test_a_02_30_window_on_the_spring_forward_day_opens_at_the_end_of_the_gap(
    zone: str, day: datetime, opening: datetime
) -> None:
    spec = maintenance([window("30 2 * * *", 30, zone)])
    assert next_open(spec, day) == opening
    assert is_open(spec, opening) and not is_open(spec, opening - timedelta(seconds=1))
    # The duration is real time: 30 minutes after the shifted opening.
    assert is_open(spec, opening + timedelta(minutes=29)) and not is_open(spec, opening + timedelta(minutes=30))


def test_a_window_crossing_a_dst_change_lasts_its_real_duration() -> None:
    # Opens 01:00 CET on 29 March 2026 (00:00 UTC) for 180 minutes: the clock jumps 02:00 -> 03:00 meanwhile,
    # so it closes at 04:00 CEST local, 03:00 UTC, not at 04:00 CET.
    spec = maintenance([window("0 1 * * *", 180, "Europe/Oslo")])
    assert is_open(spec, utc(2026, 3, 29, 0)) and is_open(spec, utc(2026, 3, 29, 2, 59))
    assert not is_open(spec, utc(2026, 3, 29, 3))
    assert open_until(spec, utc(2026, 3, 29, 1)) == utc(2026, 3, 29, 3)


def test_a_window_spanning_midnight() -> None:
    spec = maintenance([window("0 23 * * *", 120)])
    assert is_open(spec, utc(2026, 12, 3, 23, 30)) and is_open(spec, utc(2026, 12, 4, 0, 59))
    assert not is_open(spec, utc(2026, 12, 4, 1)) and not is_open(spec, utc(2026, 12, 3, 22, 59))
    assert open_until(spec, utc(2026, 12, 4, 0, 30)) == utc(2026, 12, 4, 1)
    assert next_open(spec, utc(2026, 12, 4, 1)) == utc(2026, 12, 4, 23)


def test_overlapping_windows_make_one_open_period() -> None:
    spec = maintenance([window("0 2 * * *", 90), window("0 3 * * *", 60)])
    assert is_open(spec, utc(2026, 12, 3, 3, 45))
    assert not is_open(spec, utc(2026, 12, 3, 4))
    assert open_until(spec, utc(2026, 12, 3, 2, 10)) == utc(2026, 12, 3, 4)
    touching = maintenance([window("0 2 * * *", 60), window("0 3 * * *", 30)])
    assert open_until(touching, utc(2026, 12, 3, 2)) == utc(2026, 12, 3, 3, 30)


def test_no_windows_is_always_open_unless_frozen() -> None:
    spec = maintenance()
    assert is_open(spec, utc(2026, 12, 3, 14, 30))
    assert next_open(spec, utc(2026, 12, 3, 14, 30)) == utc(2026, 12, 3, 14, 30)
    assert open_until(spec, utc(2026, 12, 3, 14, 30)) is None
    frozen = maintenance(freezes=[freeze(utc(2026, 12, 20), utc(2027, 1, 4))])
    assert is_open(frozen, utc(2026, 12, 19, 23, 59))
    assert open_until(frozen, utc(2026, 12, 19)) == utc(2026, 12, 20)
    assert not is_open(frozen, utc(2026, 12, 25))
    assert next_open(frozen, utc(2026, 12, 25)) == utc(2027, 1, 4)


def test_freeze_boundaries_start_included_end_excluded() -> None:
    spec = maintenance(freezes=[freeze(utc(2026, 12, 3, 14), utc(2026, 12, 3, 15), "FOMC")])
    assert is_open(spec, utc(2026, 12, 3, 13, 59, 59))
    assert not is_open(spec, utc(2026, 12, 3, 14))
    assert not is_open(spec, utc(2026, 12, 3, 14, 59, 59))
    assert is_open(spec, utc(2026, 12, 3, 15))
    in_force = freeze_in_force(spec, utc(2026, 12, 3, 14))
    assert in_force is not None and in_force.reason == "FOMC"
    assert closed_reason(spec, utc(2026, 12, 3, 14)) == "frozen until 2026-12-03T15:00:00+00:00 (FOMC)"
    assert closed_reason(spec, utc(2026, 12, 3, 15)) is None


def test_overlapping_freezes_end_with_the_last_of_them() -> None:
    spec = maintenance(
        freezes=[
            freeze(utc(2026, 12, 1), utc(2026, 12, 10), "a"),
            freeze(utc(2026, 12, 9), utc(2026, 12, 12), "b"),
            freeze(utc(2026, 12, 12), utc(2026, 12, 13), "c"),  # touches b: still frozen at 12 December 00:00
        ]
    )
    assert frozen_until(spec, utc(2026, 12, 2)) == utc(2026, 12, 13)
    assert next_open(spec, utc(2026, 12, 2)) == utc(2026, 12, 13)


def test_next_open_skips_a_freeze_that_covers_windows() -> None:
    spec = maintenance(
        [window("0 22 * * *", 60, "Europe/Oslo")],
        [freeze(utc(2026, 12, 3, 12), utc(2026, 12, 5, 12), "release freeze")],
    )
    # The windows of 3 and 4 December (21:00 UTC, CET) are inside the freeze: the 5th's is the next.
    assert next_open(spec, utc(2026, 12, 3, 13)) == utc(2026, 12, 5, 21)
    assert closed_reason(spec, utc(2026, 12, 3, 21, 30)) == "frozen until 2026-12-05T12:00:00+00:00 (release freeze)"
    # A freeze ending inside a window opens maintenance at its end, not at the next opening.
    mid_window = maintenance([window("0 21 * * *", 120)], [freeze(utc(2026, 12, 3, 12), utc(2026, 12, 3, 22), "x")])
    assert next_open(mid_window, utc(2026, 12, 3, 13)) == utc(2026, 12, 3, 22)
    # A freeze that starts inside a window ends the open period.
    cut = maintenance([window("0 21 * * *", 120)], [freeze(utc(2026, 12, 3, 22), utc(2026, 12, 4), "y")])
    assert open_until(cut, utc(2026, 12, 3, 21)) == utc(2026, 12, 3, 22)


def test_next_open_gives_up_beyond_the_horizon() -> None:
    spec = maintenance(freezes=[freeze(utc(2026, 1, 1), utc(2026, 1, 1) + HORIZON + timedelta(days=10), "long")])
    assert next_open(spec, utc(2026, 1, 2)) is None
    assert closed_reason(maintenance([window("0 22 * * *", 60)]), utc(2026, 12, 3, 12)) == (
        "outside the maintenance windows"
    )


def test_override_format_parse_and_freshness() -> None:
    value = format_override(utc(2026, 12, 3, 17, 40), "hotfix: venue outage / routing")
    assert value == "2026-12-03T17:40:00Z/hotfix: venue outage / routing"
    override = parse_override(value)
    assert override == Override(utc(2026, 12, 3, 17, 40), "hotfix: venue outage / routing")
    assert override.until == utc(2026, 12, 3, 18, 40)
    assert override.fresh(utc(2026, 12, 3, 17, 40)) and override.fresh(utc(2026, 12, 3, 18, 39, 59))
    assert not override.fresh(utc(2026, 12, 3, 18, 40))
    assert override.fresh(utc(2026, 12, 3, 17, 36))  # the CLI's clock a few minutes ahead of the operator's
    assert not override.fresh(utc(2026, 12, 3, 17, 30))  # a time further ahead does not extend the override
    assert parse_override("2026-12-03T17:40:00+01:00/x") == Override(utc(2026, 12, 3, 16, 40), "x")
    for malformed in (None, "", "2026-12-03T17:40:00Z", "2026-12-03T17:40:00Z/", "yesterday/because", "/reason"):
        assert parse_override(malformed) is None, malformed


def test_a_fresh_override_opens_maintenance_even_in_a_freeze() -> None:
    spec = maintenance([window("0 22 * * *", 60)], [freeze(utc(2026, 12, 3), utc(2026, 12, 4), "freeze")])
    override = Override(utc(2026, 12, 3, 14), "hotfix")
    assert closed_reason(spec, utc(2026, 12, 3, 14, 30), override) is None
    assert closed_reason(spec, utc(2026, 12, 3, 15), override) is not None


def test_a_02_30_window_on_the_fall_back_day_opens_once_at_the_first_02_30() -> None:
    # 25 October 2026 in Oslo: 02:30 happens at 00:30 UTC (CEST) and again at 01:30 UTC (CET); it opens once.
    spec = maintenance([window("30 2 * * *", 30, "Europe/Oslo")])
    assert next_open(spec, utc(2026, 10, 25)) == utc(2026, 10, 25, 0, 30)
    assert not is_open(spec, utc(2026, 10, 25, 1, 30))
    assert next_open(spec, utc(2026, 10, 25, 1)) == utc(2026, 10, 26, 1, 30)  # the next day, 02:30 CET
