"""The PostgreSQL renderer (golden file, pod security, backup CronJob, restore Jobs) and backup health."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from tests.golden import assert_golden
from tests.psa import pod_specs, restricted_violations
from tests.unit.components.kinds import assert_declares_what_it_renders
from tests.unit.components.recorded import live_workloads, workload
from tradingstack.api import BackupInfo, TradingStack
from tradingstack.api.status import PostgresStatus
from tradingstack.components import postgres
from tradingstack.components.assess import Assessment, ConditionUpdate
from tradingstack.components.observe import JobRun, observe
from tradingstack.contract import Annotation, Label, termination
from tradingstack.reconcile.backup_health import backup_health, schedule_interval
from tradingstack.render.postgres import (
    BACKUP_IMAGE,
    POSTGRES_SECRET_KEYS,
    connection_env,
    dsn,
    render_postgres,
    render_restore_job,
    secret_name,
)


def example_stack(**postgres: Any) -> TradingStack:
    return TradingStack.model_validate(
        {
            "metadata": {"name": "quant", "namespace": "trading", "uid": "0b5c1a2e-uid"},
            "spec": {
                "postgres": {
                    "storage": {"size": "50Gi", "storageClassName": "fast-ssd"},
                    "backup": {"schedule": "15 3 * * *", "timeZone": "Europe/Oslo", "keepLast": 5},
                    **postgres,
                }
            },
        }
    )


def _render(stack: TradingStack) -> dict[str, dict[str, Any]]:
    return {m["kind"]: m for m in render_postgres(stack, stack.owner_reference())}


def _cronjob_pod(stack: TradingStack) -> dict[str, Any]:
    pod: dict[str, Any] = _render(stack)["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return pod


def test_matches_golden_file() -> None:
    stack = example_stack(restore={"from": "latest"})
    manifests = render_postgres(stack, stack.owner_reference())
    manifests.append(render_restore_job(stack, stack.owner_reference(), "trading-20260101T020000.000Z", force=True))
    assert_golden("postgres.yaml", yaml.safe_dump_all(manifests, sort_keys=True))


def test_every_pod_is_restricted_and_runs_as_the_postgres_uid() -> None:
    stack = example_stack(restore={"from": "latest"})
    workloads = [
        *render_postgres(stack, stack.owner_reference()),
        render_restore_job(stack, stack.owner_reference(), "latest", False),
    ]
    pods = [pod for obj in workloads for pod in pod_specs(obj)]
    assert len(pods) == 4
    for pod in pods:
        assert restricted_violations(pod) == []
        assert pod["securityContext"]["runAsUser"] == 999
        assert pod["securityContext"]["fsGroup"] == 999
        for container in pod.get("initContainers", []) + pod["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_statefulset_keeps_data_in_a_subdirectory_of_its_claim_and_writable_runtime_dirs() -> None:
    statefulset = _render(example_stack())["StatefulSet"]
    assert statefulset["metadata"]["name"] == "quant-postgres"
    assert statefulset["spec"]["replicas"] == 1
    [claim] = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert claim["spec"]["storageClassName"] == "fast-ssd"
    [container] = statefulset["spec"]["template"]["spec"]["containers"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    env = {e["name"]: e for e in container["env"]}
    assert env["PGDATA"]["value"].startswith("/var/lib/postgresql/data/")
    assert mounts["/var/lib/postgresql/data"] == "data"
    assert {"/var/run/postgresql", "/tmp"} <= set(mounts)
    assert "pg_isready" in container["readinessProbe"]["exec"]["command"]
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "quant-postgres", "key": "password"}


def test_no_secret_is_rendered_and_credentials_come_from_the_generated_secret() -> None:
    stack = example_stack()
    rendered = render_postgres(stack, stack.owner_reference())
    assert "Secret" not in {m["kind"] for m in rendered}
    assert "password" not in yaml.safe_dump_all(rendered).replace("key: password", "")
    assert secret_name(stack) == "quant-postgres"
    assert POSTGRES_SECRET_KEYS == ("username", "password", "dsn")


def test_connection_env_for_services() -> None:
    env = {e["name"]: e for e in connection_env(example_stack(), "cluster.local")}
    assert env["PGHOST"]["value"] == "quant-postgres.trading.svc.cluster.local"
    assert env["PGPORT"]["value"] == "5432"
    assert env["PGDATABASE"]["value"] == "trading"
    refs = {name: env[name]["valueFrom"]["secretKeyRef"] for name in ("PGUSER", "PGPASSWORD", "DATABASE_URL")}
    assert refs == {
        "PGUSER": {"name": "quant-postgres", "key": "username"},
        "PGPASSWORD": {"name": "quant-postgres", "key": "password"},
        "DATABASE_URL": {"name": "quant-postgres", "key": "dsn"},
    }


def test_dsn_percent_encodes_the_password() -> None:
    assert (
        dsn(example_stack(), "a/b@c:d", "cluster.local")
        == "postgresql://trading:a%2Fb%40c%3Ad@quant-postgres.trading.svc.cluster.local:5432/trading"
    )


def test_backup_cronjob_schedule_history_and_retention() -> None:
    stack = example_stack()
    rendered = _render(stack)
    cronjob = rendered["CronJob"]
    assert cronjob["metadata"]["name"] == "quant-postgres-backup"
    spec = cronjob["spec"]
    assert (spec["schedule"], spec["timeZone"], spec["concurrencyPolicy"]) == ("15 3 * * *", "Europe/Oslo", "Forbid")
    assert spec["successfulJobsHistoryLimit"] == spec["failedJobsHistoryLimit"] == 3
    assert spec["jobTemplate"]["spec"]["backoffLimit"] <= 2
    pod = _cronjob_pod(stack)
    assert pod["restartPolicy"] == "Never"
    [tool] = pod["containers"]
    assert tool["image"] == BACKUP_IMAGE
    assert tool["args"] == ["backup", "--keep-last=5"]
    assert tool["terminationMessagePath"] == "/dev/termination-log"
    claim = rendered["PersistentVolumeClaim"]
    assert claim["metadata"]["name"] == "quant-postgres-backups"
    assert claim["metadata"]["annotations"] == {Annotation.RETAIN: "true"}
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert {"name": "backups", "persistentVolumeClaim": {"claimName": "quant-postgres-backups"}} in pod["volumes"]


@pytest.mark.parametrize(
    ("backup", "flags"),
    [({"verify": False}, ["--no-verify"]), ({"verifyRestore": True}, ["--restore-check"])],
)
def test_backup_verification_flags(backup: dict[str, Any], flags: list[str]) -> None:
    [tool] = _cronjob_pod(example_stack(backup=backup))["containers"]
    assert tool["args"] == ["backup", "--keep-last=7", *flags]


def test_disabled_backups_keep_the_volume_but_no_cronjob() -> None:
    rendered = _render(example_stack(backup={"enabled": False}))
    assert "CronJob" not in rendered
    assert "PersistentVolumeClaim" in rendered


def test_restore_from_spec_bootstraps_only_an_empty_database() -> None:
    assert "Job" not in _render(example_stack())
    job = _render(example_stack(restore={"from": "trading-20260101T020000.000Z"}))["Job"]
    assert job["metadata"]["name"] == "quant-postgres-restore"
    [tool] = job["spec"]["template"]["spec"]["containers"]
    assert tool["args"] == ["restore", "--from=trading-20260101T020000.000Z", "--if-empty"]
    [wait] = job["spec"]["template"]["spec"]["initContainers"]
    assert "pg_isready" in " ".join(wait["command"])


@pytest.mark.parametrize(("force", "flags"), [(False, []), (True, ["--force"])])
def test_on_demand_restore_job(force: bool, flags: list[str]) -> None:
    stack = example_stack()
    job = render_restore_job(stack, stack.owner_reference(), "latest", force)
    assert "name" not in job["metadata"]
    assert job["metadata"]["generateName"] == "quant-postgres-restore-"
    assert job["metadata"]["ownerReferences"] == [stack.owner_reference().to_dict()]
    [tool] = job["spec"]["template"]["spec"]["containers"]
    assert tool["args"] == ["restore", "--from=latest", *flags]


def test_render_is_deterministic() -> None:
    stack = example_stack(restore={"from": "latest"})
    assert render_postgres(stack, stack.owner_reference()) == render_postgres(stack, stack.owner_reference())


# Backup health -----------------------------------------------------------------------------------------------

NOW = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)


def _backup(at: datetime, name: str = "", verified: bool = True) -> BackupInfo:
    return BackupInfo(
        time=at,
        name=name or f"trading-{at:%Y%m%dT%H%M%S}.000Z",
        size_bytes=1024,
        checksum="sha256:00",
        verified=verified,
    )


def _job(name: str, finished: datetime | None, succeeded: bool = True) -> dict[str, Any]:
    status: dict[str, Any] = {"startTime": "2026-06-01T00:00:00Z"}
    if finished is not None:
        stamp = finished.strftime("%Y-%m-%dT%H:%M:%SZ")
        condition = {"type": "Complete" if succeeded else "Failed", "status": "True", "lastTransitionTime": stamp}
        if not succeeded:
            condition |= {"reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}
        status["conditions"] = [condition]
        if succeeded:
            status["completionTime"] = stamp
    return {"metadata": {"name": name}, "status": status}


def _message(backup: BackupInfo) -> str:
    return backup.model_dump_json(by_alias=True)


def _pod(job: str, message: str, created: str = "2026-06-01T00:00:00Z", name: str = "") -> dict[str, Any]:
    """A finished pod of `job` whose container wrote `message` as its termination message."""
    terminated = {"state": {"terminated": {"exitCode": 0, "message": message}}}
    metadata = {"name": name or f"{job}-pod", "creationTimestamp": created, "labels": {Label.JOB_NAME: job}}
    return {"kind": "Pod", "metadata": metadata, "status": {"containerStatuses": [terminated]}}


def _runs(jobs: list[dict[str, Any]], messages: dict[str, str] | None = None) -> list[JobRun]:
    """The Jobs as the pass observes them: with their pods' termination messages, parsed by `observe`."""
    children = {("Job", job["metadata"]["name"]): job for job in jobs}
    children |= {("Pod", f"{job}-pod"): _pod(job, message) for job, message in (messages or {}).items()}
    return list(observe(children).jobs)


