"""PITR through whole reconcile passes (in-memory API server): the pgBackRest Jobs' results reach
status.postgres.pitr and BackupHealthy, and the pass adds nothing for a stack without pitr."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.unit.test_pass import NOW, ApiServer, example_body, one_pass
from tradingstack.contract import Label
from tradingstack.contract.termination import ArchiveStatus, PitrBackup, PitrBackupResult

STACK = "quantum-trader"
FULL = f"{STACK}-postgres-pitr-full"
ARCHIVE = f"{STACK}-postgres-pitr-archive"


def pitr_body() -> dict[str, Any]:
    body = example_body()
    body["spec"]["postgres"]["pitr"] = {"enabled": True, "archiveLagThresholdSeconds": 120}
    return body


def finished_job(api: ApiServer, cronjob: str, message: str, minutes_ago: int) -> None:
    """A Job of `cronjob` that succeeded `minutes_ago`, and its pod's termination message."""
    name = f"{cronjob}-{minutes_ago}"
    finished = (NOW - timedelta(minutes=minutes_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    labels = {Label.STACK: STACK, Label.JOB_NAME: name}
    api.objects["Job", name] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": labels, "ownerReferences": [{"kind": "CronJob", "name": cronjob}]},
        "status": {"conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": finished}],
                   "completionTime": finished},
    }  # fmt: skip
    terminated = {"state": {"terminated": {"exitCode": 0, "message": message}}}
    api.objects["Pod", f"{name}-pod"] = {
        "kind": "Pod",
        "metadata": {"name": f"{name}-pod", "labels": labels, "creationTimestamp": finished},
        "status": {"phase": "Succeeded", "containerStatuses": [terminated]},
    }


def archive(lag: float) -> ArchiveStatus:
    return ArchiveStatus(observed_at=NOW, archived_count=10, last_archived_at=NOW, failed_count=0,
                         ready_count=3 if lag else 0, lag_seconds=lag)  # fmt: skip


async def test_a_pgbackrest_backup_fills_status_postgres_pitr_and_a_lag_turns_backup_healthy_false() -> None:
    api = ApiServer()
    await one_pass(api, pitr_body())
    api.settle()
    assert ("CronJob", FULL) in api.objects and ("CronJob", ARCHIVE) in api.objects
    stopped = NOW - timedelta(minutes=30)
    backup = PitrBackup(label="20261204-113000F", type="full", started=stopped - timedelta(minutes=1),
                        stopped=stopped, repo=1, size_bytes=1, repo_size_bytes=1)  # fmt: skip
    result = PitrBackupResult(
        backup=backup,
        verified=True,
        recoverable_from=stopped,
        recoverable_to=stopped + timedelta(minutes=1),
        archive=archive(0),
    )
    finished_job(api, FULL, result.model_dump_json(by_alias=True), minutes_ago=29)
    status, _ = await one_pass(api, pitr_body())
    assert status.postgres.pitr is not None and status.postgres.pitr.last_full_backup == stopped
    assert status.postgres.pitr.recoverable_to == stopped + timedelta(minutes=1)
    healthy = {c.type: c for c in status.conditions}["BackupHealthy"]
    assert healthy.status != "False", healthy

    finished_job(api, ARCHIVE, archive(600).model_dump_json(by_alias=True), minutes_ago=1)
    status, _ = await one_pass(api, pitr_body())
    healthy = {c.type: c for c in status.conditions}["BackupHealthy"]
    assert (healthy.status, healthy.reason) == ("False", "ArchiveLagging"), healthy
    assert status.postgres.pitr is not None and status.postgres.pitr.archive_lag_seconds == 600
