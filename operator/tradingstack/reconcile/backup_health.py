"""Backup health from the backup CronJob's Jobs: status.postgres and the BackupHealthy condition.

Pure: the caller passes the backup Jobs as parsed by `components.observe` (each with the backup tool's result
from its pod's termination message), the schedule and `now`. Finished Jobs are pruned by the CronJob's
history limits, so the previous status carries the newest good backup forward.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Literal
from zoneinfo import ZoneInfo

from cronsim import CronSim

from tradingstack.api import BackupInfo
from tradingstack.api.status import PostgresStatus
from tradingstack.components.observe import JobRun
from tradingstack.contract import termination

STALE_AFTER_INTERVALS = 2
"""A backup older than this many schedule intervals means runs are being missed."""


@dataclass(frozen=True)
class BackupHealth:
    postgres: PostgresStatus
    """Value for status.postgres."""

    status: Literal["True", "False", "Unknown"]
    """Status of the BackupHealthy condition."""

    reason: str
    message: str


def backup_health(
    jobs: Sequence[JobRun],
    schedule: str,
    time_zone: str,
    now: datetime,
    previous: PostgresStatus | None = None,
) -> BackupHealth:
    """`jobs`: the backup CronJob's Jobs with their tools' results (`components.postgres.backup_runs`)."""
    previous = previous or PostgresStatus()
    runs = sorted(
        (_finished_run(job) for job in jobs if job.succeeded is not None), key=lambda run: (run.finished, run.job)
    )
    candidates = [b for b in (previous.last_backup, *(run.backup for run in runs)) if b is not None]
    newest = max(candidates, key=lambda backup: backup.time, default=None)
    last = runs[-1] if runs else None
    postgres = PostgresStatus(
        last_backup=newest,
        last_backup_job=last.job if last else previous.last_backup_job,
        last_backup_result=("Succeeded" if last.succeeded else "Failed") if last else previous.last_backup_result,
    )

    if last is not None and not last.succeeded:
        newest_good = f"newest good backup is {newest.name} from {_when(newest.time)}" if newest else ""
        if last.reason == termination.FailureReason.VOLUME_FULL:
            message = (
                f"backup Job {last.job} failed: the backup volume is full ({last.error}); nothing was deleted to make"
                f" room{'; ' + newest_good if newest_good else ''}. Free room on the volume: remove old archives by"
                " hand (a backup is its <name>.dump and <name>.json), lower spec.postgres.backup.keepLast so that"
                " retention keeps fewer, then run a backup now (docs/runbooks.md, TradingStackBackupUnhealthy)"
            )
            return BackupHealth(postgres, "False", termination.FailureReason.VOLUME_FULL.value, message)
        message = f"backup Job {last.job} failed: {last.error or 'no error reported'}"
        if newest_good:
            message += f"; {newest_good}"
        return BackupHealth(postgres, "False", "BackupFailed", message)
    if newest is None:
        if last is None:
            return BackupHealth(postgres, "Unknown", "NoBackupYet", "no backup Job has finished")
        return BackupHealth(postgres, "Unknown", "NoBackupReported", f"backup Job {last.job} reported no backup")
    interval = schedule_interval(schedule, time_zone, newest.time)
    if now - newest.time > STALE_AFTER_INTERVALS * interval:
        return BackupHealth(
            postgres,
            "False",
            "BackupStale",
            f"newest good backup {newest.name} is from {_when(newest.time)}, older than"
            f" {STALE_AFTER_INTERVALS} schedule intervals ({_hours(interval)} each)",
        )
    verified = "verified" if newest.verified else "not verified"
    return BackupHealth(
        postgres,
        "True",
        "BackupSucceeded",
        f"newest backup {newest.name} from {_when(newest.time)}, {newest.size_bytes} bytes, {verified}",
    )


def schedule_interval(schedule: str, time_zone: str, around: datetime) -> timedelta:
    """The longest gap between the scheduled runs around `around`: the run before it and the next two.

    The longest, so a schedule with gaps (weekdays only) is not called stale over the weekend; in real time
    (UTC), so a daylight-saving day counts its 23 or 25 hours."""
    local = around.astimezone(ZoneInfo(time_zone))
    # Reverse iteration excludes its start: a second later, so a run exactly at `around` counts as before it.
    before = next(iter(CronSim(schedule, local + timedelta(seconds=1), reverse=True)))
    upcoming = iter(CronSim(schedule, local))
    fires = [before, next(upcoming), next(upcoming)]
    utc = [fire.astimezone(UTC) for fire in fires]
    return max(later - earlier for earlier, later in pairwise(utc))


@dataclass(frozen=True)
class _Run:
    job: str
    finished: datetime
    succeeded: bool
    backup: BackupInfo | None
    error: str | None
    reason: termination.FailureReason | None = None
    """The cause the tool recognised (a full volume), if any."""


def _finished_run(run: JobRun) -> _Run:
    if run.finished_at is None:
        raise ValueError(f"backup Job {run.name} finished without a time")
    succeeded, result = bool(run.succeeded), run.result
    backup = result if succeeded and isinstance(result, BackupInfo) else None
    failure = result if isinstance(result, termination.ToolFailure) else None
    error = failure.error if failure else None
    if not succeeded:
        error = error or run.failure
    reason = failure.reason if failure and not succeeded else None
    return _Run(run.name, run.finished_at, succeeded, backup, error, reason)


def _when(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _hours(interval: timedelta) -> str:
    return f"{interval.total_seconds() / 3600:g}h"