def test_health_reports_the_newest_successful_backup() -> None:
    older, newer = _backup(NOW - timedelta(days=1, hours=10)), _backup(NOW - timedelta(hours=10))
    jobs = [_job("b-2", NOW - timedelta(hours=9, minutes=58)), _job("b-1", NOW - timedelta(days=1, hours=9))]
    health = backup_health(_runs(jobs, {"b-1": _message(older), "b-2": _message(newer)}), "0 2 * * *", "UTC", NOW)
    assert health.postgres == PostgresStatus(last_backup=newer, last_backup_job="b-2", last_backup_result="Succeeded")
    assert (health.status, health.reason) == ("True", "BackupSucceeded")
    assert newer.name in health.message


def test_health_is_false_when_the_last_finished_run_failed_and_keeps_the_last_good_backup() -> None:
    good = _backup(NOW - timedelta(days=1, hours=10))
    jobs = [
        _job("b-1", NOW - timedelta(days=1, hours=9)),
        _job("b-2", NOW - timedelta(hours=9), succeeded=False),
        _job("b-3", None),  # still running: not a finished run
    ]
    messages = {"b-1": _message(good), "b-2": '{"error": "pg_dump exited 1: connection refused"}'}
    health = backup_health(_runs(jobs, messages), "0 2 * * *", "UTC", NOW)
    assert health.postgres == PostgresStatus(last_backup=good, last_backup_job="b-2", last_backup_result="Failed")
    assert (health.status, health.reason) == ("False", "BackupFailed")
    assert "connection refused" in health.message
    assert good.name in health.message


