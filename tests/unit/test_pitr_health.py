"""status.postgres.pitr and BackupHealthy from the pgBackRest Jobs (`reconcile.pitr_health`), and its metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.unit.test_pitr_tool import T0, archive, backup
from tradingstack.api import TradingStackStatus
from tradingstack.api.status import PitrStatus, PostgresStatus
from tradingstack.components.observe import JobRun
from tradingstack.contract.termination import BackupInfo, PitrBackupResult, PitrBackupType, ToolFailure
from tradingstack.metrics import stack_samples
from tradingstack.reconcile.backup_health import BackupHealth
from tradingstack.reconcile.pitr_health import PitrHealth, pitr_health, with_pitr

THRESHOLD = 300.0
FULL_AT = T0 - timedelta(hours=20)
DIFF_AT = T0 - timedelta(hours=1)


def run(name: str, at: datetime, result: Any, succeeded: bool = True) -> JobRun:
    return JobRun(name, ("qt-pitr",), succeeded, at, None if succeeded else "BackoffLimitExceeded", result)


def backup_run(name: str, kind: PitrBackupType, stopped: datetime, **archive_changes: Any) -> JobRun:
    result = PitrBackupResult(
        backup=backup(f"{name}-label", kind, stopped),
        verified=True,
        recoverable_from=FULL_AT,
        recoverable_to=stopped,
        archive=archive(observed_at=stopped, **archive_changes),
    )
    return run(name, stopped + timedelta(seconds=5), result)


GOOD = [backup_run("full-1", "full", FULL_AT), backup_run("diff-1", "diff", DIFF_AT)]


def test_good_backups_and_archiving_fill_the_status() -> None:
    health = pitr_health(GOOD, [run("arch-1", T0, archive(lag_seconds=1.5))], THRESHOLD)
    assert (health.status, health.reason) == ("True", "PitrBackupSucceeded")
    assert health.pitr == PitrStatus(
        last_full_backup=FULL_AT,
        last_diff_backup=DIFF_AT,
        recoverable_from=FULL_AT,
        recoverable_to=DIFF_AT,
        archive_lag_seconds=1.5,
        last_archived_at=T0 - timedelta(seconds=5),
        archive_failing=False,
    )
    assert "recoverable from" in health.message


def test_a_failed_newest_backup_is_reported_with_its_error_and_the_old_window_stays() -> None:
    failed = run("diff-2", T0, ToolFailure(error="verify found a damaged repository: invalid checksum 'x'"), False)
    health = pitr_health([*GOOD, failed], [], THRESHOLD)
    assert (health.status, health.reason) == ("False", "PitrBackupFailed")
    assert "diff-2" in health.message
    assert "invalid checksum 'x'" in health.message
    assert health.pitr.recoverable_to == DIFF_AT


def test_a_failed_backup_without_a_message_reports_the_jobs_condition() -> None:
    health = pitr_health([run("full-2", T0, None, succeeded=False)], [], THRESHOLD)
    assert health.reason == "PitrBackupFailed"
    assert "BackoffLimitExceeded" in health.message


def test_archiving_that_fails_after_its_last_success() -> None:
    failing = archive(failed_count=9, last_failed_wal="000000010000000000000010", last_failed_at=T0, ready_count=4)
    health = pitr_health(GOOD, [run("arch-2", T0, failing)], THRESHOLD)
    assert (health.status, health.reason) == ("False", "ArchiveFailing")
    assert "000000010000000000000010" in health.message
    assert health.pitr.archive_failing


def test_archiving_that_lags_beyond_the_threshold() -> None:
    lagging = archive(ready_count=30, oldest_ready_at=T0 - timedelta(seconds=301), lag_seconds=301.0)
    health = pitr_health(GOOD, [run("arch-3", T0, lagging)], THRESHOLD)
    assert (health.status, health.reason) == ("False", "ArchiveLagging")
    assert "301 s" in health.message
    assert pitr_health(GOOD, [run("arch-3", T0, lagging)], 301.0).status == "True"


def test_the_newest_observation_wins_whether_a_backup_or_a_status_job_took_it() -> None:
    before = DIFF_AT - timedelta(minutes=1)
    earlier = before - timedelta(minutes=1)
    failing = archive(observed_at=before, last_archived_at=earlier, last_failed_at=before, failed_count=1)
    assert failing.failing
    old_failure = run("arch-0", before, failing)
    health = pitr_health(GOOD, [old_failure], THRESHOLD)
    assert health.reason == "PitrBackupSucceeded"  # the diff's observation is newer and shows no failure


def test_nothing_reported_yet_is_unknown_and_the_previous_status_carries_forward() -> None:
    assert pitr_health([], [], THRESHOLD).reason == "NoPitrBackupYet"
    previous = pitr_health(GOOD, [], THRESHOLD).pitr
    carried = pitr_health([], [], THRESHOLD, previous)
    assert carried.pitr == previous
    assert carried.reason == "PitrBackupSucceeded"
    newer_diff = pitr_health([backup_run("diff-2", "diff", T0)], [], THRESHOLD, previous)
    assert newer_diff.pitr.last_full_backup == FULL_AT
    assert newer_diff.pitr.last_diff_backup == T0


def test_jobs_still_running_are_not_judged() -> None:
    running = JobRun("diff-2", ("qt-pitr",), None, None, None, None)
    assert pitr_health([*GOOD, running], [], THRESHOLD).reason == "PitrBackupSucceeded"


DUMP_OK = BackupHealth(
    PostgresStatus(
        last_backup=BackupInfo(time=T0, name="b", size_bytes=1, checksum="sha256:0", verified=True),
        last_backup_result="Succeeded",
    ),
    "True",
    "BackupSucceeded",
    "newest backup b",
)


@pytest.mark.parametrize(
    ("dump", "pitr", "expected"),
    [
        (DUMP_OK, PitrHealth(PitrStatus(), "True", "PitrBackupSucceeded", "window"), ("True", "PitrBackupSucceeded")),
        (DUMP_OK, PitrHealth(PitrStatus(), "False", "ArchiveLagging", "lag"), ("False", "ArchiveLagging")),
        (
            BackupHealth(PostgresStatus(), "False", "BackupStale", "stale"),
            PitrHealth(PitrStatus(), "Unknown", "NoPitrBackupYet", "none"),
            ("False", "BackupStale"),
        ),
        (None, PitrHealth(PitrStatus(), "Unknown", "NoPitrBackupYet", "none"), ("Unknown", "NoPitrBackupYet")),
    ],
)
def test_backup_healthy_over_both_kinds_of_backup(
    dump: BackupHealth | None, pitr: PitrHealth, expected: tuple[str, str]
) -> None:
    combined = with_pitr(dump, pitr, PostgresStatus(last_backup_job="kept"))
    assert (combined.status, combined.reason) == expected
    assert combined.postgres.pitr == pitr.pitr
    assert combined.postgres.last_backup_job == (dump.postgres.last_backup_job if dump else "kept")


def test_both_failing_keeps_both_messages() -> None:
    dump = BackupHealth(PostgresStatus(), "False", "BackupFailed", "dump failed")
    combined = with_pitr(dump, PitrHealth(PitrStatus(), "False", "ArchiveFailing", "archive fails"), PostgresStatus())
    assert combined.reason == "ArchiveFailing"
    assert combined.message == "archive fails; dump failed"


def test_pitr_metrics_only_for_what_was_reported() -> None:
    def samples(pitr: PitrStatus | None) -> dict[str, float]:
        status = TradingStackStatus(postgres=PostgresStatus(pitr=pitr))
        return {name: v for name, _, v in stack_samples(status, 0) if name.startswith("tradingstack_postgres_")}

    assert samples(None) == {}
    assert samples(PitrStatus()) == {}
    to = datetime(2026, 12, 4, 11, 0, tzinfo=UTC)
    assert samples(PitrStatus(archive_lag_seconds=12.5, archive_failing=True, recoverable_to=to)) == {
        "tradingstack_postgres_archive_lag_seconds": 12.5,
        "tradingstack_postgres_archive_failing": 1.0,
        "tradingstack_postgres_recoverable_to_timestamp_seconds": to.timestamp(),
    }
