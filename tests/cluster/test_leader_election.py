"""Two operators with --leader-election against the real API server: only the Lease holder reconciles; after a
kill -9 of the leader the standby takes over within the lease duration; their writes never overlap in time.

The audit log tells the two apart by User-Agent: each replica sends `tradingstack-operator/<identity>` from
both of its clients (lightkube and kopf).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.cluster import REPO, Cluster, wait_for
from tests.fixtures.operator import OperatorProcess, operator_env
from tradingstack.kube.client import FIELD_MANAGER
from tradingstack.reconcile.leadership import LEASE_NAME

pytestmark = pytest.mark.cluster
MINIMAL = REPO / "examples" / "minimal.yaml"
IDENTITIES = ("a", "b")
LEASE_SECONDS = 15
TAKEOVER_TIMEOUT = LEASE_SECONDS + 30  # the lease expiring, one retry period, one reconcile pass, and slack


@pytest.fixture
def operators(
    cluster: Cluster, operator_kubeconfig: Path, namespace: str, tmp_path: Path
) -> Iterator[dict[str, OperatorProcess]]:
    env = operator_env(cluster, operator_kubeconfig)
    processes = {
        identity: OperatorProcess(
            namespace=namespace,
            log_path=tmp_path / f"operator-{identity}.log",
            env=env,
            extra_args=[
                *("--leader-election", "--leader-election-namespace", namespace),
                *("--leader-election-id", identity),
            ],
        )
        for identity in IDENTITIES
    }
    for process in processes.values():
        process.start()  # /healthz answers while standing by too
    try:
        yield processes
    finally:
        # A running operator releases the stacks' finalizers; a lone survivor becomes leader within the lease.
        if all(p.process is None for p in processes.values()):
            processes["a"].start()
        cluster.kubectl("delete", "tradingstacks", "--all", "-n", namespace, "--wait=true", "--timeout=90s")
        for process in processes.values():
            process.stop()


def holder(cluster: Cluster, namespace: str) -> str | None:
    result = cluster.kubectl("get", "lease", LEASE_NAME, "-n", namespace, "-o", "json", check=False)
    if result.returncode != 0:
        return None
    return json.loads(result.stdout)["spec"].get("holderIdentity") or None


def deployment_replicas(cluster: Cluster, namespace: str) -> int | None:
    result = cluster.kubectl("get", "deployment", "minimal-api", "-n", namespace, "-o", "json", check=False)
    return int(json.loads(result.stdout)["spec"]["replicas"]) if result.returncode == 0 else None


def timed_writes(audit_log: Path, namespace: str, since_line: int) -> list[dict[str, Any]]:
    """Each write of an operator in `namespace` after `since_line`, with its identity (from the User-Agent) and
    when the API server received and completed it; the Lease's own writes are left out."""
    prefix = f"{FIELD_MANAGER}/"
    writes = []
    for line in audit_log.read_text().splitlines()[since_line:]:
        event = json.loads(line)
        ref = event.get("objectRef", {})
        agent = event.get("userAgent", "")
        if (
            event.get("stage") == "ResponseComplete"
            and event["verb"] in ("create", "update", "patch", "delete", "deletecollection")
            and ref.get("namespace") == namespace
            and ref.get("resource") != "leases"
            and agent.startswith(prefix)
        ):
            writes.append(
                {
                    "identity": agent[len(prefix) :],
                    "resource": ref.get("resource"),
                    "name": ref.get("name"),
                    "received": datetime.fromisoformat(event["requestReceivedTimestamp"]),
                    "completed": datetime.fromisoformat(event["stageTimestamp"]),
                }
            )
    return writes


def test_only_the_lease_holder_reconciles_and_the_standby_takes_over(
    cluster: Cluster, namespace: str, operators: dict[str, OperatorProcess]
) -> None:
    mark = len(cluster.audit_log.read_text().splitlines())
    leader = wait_for(lambda: holder(cluster, namespace), timeout=30, what="a leader in the Lease")
    (standby,) = [identity for identity in IDENTITIES if identity != leader]

    document = yaml.safe_load(MINIMAL.read_text())
    document["metadata"]["namespace"] = namespace
    cluster.apply(document, namespace=namespace)
    wait_for(lambda: deployment_replicas(cluster, namespace), timeout=60, what="the leader's first pass")
    assert operators[standby].metric("tradingstack_reconcile_duration_seconds_count") == 0
    before_kill = timed_writes(cluster.audit_log, namespace, mark)
    assert before_kill and {w["identity"] for w in before_kill} == {leader}, before_kill

    operators[leader].kill()
    cluster.kubectl(
        "patch", "tradingstack", "minimal", "-n", namespace, "--type=json",
        "-p", '[{"op": "replace", "path": "/spec/services/0/replicas", "value": 3}]',
    )  # fmt: skip
    wait_for(
        lambda: deployment_replicas(cluster, namespace) == 3 or None,
        timeout=TAKEOVER_TIMEOUT,
        what=f"{standby} taking over and applying the spec change",
    )
    assert holder(cluster, namespace) == standby
    # The pass that applied the change ends (and is counted) a moment after its writes.
    wait_for(lambda: operators[standby].metric("tradingstack_reconcile_duration_seconds_count") >= 1,
             timeout=30, what=f"{standby}'s first completed pass")  # fmt: skip
    assert '"lost leadership"' not in operators[standby].log()

    writes = timed_writes(cluster.audit_log, namespace, mark)
    by_leader = [w for w in writes if w["identity"] == leader]
    by_standby = [w for w in writes if w["identity"] == standby]
    assert by_leader and by_standby, writes
    assert {w["identity"] for w in writes} == {leader, standby}
    last_of_leader = max(w["completed"] for w in by_leader)
    first_of_standby = min(w["received"] for w in by_standby)
    assert last_of_leader < first_of_standby, "the two operators' writes overlapped in time"