def test_a_full_backup_volume_is_its_own_reason_and_says_what_to_do() -> None:
    good = _backup(NOW - timedelta(days=1, hours=10))
    jobs = [_job("b-1", NOW - timedelta(days=1, hours=9)), _job("b-2", NOW - timedelta(hours=9), succeeded=False)]
    full = termination.ToolFailure(
        error="the backup volume /backups is full (0 bytes free): pg_dump exited 1: No space left on device",
        reason=termination.FailureReason.VOLUME_FULL,
    )
    messages = {"b-1": _message(good), "b-2": termination.render(full)}

    health = backup_health(_runs(jobs, messages), "0 2 * * *", "UTC", NOW)

    assert (health.status, health.reason) == ("False", "BackupVolumeFull")
    assert health.postgres == PostgresStatus(last_backup=good, last_backup_job="b-2", last_backup_result="Failed")
    assert "No space left on device" in health.message
    assert "nothing was deleted" in health.message
    assert good.name in health.message
    assert "remove old archives" in health.message and "keepLast" in health.message


def test_a_full_volume_reported_by_an_older_run_is_not_the_reason_once_a_backup_succeeded() -> None:
    full = termination.ToolFailure(error="full", reason=termination.FailureReason.VOLUME_FULL)
    good = _backup(NOW - timedelta(hours=1))
    jobs = [_job("b-1", NOW - timedelta(hours=3), succeeded=False), _job("b-2", NOW - timedelta(minutes=55))]
    health = backup_health(
        _runs(jobs, {"b-1": termination.render(full), "b-2": _message(good)}), "0 * * * *", "UTC", NOW
    )
    assert (health.status, health.reason) == ("True", "BackupSucceeded")


