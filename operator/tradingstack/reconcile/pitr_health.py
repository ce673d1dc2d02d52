"""Point-in-time recovery health from the pgBackRest Jobs: status.postgres.pitr and its part of BackupHealthy.

Pure: the caller passes the Jobs of the pitr-backup and pitr-archive-status CronJobs as parsed by
`components.observe` (their results are `PitrBackupResult` and `ArchiveStatus`), the lag threshold and the
previous status. Finished Jobs are pruned by the CronJobs' history limits, so the previous status carries the
last full and differential backups forward.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from tradingstack.api.status import PitrStatus, PostgresStatus
from tradingstack.components.observe import JobRun
from tradingstack.contract import termination
from tradingstack.contract.termination import ArchiveStatus, PitrBackupResult
from tradingstack.reconcile.backup_health import BackupHealth


@dataclass(frozen=True)
class PitrHealth:
    pitr: PitrStatus
    """Value for status.postgres.pitr."""

    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str


def pitr_health(
    backups: Sequence[JobRun],
    archive: Sequence[JobRun],
    lag_threshold_seconds: float,
    previous: PitrStatus | None = None,
) -> PitrHealth:
    """`backups`: the pitr-backup Jobs; `archive`: the pitr-archive-status Jobs; `lag_threshold_seconds`:
    spec.postgres.pitr.archiveLagThresholdSeconds."""
    previous = previous or PitrStatus()
    finished = _by_finish(backups)
    results = [run.result for run in finished if run.succeeded and isinstance(run.result, PitrBackupResult)]
    observed = _newest_archive(results, _by_finish(archive))
    newest = results[-1] if results else None
    pitr = PitrStatus(
        last_full_backup=_last_of(results, "full", previous.last_full_backup),
        last_diff_backup=_last_of(results, "diff", previous.last_diff_backup),
        recoverable_from=newest.recoverable_from if newest else previous.recoverable_from,
        recoverable_to=newest.recoverable_to if newest else previous.recoverable_to,
        archive_lag_seconds=observed.lag_seconds if observed else previous.archive_lag_seconds,
        last_archived_at=observed.last_archived_at if observed else previous.last_archived_at,
        archive_failing=observed.failing if observed else previous.archive_failing,
    )
    last = finished[-1] if finished else None
    if last is not None and not last.succeeded:
        return PitrHealth(
            pitr, "False", "PitrBackupFailed", f"pgBackRest backup Job {last.name} failed: {_error(last)}"
        )
    if observed is not None and observed.failing:
        return PitrHealth(pitr, "False", "ArchiveFailing", _failing_message(observed))
    if observed is not None and observed.lag_seconds > lag_threshold_seconds:
        return PitrHealth(
            pitr,
            "False",
            "ArchiveLagging",
            f"{observed.ready_count} WAL segments wait to be archived, the oldest for {observed.lag_seconds:.0f} s"
            f" (threshold {lag_threshold_seconds:g} s)",
        )
    if pitr.last_full_backup is None:
        return PitrHealth(pitr, "Unknown", "NoPitrBackupYet", "no pgBackRest full backup has been reported")
    return PitrHealth(pitr, "True", "PitrBackupSucceeded", _window_message(pitr))


def with_pitr(backup: BackupHealth | None, pitr: PitrHealth, postgres: PostgresStatus) -> BackupHealth:
    """BackupHealthy over both kinds of backup: the pg_dump one's (`backup`, None when pg_dump backups are off;
    `postgres` is then the previous status.postgres) and PITR's. A False one wins, as it names what to repair,
    then an Unknown one; the messages of all that share the winning status are kept."""
    status = (backup.postgres if backup else postgres).model_copy(update={"pitr": pitr.pitr})
    judged = [(pitr.status, pitr.reason, pitr.message)]
    if backup is not None:
        judged.append((backup.status, backup.reason, backup.message))
    worst = next((j for wanted in ("False", "Unknown") for j in judged if j[0] == wanted), judged[0])
    message = "; ".join(m for s, _, m in judged if s == worst[0])
    return BackupHealth(status, worst[0], worst[1], message)


def _by_finish(runs: Sequence[JobRun]) -> list[JobRun]:
    finished = [run for run in runs if run.succeeded is not None]
    return sorted(finished, key=lambda run: (run.finished_at or datetime.min.replace(tzinfo=UTC), run.name))


def _last_of(results: list[PitrBackupResult], kind: str, previous: datetime | None) -> datetime | None:
    times = [r.backup.stopped for r in results if r.backup.type == kind]
    return max([*times, *([previous] if previous else [])], default=None)


def _newest_archive(backups: list[PitrBackupResult], archive: list[JobRun]) -> ArchiveStatus | None:
    """The newest observation of the server's archiving: a status Job's, or the one a backup took after it ran;
    None when the pruned Job history holds neither (the previous status's values then stay)."""
    observed = [run.result for run in archive if run.succeeded and isinstance(run.result, ArchiveStatus)]
    observed += [r.archive for r in backups if r.archive is not None]
    return max(observed, key=lambda status: status.observed_at, default=None)


def _error(run: JobRun) -> str:
    if isinstance(run.result, termination.ToolFailure):
        return run.result.error
    return run.failure or "no error reported"


def _failing_message(status: ArchiveStatus) -> str:
    last = f"last success {_when(status.last_archived_at)}" if status.last_archived_at else "nothing archived yet"
    failed = f"{status.last_failed_wal} at {_when(status.last_failed_at)}" if status.last_failed_at else "?"
    return f"archive_command fails: last failure {failed}, {last}; {status.ready_count} WAL segments wait"


def _window_message(pitr: PitrStatus) -> str:
    if pitr.recoverable_from is None or pitr.recoverable_to is None:
        return "pgBackRest backups taken; no recoverable window reported"
    return f"recoverable from {_when(pitr.recoverable_from)} to at least {_when(pitr.recoverable_to)}"


def _when(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if at else "never"
