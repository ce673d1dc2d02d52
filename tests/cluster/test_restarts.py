"""Daily restarts on the real control plane: the controller-manager rolls the Deployments, kwok makes pods ready.

A watcher streams every ReplicaSet change (`kubectl get rs --watch`) for the whole test, so "one service
rolling at a time" is checked on the transitions the cluster really made, not on samples.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.cluster.test_operator import deploy_and_wait_ready, example
from tests.fixtures.cluster import Cluster, wait_for
from tests.fixtures.operator import OperatorProcess
from tradingstack.api import DEFAULT_RESTART_ORDER
from tradingstack.contract import Annotation
from tradingstack.reconcile.restarts import manual_run_id

pytestmark = pytest.mark.cluster
STACK = "quantum-trader"


@dataclass
class ReplicaSetWatcher:
    """Records (time, deployment, replicaset, ready replicas, desired replicas) for every change."""

    process: subprocess.Popen[str]
    events: list[tuple[float, str, str, int, int]] = field(default_factory=list)

    def run(self) -> None:
        decoder, buffer = json.JSONDecoder(), ""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            buffer += line
            try:
                obj, end = decoder.raw_decode(buffer.strip())
            except json.JSONDecodeError:
                continue
            buffer = buffer.strip()[end:]
            owner = obj["metadata"].get("ownerReferences", [{}])[0].get("name", "")
            status = obj.get("status", {})
            self.events.append(
                (time.monotonic(), owner, obj["metadata"]["name"], status.get("replicas", 0), obj["spec"]["replicas"])
            )

    def rolling_intervals(self, since: float) -> dict[str, tuple[float, float]]:
        """Per Deployment: from its first new ReplicaSet after `since` until its last old one reached zero."""
        first_seen: dict[tuple[str, str], float] = {}
        for at, owner, name, _, _ in self.events:
            first_seen.setdefault((owner, name), at)
        new_sets = {owner: name for (owner, name), at in first_seen.items() if at >= since}
        intervals: dict[str, tuple[float, float]] = {}
        for owner, new_name in new_sets.items():
            start = first_seen[(owner, new_name)]
            old_drained = [
                at for at, o, name, replicas, _ in self.events if o == owner and name != new_name and at >= start
            ]
            intervals[owner] = (start, max(old_drained, default=start))
        return intervals


@pytest.fixture
def replicaset_watcher(cluster: Cluster, namespace: str) -> Iterator[ReplicaSetWatcher]:
    argv = [str(cluster.bin_dir / "kubectl"), "--kubeconfig", str(cluster.kubeconfig)]
    argv += ["get", "replicasets", "-n", namespace, "--watch", "-o", "json"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=cluster.env)
    watcher = ReplicaSetWatcher(process)
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    yield watcher
    process.terminate()
    process.wait()


def replicasets_per_deployment(cluster: Cluster, namespace: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for rs in cluster.kubectl_json("get", "replicasets", "-n", namespace)["items"]:
        owner = rs["metadata"]["ownerReferences"][0]["name"]
        counts[owner] = counts.get(owner, 0) + 1
    return counts


def restarts_status(cluster: Cluster, namespace: str, stack: str = STACK) -> dict[str, Any]:
    return dict(cluster.kubectl_json("get", "ts", stack, "-n", namespace).get("status", {}).get("restarts", {}))


def trigger(cluster: Cluster, namespace: str, value: str) -> None:
    cluster.kubectl("annotate", "ts", STACK, "-n", namespace, f"{Annotation.RESTART_NOW}={value}", "--overwrite")


def wait_for_result(cluster: Cluster, namespace: str, run_id: str, result: str, timeout: float = 240) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        status = restarts_status(cluster, namespace)
        return status if status.get("runId") == run_id and status.get("lastResult") == result else None

    return wait_for(ended, timeout=timeout, what=f"restart run {run_id} {result}")


def deployment(service: str) -> str:
    return f"{STACK}-{service}"


def test_triggered_run_restarts_each_service_once_in_order_one_at_a_time(
    cluster: Cluster, namespace: str, operator: OperatorProcess, replicaset_watcher: ReplicaSetWatcher
) -> None:
    deploy_and_wait_ready(cluster, namespace, example(namespace))
    before = replicasets_per_deployment(cluster, namespace)
    started = time.monotonic()
    trigger(cluster, namespace, "run-1")

    status = wait_for_result(cluster, namespace, manual_run_id("run-1"), "Succeeded")
    assert status["done"] == list(DEFAULT_RESTART_ORDER)
    assert status.get("inProgress") is None and status["lastRun"]

    after = replicasets_per_deployment(cluster, namespace)
    services = {deployment(s) for s in DEFAULT_RESTART_ORDER}
    assert {name: after[name] - before[name] for name in services} == dict.fromkeys(services, 1)
    assert after[deployment("gateway")] == before[deployment("gateway")]  # not a service: never restarted

    intervals = replicaset_watcher.rolling_intervals(since=started)
    assert set(intervals) == services
    ordered = sorted(intervals, key=lambda name: intervals[name][0])
    assert ordered == [deployment(s) for s in DEFAULT_RESTART_ORDER]
    for earlier, later in itertools.pairwise(ordered):
        assert intervals[earlier][1] <= intervals[later][0], f"{earlier} and {later} rolled at the same time"

    reasons = [e["reason"] for e in cluster.kubectl_json("get", "events", "-n", namespace)["items"]]
    assert reasons.count("RestartingService") == len(services) and "RestartSucceeded" in reasons


def test_operator_killed_mid_run_finishes_without_restarting_a_service_twice(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    deploy_and_wait_ready(cluster, namespace, example(namespace))
    before = replicasets_per_deployment(cluster, namespace)
    trigger(cluster, namespace, "run-2")
    wait_for(lambda: len(restarts_status(cluster, namespace).get("done", [])) >= 2, timeout=120, what="two done")
    operator.kill()
    operator.start()

    wait_for_result(cluster, namespace, manual_run_id("run-2"), "Succeeded")
    after = replicasets_per_deployment(cluster, namespace)
    assert {s: after[deployment(s)] - before[deployment(s)] for s in DEFAULT_RESTART_ORDER} == dict.fromkeys(
        DEFAULT_RESTART_ORDER, 1
    )


def test_a_service_that_never_becomes_ready_fails_the_run(
    cluster: Cluster, namespace: str, operator: OperatorProcess, cordon_nodes: Callable[[], None]
) -> None:
    document = example(namespace)
    document["spec"]["restarts"]["serviceReadyTimeoutSeconds"] = 30
    deploy_and_wait_ready(cluster, namespace, document)
    before = replicasets_per_deployment(cluster, namespace)
    cordon_nodes()
    trigger(cluster, namespace, "run-3")

    status = wait_for_result(cluster, namespace, manual_run_id("run-3"), "Failed", timeout=120)
    first = DEFAULT_RESTART_ORDER[0]
    assert status["done"] == [] and status.get("inProgress") is None
    after = replicasets_per_deployment(cluster, namespace)
    assert after[deployment(first)] == before[deployment(first)] + 1  # stamped, never became ready
    for service in DEFAULT_RESTART_ORDER[1:]:
        assert after[deployment(service)] == before[deployment(service)], f"{service} was touched"
    warnings = [
        e for e in cluster.kubectl_json("get", "events", "-n", namespace)["items"] if e["reason"] == "RestartFailed"
    ]
    assert warnings and warnings[0]["type"] == "Warning" and first in warnings[0]["message"]
