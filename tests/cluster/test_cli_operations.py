"""`tradingstack restart` and `tradingstack backup list|restore` against the real API server.

The backup commands run the backup tool as a Job and read its result from the pod's termination message. kwok
runs no container, so with the nodes cordoned the Job's pod stays Pending and the test writes the pod's final
status in the kubelet's place: the message the real tool writes (proven by the component tests). The Job
controller, the command's wait and its reading of the message are all real.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.test_backups import minimal
from tests.cluster.test_restarts import restarts_status
from tests.fixtures.cluster import Cluster, wait_for
from tests.fixtures.operator import OperatorProcess, wait_for_condition
from tests.golden import assert_golden

pytestmark = pytest.mark.cluster


def tradingstack(cluster: Cluster, *args: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "tradingstack.cli", *args]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cluster.env)


def finish_tool_pod(cluster: Cluster, namespace: str, component: str, exit_code: int, result: dict[str, Any]) -> str:
    """Waits for the Job's pod, then reports it terminated with `result` as its termination message."""
    selector = f"app.kubernetes.io/name={component}"
    pod = wait_for(
        lambda: next(iter(cluster.kubectl_json("get", "pods", "-n", namespace, "-l", selector)["items"]), None),
        timeout=60,
        what=f"{component} pod",
    )
    container = pod["spec"]["containers"][0]["name"]
    terminated = {
        "exitCode": exit_code,
        "reason": "Completed" if exit_code == 0 else "Error",
        "message": json.dumps(result),
        "startedAt": pod["metadata"]["creationTimestamp"],
        "finishedAt": pod["metadata"]["creationTimestamp"],
    }
    status = {
        "phase": "Succeeded" if exit_code == 0 else "Failed",
        "containerStatuses": [
            {"name": container, "image": pod["spec"]["containers"][0]["image"], "imageID": "", "ready": False,
             "restartCount": 0, "state": {"terminated": terminated}}
        ],
    }  # fmt: skip
    name = pod["metadata"]["name"]
    cluster.kubectl("patch", "pod", name, "-n", namespace, "--subresource=status", "--type=merge",
                    "-p", json.dumps({"status": status}))  # fmt: skip
    return str(pod["spec"]["containers"][0]["args"])


def test_backup_list_prints_what_the_tool_found(
    cluster: Cluster, namespace: str, operator: OperatorProcess, cordon_nodes: Callable[[], None]
) -> None:
    cluster.apply(minimal(namespace), namespace=namespace)
    wait_for_condition(cluster, namespace, "minimal", "PostgresReady", "True", 120)
    cordon_nodes()
    command = tradingstack(cluster, "backup", "list", "minimal", "-n", namespace, "--timeout", "120")
    listed = {
        "backups": [{"name": "trading-20261126T020000.000Z", "time": "2026-11-26T02:00:00Z", "sizeBytes": 2048,
                     "verified": True}],
        "total": 1,
    }  # fmt: skip
    args = finish_tool_pod(cluster, namespace, "postgres-backup-list", 0, listed)
    out, err = command.communicate(timeout=120)
    assert command.returncode == 0, err
    assert "'list'" in args
    assert "trading-20261126T020000.000Z" in out and "1 of 1 backups shown" in out


def test_backup_restore_reports_a_refusal_with_exit_code_3(
    cluster: Cluster, namespace: str, operator: OperatorProcess, cordon_nodes: Callable[[], None]
) -> None:
    cluster.apply(minimal(namespace), namespace=namespace)
    wait_for_condition(cluster, namespace, "minimal", "PostgresReady", "True", 120)
    cordon_nodes()
    command = tradingstack(cluster, "backup", "restore", "minimal", "-n", namespace, "--from", "latest",
                           "--timeout", "120")  # fmt: skip
    refusal = {"error": "database trading is not empty; pass --force to replace it", "refused": True}
    args = finish_tool_pod(cluster, namespace, "postgres-restore", 3, refusal)
    _, err = command.communicate(timeout=180)
    assert "--from=latest" in args and "--force" not in args
    assert command.returncode == 3
    assert "not empty" in err


def test_restart_command_starts_a_run(cluster: Cluster, namespace: str, operator: OperatorProcess) -> None:
    cluster.apply(minimal(namespace), namespace=namespace)
    wait_for_condition(cluster, namespace, "minimal", "Ready", "True", 120)
    command = tradingstack(cluster, "restart", "minimal", "-n", namespace)
    out, err = command.communicate(timeout=60)
    assert command.returncode == 0, err
    assert "restart run requested" in out
    wait_for(
        lambda: (s := restarts_status(cluster, namespace, "minimal")).get("lastResult") == "Succeeded" and s,
        timeout=120,
        what="the requested run",
    )


def test_commands_on_a_missing_stack_fail_with_one_line(cluster: Cluster, namespace: str, crd: None) -> None:
    command = tradingstack(cluster, "restart", "ghost", "-n", namespace)
    _, err = command.communicate(timeout=60)
    assert command.returncode == 1
    assert err.strip().splitlines() == [f"error: TradingStack {namespace}/ghost not found"]


def normalised(text: str, namespace: str) -> str:
    text = text.replace(namespace, "NAMESPACE")
    text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ \((in )?\d+[smh]( ago)?\)", "TIME", text)
    return re.sub(r"minimal-redis-\d", "minimal-redis-N", text)


def test_status_shows_the_stack_at_a_glance(cluster: Cluster, namespace: str, operator: OperatorProcess) -> None:
    # kwok runs no sentinels and no backup, so no master is agreed and no backup is listed.
    document = minimal(namespace)
    del document["spec"]["postgres"]  # the daily default schedule: no backup Job during the test
    cluster.apply(document)
    wait_for_condition(cluster, namespace, "minimal", "Ready", "True", 180)
    wait_for(lambda: restarts_status(cluster, namespace, "minimal").get("nextRun"), timeout=60, what="next run")
    text = subprocess.run(
        [str(Path(sys.executable).parent / "kubectl-tradingstack"), "status", "minimal", "-n", namespace],
        capture_output=True, text=True, env=cluster.env, check=True, timeout=60,
    ).stdout  # fmt: skip
    assert_golden("status-minimal.txt", normalised(text, namespace))
    as_json = subprocess.run(
        [sys.executable, "-m", "tradingstack.cli", "status", "minimal", "-n", namespace, "-o", "json"],
        capture_output=True, text=True, env=cluster.env, check=True, timeout=60,
    ).stdout  # fmt: skip
    document = json.loads(as_json)
    assert document["status"]["phase"] == "Ready" and document["warnings"] == []
    # Through kubectl's plugin lookup too (the console script is on PATH in the venv).
    env = {**cluster.env, "PATH": f"{Path(sys.executable).parent}:{cluster.env['PATH']}"}
    via_kubectl = subprocess.run(
        [str(cluster.bin_dir / "kubectl"), "tradingstack", "status", "minimal", "-n", namespace],
        capture_output=True, text=True, env=env, check=True, timeout=60,
    ).stdout  # fmt: skip
    assert normalised(via_kubectl, namespace) == normalised(text, namespace)
