"""e2e of a Patroni leader's node loss (issue 20) on two real nodes: `real-1` is started for this module
(`hack/cluster.sh node start`, its own kubelet, containerd and pod subnet), a stack of two synchronous members is
spread over both nodes, and the leader's node is lost: `hack/cluster.sh node stop` kills its kubelet, containerd
and every container at once, as a crashed machine (its volumes stay on disk, as a node's disks do).

What must happen, while a writer on this host commits a numbered row every ~20 ms through the read-write
Service's ClusterIP and a checker polls both servers every 100 ms:

- the surviving member is promoted once the lost leader's lock lapses (ttl 30 s, `render.patroni.TTL_SECONDS`);
- the read-write Service's ready endpoints become the new leader alone: the lost pod keeps the leader's role label
  (its Patroni died with the node) and stays ready until the node controller marks its node NotReady
  (node-monitor-grace-period 50 s, `hack/cluster.sh`), so the operator removes that label once the survivor holds
  the lock and the lost member's Patroni does not answer (`reconcile.patroni_fence`, a Warning Event);
- the node comes back, its kubelet restarts the old leader's pod, which rejoins as a replica (pg_rewind);
- every acknowledged commit is on both servers (`synchronous: true`), no two servers ever accepted writes at once,
  and the operator records the failover (Warning PostgresFailover, status.postgres.lastFailover).

The operator is installed before `real-1` starts, so it runs on the other node; if the leader shares its node, a
switchover moves the leader first (a lost operator would only delay the status, not the failover).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.helpers import ChartInstaller, real_nodes
from tests.e2e.patroni import (
    WRITE_BEFORE_SECONDS,
    Ha,
    PrimaryChecker,
    Settled,
    Writer,
    apply_stack,
    assert_commits_kept,
    cli,
    diagnose,
    event_uids,
    ready_endpoints,
    wait_event,
    wait_failover_recorded,
    wait_settled,
)
from tests.e2e.test_real_containers import Stack
from tests.fixtures.cluster import Cluster, cluster_sh, wait_for
from tradingstack.contract import OPERATOR_APP_NAME, Label
from tradingstack.reconcile.patroni_fence import STALE_LEADER_REASON

pytestmark = [pytest.mark.cluster, pytest.mark.real_containers, pytest.mark.timeout(900)]
NAME = "loss"
ADDED_NODE = "real-1"
READY_TIMEOUT = 420
FAILOVER_TIMEOUT = 180
"""From the node's loss until the read-write Service has the new leader alone: ttl (30 s) plus a loop, and the
node controller's grace period (50 s) plus its monitor period (5 s), with room for a loaded machine."""


def stack_document(namespace: str) -> dict[str, Any]:
    """Two synchronous members and nothing else (the writer runs on this host, so no service pod can be lost)."""
    return {
        "apiVersion": "trading.quantumtrader.dev/v1alpha1",
        "kind": "TradingStack",
        "metadata": {"name": NAME, "namespace": namespace},
        "spec": {
            "deletionPolicy": "Delete",
            "gateway": {"enabled": False},
            "redis": {"enabled": False},
            "postgres": {"instances": 2, "synchronous": True, "backup": {"enabled": False}},
        },
    }


@pytest.fixture(scope="module")
def loss(cluster: Cluster, real_node: list[str], images: None, crd: None) -> Iterator[Ha]:
    installer = ChartInstaller(cluster)
    added = ADDED_NODE not in real_nodes(cluster)
    try:
        namespace = installer.namespace("e2e-node-loss")
        installer.install(namespace, "rbac.scope=namespace", "replicaCount=1")
        cluster_sh("node", "start", ADDED_NODE)
        yield apply_stack(Stack(cluster, namespace, real_nodes(cluster)), stack_document(namespace), READY_TIMEOUT)
    finally:
        # The node runs while the namespace goes: its kubelet stops the pods and the volume provisioner's helper
        # pod removes their volumes there.
        cluster_sh("node", "start", ADDED_NODE, check=False)
        installer.cleanup()
        if added:
            cluster_sh("node", "stop", ADDED_NODE, check=False)
            cluster.kubectl("delete", "node", ADDED_NODE, "--ignore-not-found", check=False)


