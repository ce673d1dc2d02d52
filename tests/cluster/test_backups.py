"""The backup CronJob on the real control plane: scheduled Jobs run (kwok completes their pods) and the
operator turns their outcome into status.postgres and the BackupHealthy condition."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from tests.fixtures.cluster import REPO, Cluster, wait_for
from tests.fixtures.operator import OperatorProcess, wait_for_condition

pytestmark = pytest.mark.cluster
STACK = "minimal"
CRONJOB = f"{STACK}-postgres-backup"


def minimal(namespace: str) -> dict[str, Any]:
    document = dict(yaml.safe_load((REPO / "examples" / "minimal.yaml").read_text()))
    document["metadata"]["namespace"] = namespace
    document["spec"]["postgres"] = {"backup": {"schedule": "* * * * *", "timeZone": "Europe/Oslo"}}
    return document


def backup_jobs(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    jobs = cluster.kubectl_json("get", "jobs", "-n", namespace)["items"]
    return [j for j in jobs if any(r["name"] == CRONJOB for r in j["metadata"].get("ownerReferences", []))]


def finished(job: dict[str, Any], kind: str) -> bool:
    return any(c["type"] == kind and c["status"] == "True" for c in job.get("status", {}).get("conditions", []))


def postgres_status(cluster: Cluster, namespace: str) -> dict[str, Any]:
    return dict(cluster.kubectl_json("get", "ts", STACK, "-n", namespace).get("status", {}).get("postgres", {}))


def test_scheduled_backup_jobs_become_backup_health(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(minimal(namespace), namespace=namespace)
    cronjob = wait_for(
        lambda: cluster.kubectl_json("get", "cronjob", CRONJOB, "-n", namespace), timeout=60, what="CronJob"
    )
    assert cronjob["spec"]["timeZone"] == "Europe/Oslo" and cronjob["spec"]["concurrencyPolicy"] == "Forbid"

    # The controller-manager starts a Job at the next minute; kwok completes its pod (exit 0, no message).
    job = wait_for(
        lambda: next((j for j in backup_jobs(cluster, namespace) if finished(j, "Complete")), None),
        timeout=150,
        what="a completed backup Job",
    )
    name = job["metadata"]["name"]
    wait_for(lambda: postgres_status(cluster, namespace).get("lastBackupJob"), timeout=60, what="lastBackupJob")
    stack = wait_for_condition(cluster, namespace, STACK, "BackupHealthy", "Unknown", 30)
    condition = next(c for c in stack["status"]["conditions"] if c["type"] == "BackupHealthy")
    assert condition["reason"] == "NoBackupReported"  # a Job that ran is not yet a backup anyone has seen

    # kwok runs no container, so it cannot write the termination message the backup tool writes (that the tool
    # writes it is proven by the component tests); stand in for the kubelet and write it on the Job's pod.
    pods = cluster.kubectl_json("get", "pods", "-n", namespace, "-l", f"batch.kubernetes.io/job-name={name}")["items"]
    pod = pods[0]
    now = datetime.now(UTC).replace(microsecond=0)
    info = {
        "time": now.isoformat().replace("+00:00", "Z"),
        "name": f"trading-{now:%Y%m%dT%H%M%S}.000Z",
        "sizeBytes": 4096,
        "checksum": "ab" * 32,
        "verified": True,
    }
    statuses = pod["status"]["containerStatuses"]
    statuses[0]["state"]["terminated"]["message"] = json.dumps(info)
    cluster.kubectl(
        "patch", "pod", pod["metadata"]["name"], "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"containerStatuses": statuses}}),
    )  # fmt: skip
    stack = wait_for_condition(cluster, namespace, STACK, "BackupHealthy", "True", 60)
    last = stack["status"]["postgres"]["lastBackup"]
    assert last["name"] == info["name"] and last["sizeBytes"] == 4096 and last["verified"] is True
    table = cluster.kubectl("get", "ts", STACK, "-n", namespace).stdout
    assert "LAST BACKUP" in table


def test_a_failed_backup_job_makes_backups_unhealthy(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    document = minimal(namespace)
    document["spec"]["postgres"]["backup"]["schedule"] = "0 2 * * *"  # no scheduled run during the test
    cluster.apply(document, namespace=namespace)
    wait_for(lambda: cluster.kubectl_json("get", "cronjob", CRONJOB, "-n", namespace), timeout=60, what="CronJob")

    # A run that cannot be scheduled before its deadline fails the way a stuck backup does in production.
    job = cluster.kubectl_json("create", "job", "backup-manual", f"--from=cronjob/{CRONJOB}", "-n", namespace,
                               "--dry-run=client")  # fmt: skip
    job["spec"]["activeDeadlineSeconds"] = 5
    job["spec"]["template"]["spec"]["nodeSelector"] = {"tradingstack.test/no-such-node": "true"}
    cluster.apply(job, namespace=namespace)

    stack = wait_for_condition(cluster, namespace, STACK, "BackupHealthy", "False", 120)
    condition = next(c for c in stack["status"]["conditions"] if c["type"] == "BackupHealthy")
    assert condition["reason"] == "BackupFailed" and "backup-manual" in condition["message"]
    assert stack["status"]["postgres"]["lastBackupResult"] == "Failed"
    degraded = next(c for c in stack["status"]["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and stack["status"]["phase"] == "Degraded"
