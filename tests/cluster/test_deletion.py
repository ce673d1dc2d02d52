"""Deleting a stack while no operator runs: the finalizer holds the stack until an operator starts, which then
finishes the deletion by the policy: `Retain` keeps the volumes and credentials for a new stack of the same name,
`Delete` leaves nothing of the stack."""

from __future__ import annotations

import json
import time

import pytest

from tests.cluster.test_ownership import TIMEOUT, service, stack
from tests.fixtures.cluster import Cluster, wait_for
from tests.fixtures.operator import OperatorProcess, wait_for_condition
from tradingstack.contract import Label

pytestmark = pytest.mark.cluster
KINDS = "deployments,statefulsets,services,configmaps,secrets,persistentvolumeclaims,poddisruptionbudgets,cronjobs"
"""Every kind a stack creates or generates."""


def leftovers(cluster: Cluster, namespace: str) -> dict[str, dict[str, str]]:
    """What carries the stack's label and is not being deleted: `Kind/name` -> uid and (Secrets) data."""
    items = cluster.kubectl_json("get", KINDS, "-n", namespace, "-l", f"{Label.STACK}=s")["items"]
    return {
        f"{o['kind']}/{o['metadata']['name']}": {"uid": o["metadata"]["uid"], "data": json.dumps(o.get("data"))}
        for o in items
        if not o["metadata"].get("deletionTimestamp")
    }


def exists(cluster: Cluster, namespace: str) -> bool:
    result = cluster.kubectl("get", "tradingstack", "s", "-n", namespace, "-o", "name", check=False)
    return result.returncode == 0


@pytest.mark.parametrize("policy", ["Retain", "Delete"])
def test_a_stack_deleted_while_the_operator_is_stopped(
    cluster: Cluster, namespace: str, operator: OperatorProcess, policy: str
) -> None:
    document = stack("s", namespace, [service("api", uses=["redis", "postgres"])], deletionPolicy=policy)
    cluster.apply(document)
    wait_for_condition(cluster, namespace, "s", "Ready", "True", TIMEOUT)
    before = leftovers(cluster, namespace)
    kept = {key: value for key, value in before.items() if key.split("/")[0] in ("PersistentVolumeClaim", "Secret")}
    assert {"Secret/s-redis", "Secret/s-postgres"} <= set(kept)
    assert any(key.startswith("PersistentVolumeClaim/") for key in kept), sorted(before)

    operator.stop()
    cluster.kubectl("delete", "tradingstack", "s", "-n", namespace, "--wait=false")
    time.sleep(5)  # what would happen without the finalizer (garbage collection) has had time to happen
    held = cluster.kubectl_json("get", "tradingstack", "s", "-n", namespace)
    assert held["metadata"].get("deletionTimestamp"), "the finalizer holds the stack while no operator runs"

    operator.start()
    wait_for(lambda: not exists(cluster, namespace), timeout=90, what="the stack's deletion completed")
    wait_for(
        lambda: not cluster.kubectl_json("get", "deployments,statefulsets", "-n", namespace)["items"],
        timeout=90,
        what="owned workloads garbage-collected",
    )
    if policy == "Delete":
        wait_for(lambda: not leftovers(cluster, namespace), timeout=90, what="nothing of the stack left")
        return

    assert leftovers(cluster, namespace) == kept  # garbage collection is done; the same objects, the same data
    cluster.apply(document)
    wait_for_condition(cluster, namespace, "s", "Ready", "True", TIMEOUT)
    again = leftovers(cluster, namespace)
    assert {key: again[key] for key in kept} == kept, "a new stack of the same name reuses the volumes and credentials"