def test_failed_run_without_a_message_reports_the_job_condition() -> None:
    health = backup_health(_runs([_job("b-1", NOW, succeeded=False)]), "0 2 * * *", "UTC", NOW)
    assert health.reason == "BackupFailed"
    assert "backoff limit" in health.message


def test_a_successful_run_after_a_failure_makes_it_healthy_again() -> None:
    good = _backup(NOW - timedelta(hours=1))
    jobs = [_job("b-1", NOW - timedelta(days=1), succeeded=False), _job("b-2", NOW - timedelta(minutes=55))]
    health = backup_health(_runs(jobs, {"b-2": _message(good)}), "0 * * * *", "UTC", NOW)
    assert (health.status, health.postgres.last_backup_result) == ("True", "Succeeded")


@pytest.mark.parametrize(
    ("age", "status"),
    [(timedelta(hours=47), "True"), (timedelta(hours=48, minutes=1), "False")],
)
def test_health_is_false_when_the_newest_backup_is_older_than_two_intervals(age: timedelta, status: str) -> None:
    previous = PostgresStatus(last_backup=_backup(NOW - age), last_backup_job="old", last_backup_result="Succeeded")
    # Daily at 12:00 (the backup's own time), and the Jobs that made it are gone from the history.
    health = backup_health([], "0 12 * * *", "UTC", NOW, previous=previous)
    assert health.status == status
    assert health.postgres == previous
    if status == "False":
        assert health.reason == "BackupStale"
        assert "24h" in health.message


def test_a_previous_backup_newer_than_the_remaining_jobs_is_kept() -> None:
    recent, old = _backup(NOW - timedelta(hours=2)), _backup(NOW - timedelta(days=3))
    previous = PostgresStatus(last_backup=recent, last_backup_job="b-9", last_backup_result="Succeeded")
    health = backup_health(
        _runs([_job("b-1", NOW - timedelta(days=3))], {"b-1": _message(old)}),
        "0 * * * *",
        "UTC",
        NOW,
        previous=previous,
    )
    assert health.postgres.last_backup == recent


def test_no_finished_run_yet_is_unknown() -> None:
    health = backup_health(_runs([_job("b-1", None)]), "0 2 * * *", "UTC", NOW)
    assert (health.status, health.reason) == ("Unknown", "NoBackupYet")
    assert health.postgres == PostgresStatus()


def test_success_without_a_readable_result_is_unknown() -> None:
    health = backup_health(
        _runs([_job("b-1", NOW)], {"b-1": "Traceback (most recent call last): ..."}), "0 2 * * *", "UTC", NOW
    )
    assert (health.status, health.reason) == ("Unknown", "NoBackupReported")
    assert health.postgres.last_backup_result == "Succeeded"


def test_weekday_schedule_is_not_stale_over_the_weekend() -> None:
    friday = datetime(2026, 6, 5, 2, 0, 30, tzinfo=UTC)
    monday_morning = datetime(2026, 6, 8, 1, 59, tzinfo=UTC)
    previous = PostgresStatus(last_backup=_backup(friday))
    health = backup_health([], "0 2 * * 1-5", "UTC", monday_morning, previous=previous)
    assert health.status == "True"


def test_interval_counts_real_hours_across_daylight_saving_changes() -> None:
    # Europe/Oslo skips 02:00-03:00 on 2026-03-29: cron runs at 03:00 that day, 23.5 real hours after the run
    # before, and 23.5 hours before the next one.
    spring = datetime(2026, 3, 28, 1, 31, tzinfo=UTC)  # 02:31 local
    assert schedule_interval("30 2 * * *", "Europe/Oslo", spring) == timedelta(hours=23, minutes=30)
    # 2026-10-25 has 25 hours: noon to noon across it is 25 real hours.
    autumn = datetime(2026, 10, 24, 10, 1, tzinfo=UTC)  # 12:01 local
    assert schedule_interval("0 12 * * *", "Europe/Oslo", autumn) == timedelta(hours=25)
    assert schedule_interval("*/15 * * * *", "UTC", NOW) == timedelta(minutes=15)


