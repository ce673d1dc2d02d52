"""e2e scenarios that need real containers: Redis failover, a backup archive written, a restore.

Marked `kind`: tests/e2e/conftest.py skips them, saying why, unless the cluster is kind (`make e2e-kind`, which
also needs the images loaded: `make images kind-load`). Under kwok no Redis, Postgres or backup process runs,
so none of this could be observed there. Here the operator is the chart's own Deployment.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.e2e.helpers import ChartInstaller
from tests.e2e.test_chart_install import EXAMPLE, READY_TIMEOUT, STACK, load, stack_status, wait_for_status
from tests.fixtures.cluster import Cluster, wait_for
from tests.fixtures.operator import wait_for_condition

pytestmark = [pytest.mark.cluster, pytest.mark.kind]
MASTER_LABEL = "trading.quantumtrader.dev/redis-role=master"


def deploy(cluster: Cluster, chart: ChartInstaller) -> str:
    """On kind the chart's Deployment really runs the operator (image from `make images kind-load`): a local
    process could not reach the sentinels' pod IPs, which the operator reads to track the master."""
    namespace = chart.namespace("e2e-kind")
    chart.install(namespace, "rbac.scope=namespace")
    cluster.apply(load(EXAMPLE, namespace), namespace=namespace)
    wait_for_condition(cluster, namespace, STACK, "Ready", "True", READY_TIMEOUT)
    return namespace


def psql(cluster: Cluster, namespace: str, sql: str) -> str:
    command = 'psql -U "$POSTGRES_USER" -d "$POSTGRES_DB" -v ON_ERROR_STOP=1 -At -c "$0"'
    return cluster.kubectl(
        "exec", f"{STACK}-postgres-0", "-n", namespace, "-c", "postgres", "--", "sh", "-c", command, sql
    ).stdout.strip()


def run_backup(cluster: Cluster, namespace: str) -> dict[str, Any]:
    job = f"e2e-backup-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "job", f"--from=cronjob/{STACK}-postgres-backup", job, "-n", namespace)
    cluster.kubectl("wait", "--for=condition=Complete", f"job/{job}", "-n", namespace, "--timeout=300s", timeout=330)
    return wait_for_status(
        cluster,
        namespace,
        lambda s: s.get("postgres", {}).get("lastBackupJob") == job and s["postgres"].get("lastBackup"),
        120,
        f"status.postgres.lastBackup from {job}",
    )


def test_killing_the_redis_master_fails_over(cluster: Cluster, chart: ChartInstaller) -> None:
    namespace = deploy(cluster, chart)
    first = wait_for_status(cluster, namespace, lambda s: s.get("redis", {}).get("master"), 120, "redis.master")
    old = first["redis"]["master"]
    labelled = cluster.kubectl_json("get", "pods", "-n", namespace, "-l", MASTER_LABEL)["items"]
    assert [p["metadata"]["name"] for p in labelled] == [old]

    cluster.kubectl("delete", "pod", old, "-n", namespace, "--grace-period=0", "--force")
    status = wait_for_status(
        cluster,
        namespace,
        lambda s: s.get("redis", {}).get("master") not in (None, old) and s["redis"].get("lastFailover"),
        180,
        f"a new Redis master after killing {old}",
    )
    new = status["redis"]["master"]
    wait_for(
        lambda: [p["metadata"]["name"] for p in cluster.kubectl_json("get", "pods", "-n", namespace,
                                                                       "-l", MASTER_LABEL)["items"]] == [new],
        timeout=60,
        what=f"only {new} labelled master (the master Service follows it)",
    )  # fmt: skip
    reply = cluster.kubectl(
        "exec", new, "-n", namespace, "-c", "redis", "--", "sh", "-c", "redis-cli role | head -1"
    ).stdout.strip()
    assert reply == "master"


def test_backup_writes_an_archive_that_restores(cluster: Cluster, chart: ChartInstaller) -> None:
    namespace = deploy(cluster, chart)
    marker = uuid.uuid4().hex
    psql(cluster, namespace, f"CREATE TABLE e2e_marker (v text); INSERT INTO e2e_marker VALUES ('{marker}');")  # noqa: S608 - a hex uuid

    status = run_backup(cluster, namespace)
    backup = status["postgres"]["lastBackup"]
    assert backup["sizeBytes"] > 0 and len(backup["checksum"]) == 64 and backup["verified"] is True, backup
    assert status["postgres"]["lastBackupResult"] == "Succeeded"
    assert {c["type"]: c["status"] for c in status["conditions"]}["BackupHealthy"] == "True"

    # Restore: a new stack of the same name bootstraps an empty database from the retained backup volume.
    cluster.kubectl("delete", "tradingstack", STACK, "-n", namespace, "--wait=true", "--timeout=120s", timeout=150)
    wait_for(
        lambda: not cluster.kubectl_json("get", "statefulsets", "-n", namespace)["items"],
        timeout=120,
        what="the stack's StatefulSets garbage-collected",
    )
    cluster.kubectl("delete", "pvc", f"data-{STACK}-postgres-0", "-n", namespace, "--wait=true", timeout=150)
    document = load(EXAMPLE, namespace)
    document["spec"]["postgres"]["restore"] = {"from": "latest"}
    cluster.apply(document, namespace=namespace)
    wait_for_condition(cluster, namespace, STACK, "Ready", "True", READY_TIMEOUT)
    restored = wait_for(
        lambda: psql(cluster, namespace, "SELECT v FROM e2e_marker") == marker,
        timeout=300,
        what="the marker row restored from the backup",
    )
    assert restored
    assert json.dumps(stack_status(cluster, namespace)).count(marker) == 0, "data never leaks into the status"