def node_of(ha: Ha, pod: str) -> str:
    return str(ha.cluster.kubectl_json("get", "pod", pod, "-n", ha.namespace)["spec"]["nodeName"])


def operator_node(ha: Ha) -> str:
    pods = ha.stack.pods(f"{Label.NAME}={OPERATOR_APP_NAME}")
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    return str(pods[0]["spec"]["nodeName"])


def leader_away_from_the_operator(ha: Ha) -> Settled:
    """The settled cluster, its leader on another node than the operator's (after a switchover if needed)."""
    settled = wait_settled(ha, "two members settled")
    nodes = {member: node_of(ha, member) for member in ha.members}
    assert len(set(nodes.values())) == 2, f"the members share a node (anti-affinity is preferred only): {nodes}"
    keep = operator_node(ha)
    if nodes[settled.leader] != keep:
        return settled
    target = next(member for member, node in nodes.items() if node != keep)
    cli(ha, "postgres", "switchover", NAME, "--to", target)
    settled = wait_settled(ha, f"the leader switched over to {target}", leader_not=settled.leader)
    assert settled.leader == target, settled
    return settled


def node_ready(ha: Ha, node: str) -> str:
    found = ha.cluster.kubectl_json("get", "node", node)
    return str({c["type"]: c["status"] for c in found["status"]["conditions"]}.get("Ready"))


def test_losing_the_leaders_node_promotes_the_replica_and_the_old_leader_rejoins(loss: Ha) -> None:
    before = leader_away_from_the_operator(loss)
    old, survivor = before.leader, before.replicas[0]
    lost_node = node_of(loss, old)
    known = event_uids(loss)
    figures: dict[str, float] = {}
    with PrimaryChecker(loss) as checker, Writer(loss, dsn=loss.read_write_dsn()) as writer:
        time.sleep(WRITE_BEFORE_SECONDS)
        lost_wall, lost = time.time(), time.monotonic()
        cluster_sh("node", "stop", lost_node)

        def promoted() -> float | None:
            runs = [run[0] for run in checker.runs[survivor] if run[0] > lost]
            return runs[0] - lost if runs else None

        def service_on_survivor() -> float | None:
            return time.monotonic() - lost if ready_endpoints(loss, loss.read_write_service) == [survivor] else None

        def node_not_ready() -> float | None:
            return time.monotonic() - lost if node_ready(loss, lost_node) != "True" else None

        try:
            figures["promoted"] = wait_for(
                promoted, timeout=FAILOVER_TIMEOUT, interval=0.5, what=f"{survivor} promoted"
            )
            figures["Service on the new leader"] = wait_for(
                service_on_survivor,
                timeout=FAILOVER_TIMEOUT,
                interval=0.5,
                what=f"{loss.read_write_service} on {survivor}",
            )
            wait_event(loss, STALE_LEADER_REASON, "Warning", [old, survivor], known)
            figures["node NotReady"] = wait_for(
                node_not_ready, timeout=FAILOVER_TIMEOUT, interval=1, what=f"{lost_node} NotReady"
            )
        except AssertionError as err:
            raise AssertionError(f"{err}\n{diagnose(loss)}") from err
        cluster_sh("node", "start", lost_node)
        after = wait_settled(loss, f"{old} back as a replica after {lost_node} returned", leader_not=old)
        time.sleep(WRITE_BEFORE_SECONDS)
        written = writer.stop()
    checker.assert_one_primary()
    assert (after.leader, after.replicas) == (survivor, [old]), after
    assert_commits_kept(loss, after, written, lost_wall)
    figures["longest write pause"] = written.longest_pause()[0]
    print(f"node loss of {lost_node} (leader {old}): " + ", ".join(f"{k} {v:.1f} s" for k, v in figures.items())
          + f"; {written.describe()}")  # fmt: skip
    wait_failover_recorded(loss, old, survivor, planned=False)
    wait_event(loss, "PostgresFailover", "Warning", [survivor, old], known)