def test_declares_every_kind_it_renders() -> None:
    # Backup pods are read for their termination messages; the credentials are generated; a restore Job is
    # rendered only when one is asked for.
    patroni_kinds = {"ServiceAccount", "Role", "RoleBinding", "PodDisruptionBudget"}
    single = {"Pod", "Secret", "Job", "ConfigMap", *patroni_kinds}
    assert_declares_what_it_renders(postgres.COMPONENT, example_stack(), single)
    # With pitr, the pgBackRest ConfigMap too: declared, so it is pruned when pitr is turned off again.
    pitr = example_stack(pitr={"enabled": True})
    assert_declares_what_it_renders(postgres.COMPONENT, pitr, {"Pod", "Secret", "Job", *patroni_kinds})
    # A Patroni cluster: its ConfigMap, ServiceAccount, Role, RoleBinding and PDB, pruned when back at 1.
    assert_declares_what_it_renders(postgres.COMPONENT, example_stack(instances=3), {"Pod", "Secret", "Job"})


def test_backup_runs_are_the_backup_cronjobs_jobs_with_their_pods_results() -> None:
    stack = example_stack()
    owned = _job("quant-postgres-backup-1", NOW)
    owned["metadata"]["ownerReferences"] = [{"kind": "CronJob", "name": "quant-postgres-backup"}]
    restore = _job("quant-postgres-restore", NOW)
    restore["metadata"]["ownerReferences"] = [{"kind": "TradingStack", "name": "quant"}]
    good = _backup(NOW - timedelta(minutes=5))
    children = {
        ("Job", "quant-postgres-backup-1"): owned,
        ("Job", "quant-postgres-restore"): restore,
        ("Pod", "b-old"): _pod("quant-postgres-backup-1", '{"error": "first try"}', "2026-06-10T11:00:00Z", "b-old"),
        ("Pod", "b-new"): _pod("quant-postgres-backup-1", _message(good), "2026-06-10T11:50:00Z", "b-new"),
    }
    runs = postgres.backup_runs(stack, observe(children))
    assert [(run.name, run.succeeded, run.result) for run in runs] == [("quant-postgres-backup-1", True, good)]
    assert backup_health(runs, "0 * * * *", "UTC", NOW).reason == "BackupSucceeded"


def test_postgres_ready_and_backup_healthy_are_assessed_together() -> None:
    stack = example_stack()
    sts = "quant-postgres"
    none_yet = postgres.assess(stack, live_workloads(workload("StatefulSet", sts, 1)), None)
    assert none_yet == Assessment(
        {
            "PostgresReady": ConditionUpdate("True", "Ready", "1/1 pods ready"),
            "BackupHealthy": ConditionUpdate("Unknown", "NoBackupYet", "no backup Job has finished"),
        }
    )
    failed = ConditionUpdate("False", "BackupFailed", "backup Job b-1 failed: refused")
    degraded = postgres.assess(stack, live_workloads(workload("StatefulSet", sts, 0)), failed)
    assert degraded.conditions["BackupHealthy"] == failed
    assert degraded.conditions["PostgresReady"] == ConditionUpdate("False", "NotReady", "0/1 pods ready")
    assert (degraded.waiting, degraded.degraded) == (("postgres",), (("BackupUnhealthy", failed.message),))
    missing = postgres.assess(stack, live_workloads(), None).conditions["PostgresReady"]
    assert missing == ConditionUpdate("False", "NotCreated", "Postgres does not exist yet")


def test_disabled_backups_or_postgres_are_healthy_whatever_was_assessed() -> None:
    failed = ConditionUpdate("False", "BackupFailed", "old news")
    no_backups = postgres.assess(example_stack(backup={"enabled": False}), live_workloads(), failed)
    assert no_backups.conditions["BackupHealthy"] == ConditionUpdate("True", "Disabled", "backups are disabled")
    assert no_backups.degraded == ()
    off = postgres.assess(example_stack(enabled=False), live_workloads(), None)
    assert off == Assessment(
        {
            "PostgresReady": ConditionUpdate("True", "Disabled", "postgres.enabled is false"),
            "BackupHealthy": ConditionUpdate("True", "Disabled", "backups are disabled"),
        }
    )


def test_with_pitr_enabled_backup_healthy_is_assessed_when_pg_dump_backups_are_off() -> None:
    lagging = ConditionUpdate("False", "ArchiveLagging", "3 WAL segments wait")
    pitr_only = postgres.assess(
        example_stack(backup={"enabled": False}, pitr={"enabled": True}), live_workloads(), lagging
    )
    assert pitr_only.conditions["BackupHealthy"] == lagging
    assert pitr_only.degraded == (("BackupUnhealthy", lagging.message),)
