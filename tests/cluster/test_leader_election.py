"""Two operators with --leader-election against the real API server: only the Lease holder reconciles; after a
kill -9 of the leader the standby takes over within the lease duration; their writes never overlap in time.

The audit log tells the two apart by User-Agent: each replica sends `tradingstack-operator/<identity>` from
both of its clients (lightkube and kopf).
"""

from __future__ import annotations

import pytest
import yaml

from tests.fixtures.cluster import Cluster, wait_for
from tests.fixtures.leaders import (
    IDENTITIES,
    MINIMAL,
    PASSES,
    TAKEOVER_TIMEOUT,
    deployment_replicas,
    holder,
    timed_writes,
)
from tests.fixtures.operator import OperatorProcess

pytestmark = pytest.mark.cluster


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
    assert operators[standby].metric(PASSES) == 0
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
    wait_for(lambda: operators[standby].metric(PASSES) >= 1,
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
