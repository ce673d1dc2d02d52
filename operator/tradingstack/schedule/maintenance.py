"""Change windows and freezes (`spec.maintenance`): is maintenance open at `now`, when does it open or close.

Pure: every function takes the current time as an argument. Semantics:

- A window opens at each occurrence `o` of its five-field cron `schedule`, read on the wall clock of its
  `timeZone` (`schedule.cron`, DST the way Debian cron does: a time skipped by spring-forward opens at the end
  of the gap, 02:30 Europe/Oslo on the last Sunday of March opens at 03:00 local; a time repeated by fall-back
  opens once, at its first occurrence). It is open for `[o, o + durationMinutes)`.
- Durations are absolute: a 120-minute window crossing a DST change lasts 120 real minutes, so its local
  closing time moves by the hour the clock jumped.
- Without windows, maintenance is open at all times, except during freezes.
- A freeze closes maintenance for `[start, end)`, windows or not.
- An apply-now override (`Annotation.APPLY_NOW`) set at most `OVERRIDE_TTL` ago opens maintenance whatever the
  windows and freezes say.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from tradingstack.api.spec import Freeze, MaintenanceSpec, MaintenanceWindow
from tradingstack.schedule.cron import as_utc, occurrences, occurrences_from

HORIZON = timedelta(days=366)
"""How far ahead `next_open` and `open_until` look."""
MAX_STEPS = 2000
"""`open_until` follows windows that touch or overlap one another at most this many times (a window opening
every minute would otherwise chain for a year of occurrences)."""
OVERRIDE_TTL = timedelta(minutes=60)
"""An apply-now override opens maintenance for this long after the time it carries."""
OVERRIDE_SKEW = timedelta(minutes=5)
"""An override time at most this far in the future (the CLI's clock ahead of the operator's) is fresh already;
one further ahead is ignored, so a future time cannot extend an override."""


def _end(window: MaintenanceWindow, opened: datetime) -> datetime:
    return opened + timedelta(minutes=window.duration_minutes)


def window_end(window: MaintenanceWindow, now: datetime) -> datetime | None:
    """The end of the latest opening of `window` that covers `now` (`o <= now < o + duration`), else None."""
    now = as_utc(now)
    latest: datetime | None = None
    for opened in occurrences(window.schedule, window.time_zone, now - timedelta(minutes=window.duration_minutes)):
        if opened > now:
            break
        latest = opened
    return None if latest is None else _end(window, latest)


def in_windows(spec: MaintenanceSpec, now: datetime) -> bool:
    """Whether `now` is inside some window; True when there are no windows."""
    return not spec.windows or any(window_end(window, now) is not None for window in spec.windows)


def freezes_at(spec: MaintenanceSpec, now: datetime) -> list[Freeze]:
    """The freezes in force at `now` (`start <= now < end`), latest end first."""
    now = as_utc(now)
    found = [f for f in spec.freezes if as_utc(f.start) <= now < as_utc(f.end)]
    return sorted(found, key=lambda f: as_utc(f.end), reverse=True)


def freeze_in_force(spec: MaintenanceSpec, now: datetime) -> Freeze | None:
    """The freeze in force at `now` that ends last (for messages), or None."""
    return next(iter(freezes_at(spec, now)), None)


def frozen_until(spec: MaintenanceSpec, now: datetime) -> datetime | None:
    """When the freezes in force at `now` end, following freezes that overlap or touch them; None if none."""
    current = freeze_in_force(spec, now)
    if current is None:
        return None
    end = as_utc(current.end)
    while (following := freeze_in_force(spec, end)) is not None:
        end = as_utc(following.end)
    return end


def is_open(spec: MaintenanceSpec, now: datetime) -> bool:
    """Inside some window (or no windows) and not inside any freeze."""
    return freeze_in_force(spec, now) is None and in_windows(spec, now)


def _next_opening(windows: Iterable[MaintenanceWindow], start: datetime) -> datetime | None:
    """The earliest window opening at or after `start`."""
    found = [o for w in windows if (o := next(occurrences_from(w.schedule, w.time_zone, start), None)) is not None]
    return min(found, default=None)


def next_open(spec: MaintenanceSpec, now: datetime, horizon: timedelta = HORIZON) -> datetime | None:
    """The first moment at or after `now` when maintenance is open (no override counted), searching `horizon`
    ahead; None when it does not open within it (e.g. a freeze longer than the horizon).

    The open moments are a union of half-open intervals, so the first one is `now`, a window's opening or a
    freeze's end: a frozen moment jumps to the end of the freezes, a moment outside the windows to the next
    opening. Each step passes a freeze or reaches an opening, so it ends after at most a few steps per freeze.
    """
    moment = as_utc(now)
    limit = moment + horizon
    while moment <= limit:
        thawed = frozen_until(spec, moment)
        if thawed is not None:
            moment = thawed
            continue
        if in_windows(spec, moment):
            return moment
        opening = _next_opening(spec.windows, moment)
        if opening is None:
            return None
        moment = opening
    return None


def open_until(spec: MaintenanceSpec, now: datetime, horizon: timedelta = HORIZON) -> datetime | None:
    """While open at `now`: when the open period ends (the next freeze's start, or the end of the windows
    covering `now` and of those that overlap or touch them); None when closed, or when it does not end within
    `horizon` (or `MAX_STEPS` chained windows)."""
    now = as_utc(now)
    if not is_open(spec, now):
        return None
    limit = now + horizon
    freeze_starts = [as_utc(f.start) for f in spec.freezes if now < as_utc(f.start) <= limit]
    next_freeze = min(freeze_starts, default=None)
    if not spec.windows:
        return next_freeze
    end = now
    for _ in range(MAX_STEPS):
        ends = [e for w in spec.windows if (e := window_end(w, end)) is not None]
        if not ends:
            return end if next_freeze is None else min(end, next_freeze)
        end = max(ends)
        if end > limit or (next_freeze is not None and end >= next_freeze):
            return next_freeze
    return next_freeze


@dataclass(frozen=True)
class Override:
    """An apply-now override: maintenance counts as open from `set_at` for `OVERRIDE_TTL`."""

    set_at: datetime
    reason: str

    @property
    def until(self) -> datetime:
        return self.set_at + OVERRIDE_TTL

    def fresh(self, now: datetime) -> bool:
        """Set at most OVERRIDE_TTL before `now` (and not more than OVERRIDE_SKEW after it)."""
        now = as_utc(now)
        return self.set_at - OVERRIDE_SKEW <= now < self.until


def format_override(set_at: datetime, reason: str) -> str:
    """The annotation value: `2026-12-03T17:40:00Z/<reason>` (RFC 3339 in UTC, a slash, the reason as typed)."""
    return f"{as_utc(set_at).strftime('%Y-%m-%dT%H:%M:%SZ')}/{reason}"


def parse_override(value: str | None) -> Override | None:
    """The override an annotation value names; None when absent or malformed (no time, no reason)."""
    if not value or "/" not in value:
        return None
    stamp, reason = value.split("/", 1)
    reason = reason.strip()
    try:
        set_at = datetime.fromisoformat(stamp.strip())
    except ValueError:
        return None
    if not reason:
        return None
    return Override(as_utc(set_at), reason)


def closed_reason(spec: MaintenanceSpec, now: datetime, override: Override | None = None) -> str | None:
    """None when disruptive actions may start at `now` (open, or a fresh override); else why not, e.g.
    `frozen until 2026-12-24T00:00:00+00:00 (year-end close)` or `outside the maintenance windows`."""
    if override is not None and override.fresh(now):
        return None
    freeze = freeze_in_force(spec, now)
    thawed = frozen_until(spec, now)
    if freeze is not None and thawed is not None:
        return f"frozen until {thawed.isoformat()} ({freeze.reason})"
    if not in_windows(spec, now):
        return "outside the maintenance windows"
    return None
