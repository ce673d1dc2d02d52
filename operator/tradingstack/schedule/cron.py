"""Occurrences of a five-field cron schedule in an IANA time zone, as aware UTC datetimes.

cronsim evaluates the schedule on local wall-clock time and mimics Debian cron across DST changes for
schedules at a fixed minute and hour: a time skipped by spring-forward runs at the end of the gap (02:30 in
Europe/Oslo becomes 03:00 local), and a time repeated by fall-back runs only at its first occurrence.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim

# cronsim works at one-second resolution and drops microseconds; stepping back by one microsecond turns its
# "strictly after" into "at or after" for any start time.
_RESOLUTION = timedelta(microseconds=1)


def as_utc(moment: datetime) -> datetime:
    """`moment` in UTC; a naive datetime (an RFC 3339 value written without an offset) is taken as UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def occurrences(expression: str, time_zone: str, after: datetime) -> Iterator[datetime]:
    """Scheduled times strictly after `after`, ascending, in UTC; ends if none is left within cronsim's horizon.

    Wall-clock iteration across fall-back can name a time that is earlier in absolute terms than `after` (the
    first 02:30 when `after` is in the repeated hour); those are dropped so the sequence is strictly ascending
    and a time that already passed is never produced again.
    """
    after = as_utc(after)
    latest = after
    for local in CronSim(expression, after.astimezone(ZoneInfo(time_zone))):
        moment = as_utc(local)
        if moment > latest:
            latest = moment
            yield moment


def occurrences_from(expression: str, time_zone: str, start: datetime) -> Iterator[datetime]:
    """Scheduled times at or after `start`, ascending, in UTC."""
    return occurrences(expression, time_zone, as_utc(start) - _RESOLUTION)
