"""Pure reconcile decisions: when an apply is needed, and how status and conditions are computed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tradingstack.api import TradingStack, TradingStackStatus
from tradingstack.components.assess import ConditionUpdate
from tradingstack.components.observe import observe, pod_state, workload_state
from tradingstack.contract import Label
from tradingstack.health.contract import DependencyHealth, DependencyStatus, ServiceHealth
from tradingstack.health.rollup import rollup
from tradingstack.reconcile.diff import contains, needs_apply, with_applied_hash
from tradingstack.reconcile.status import (
    Observations,
    compute_status,
    invalid_spec_status,
    pod_failures,
    serving_pod_ips,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
DESIRED: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "qt-api", "namespace": "ns", "labels": {"a": "b"}},
    "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "api", "image": "x:1"}]}}},
}


def live_copy(desired: dict[str, Any]) -> dict[str, Any]:
    """What the API server returns: our fields plus its defaults and status."""
    live: dict[str, Any] = {
        **desired,
        "metadata": {**desired["metadata"], "uid": "u", "resourceVersion": "7", "generation": 1},
        "status": {"replicas": 2},
    }
    container = {**desired["spec"]["template"]["spec"]["containers"][0], "imagePullPolicy": "IfNotPresent"}
    live["spec"] = {**desired["spec"], "strategy": {"type": "RollingUpdate"}}
    live["spec"]["template"] = {"spec": {"containers": [container], "dnsPolicy": "ClusterFirst"}}
    return live


def test_unchanged_object_with_server_defaults_needs_no_apply() -> None:
    desired = with_applied_hash(DESIRED)
    assert not needs_apply(desired, live_copy(desired))


def test_missing_changed_or_drifted_objects_need_apply() -> None:
    desired = with_applied_hash(DESIRED)
    assert needs_apply(desired, None)
    drifted = live_copy(desired)
    drifted["spec"]["replicas"] = 5
    assert needs_apply(desired, drifted)
    # A label we stopped rendering: the live object still contains everything now rendered, but only an apply
    # (SSA drops fields its manager no longer sends) removes the label; the changed hash triggers it.
    stopped_rendering = {**DESIRED, "metadata": {**DESIRED["metadata"], "labels": {}}}
    assert contains(live_copy(desired), stopped_rendering)
    assert needs_apply(with_applied_hash(stopped_rendering), live_copy(desired))


def test_lists_must_match_item_by_item() -> None:
    assert contains([{"a": 1, "b": 2}], [{"a": 1}])
    assert not contains([{"a": 1}, {"a": 2}], [{"a": 1}])
    assert not contains([{"a": 2}], [{"a": 1}])


def stack(**spec: Any) -> TradingStack:
    base: dict[str, Any] = {
        "services": [{"name": "api", "image": "x:1", "port": 8000, "replicas": 2}],
        "gateway": {"enabled": False},
        "postgres": {"backup": {"enabled": False}},
    }
    return TradingStack.model_validate({"metadata": {"name": "qt", "generation": 3}, "spec": {**base, **spec}})


def workload(kind: str, name: str, ready: int, desired: int = 2, generation: int = 1) -> dict[str, Any]:
    return {
        "kind": kind,
        "metadata": {"name": name, "generation": generation},
        "spec": {"replicas": desired},
        "status": {
            "observedGeneration": generation,
            "replicas": desired,
            "updatedReplicas": desired,
            "readyReplicas": ready,
        },
    }


def all_ready() -> dict[tuple[str, str], dict[str, Any]]:
    return {
        ("Deployment", "qt-api"): workload("Deployment", "qt-api", 2),
        ("StatefulSet", "qt-redis"): workload("StatefulSet", "qt-redis", 3, 3),
        ("StatefulSet", "qt-redis-sentinel"): workload("StatefulSet", "qt-redis-sentinel", 3, 3),
        ("StatefulSet", "qt-postgres"): workload("StatefulSet", "qt-postgres", 1, 1),
    }


def observations(workloads: dict[tuple[str, str], dict[str, Any]], **observed: Any) -> Observations:
    """What the pass hands the status: the live workloads parsed by `components.observe`."""
    return Observations(workloads=observe(workloads).workloads, **observed)


def conditions(status: TradingStackStatus) -> dict[str, str]:
    return {c.type: c.status for c in status.conditions}


def test_ready_when_every_workload_is_rolled_out_and_ready() -> None:
    status = compute_status(stack(), observations(all_ready()), TradingStackStatus(), NOW)
    assert status.phase == "Ready" and status.ready_summary == "1/1"
    assert conditions(status) == {
        "Ready": "True",
        "Progressing": "False",
        "Degraded": "False",
        "RedisReady": "True",
        "PostgresReady": "True",
        "BackupHealthy": "True",
        "Halted": "False",
    }
    assert status.observed_generation == 3
    assert status.services["api"].ready == 2


def test_a_rolling_service_is_progressing_not_ready() -> None:
    workloads = all_ready()
    workloads[("Deployment", "qt-api")] = workload("Deployment", "qt-api", 1)
    status = compute_status(stack(), observations(workloads), TradingStackStatus(), NOW)
    assert status.phase == "Progressing"
    assert conditions(status)["Ready"] == "False" and conditions(status)["Progressing"] == "True"
    ready = next(c for c in status.conditions if c.type == "Ready")
    assert "api" in ready.message


def test_transition_time_moves_only_when_the_status_changes() -> None:
    first = compute_status(stack(), observations(all_ready()), TradingStackStatus(), NOW)
    again = compute_status(stack(), observations(all_ready()), first, NOW + timedelta(minutes=5))
    assert again == first  # a steady stack computes an identical status: nothing to write
    workloads = all_ready()
    workloads[("StatefulSet", "qt-redis")] = workload("StatefulSet", "qt-redis", 1, 3)
    later = NOW + timedelta(minutes=10)
    changed = compute_status(stack(), observations(workloads), again, later)
    by_type = {c.type: c for c in changed.conditions}
    assert by_type["RedisReady"].last_transition_time == later
    assert by_type["PostgresReady"].last_transition_time == NOW


def test_apply_errors_and_failed_backups_degrade_the_stack() -> None:
    observed = observations(
        all_ready(),
        apply_errors=["Deployment/qt-api: 422 Invalid"],
        backup_condition=ConditionUpdate("False", "BackupFailed", "job qt-1 failed"),
    )
    status = compute_status(stack(postgres={"backup": {"enabled": True}}), observed, TradingStackStatus(), NOW)
    degraded = next(c for c in status.conditions if c.type == "Degraded")
    assert status.phase == "Degraded" and degraded.reason == "ApplyFailed"
    assert "422 Invalid" in degraded.message and "job qt-1 failed" in degraded.message
    assert conditions(status)["BackupHealthy"] == "False"


def test_unreachable_health_is_reported_but_does_not_degrade() -> None:
    observed = observations(all_ready(), health=rollup({"api": None}))
    status = compute_status(stack(), observed, TradingStackStatus(), NOW)
    assert status.phase == "Ready" and status.services["api"].health == "UNREACHABLE"
    document = ServiceHealth.create(
        "api", "1", 5.0, NOW, {"redis": DependencyHealth(status=DependencyStatus.DOWN, message="refused")}
    )
    unhealthy = compute_status(stack(), observations(all_ready(), health=rollup({"api": document})), status, NOW)
    degraded = next(c for c in unhealthy.conditions if c.type == "Degraded")
    assert unhealthy.phase == "Degraded" and unhealthy.services["api"].health == "UNHEALTHY"
    assert degraded.reason == "ServicesUnhealthy" and degraded.message == "api UNHEALTHY (redis DOWN)"


def test_invalid_spec_status_names_the_fields() -> None:
    status = invalid_spec_status(TradingStackStatus(), ["spec.restarts.timeZone: unknown"], 4, NOW)
    degraded = next(c for c in status.conditions if c.type == "Degraded")
    assert status.phase == "Failed" and status.observed_generation == 4
    assert degraded.reason == "InvalidSpec" and "spec.restarts.timeZone" in degraded.message


def test_pods_that_will_not_run_are_named_by_component() -> None:
    def pod(name: str, component: str, **status: object) -> dict[str, object]:
        return {"metadata": {"name": name, "labels": {Label.COMPONENT: component}}, "status": status}

    unschedulable = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/4 nodes"}
    pull = {"state": {"waiting": {"reason": "ErrImagePull", "message": "not found"}}}
    starting = {"state": {"waiting": {"reason": "ContainerCreating"}}}
    refused = {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": "quota exceeded"}
    found = pod_failures(
        [pod_state(pod("a-1", "api", conditions=[unschedulable])),
         pod_state(pod("w-1", "web", containerStatuses=[pull])),
         pod_state(pod("o-1", "ok", containerStatuses=[starting]))],
        [workload_state({"metadata": {"labels": {Label.COMPONENT: "db"}}, "status": {"conditions": [refused]}})],
    )  # fmt: skip
    assert found == {
        "api": "pod a-1: Unschedulable: 0/4 nodes",
        "web": "pod w-1: ErrImagePull: not found",
        "db": "FailedCreate: quota exceeded",
    }


def test_health_is_read_from_every_running_pod_ready_or_not() -> None:
    def pod(ip: str, component: str = "api", phase: str = "Running", **meta: object) -> dict[str, object]:
        return {"metadata": {"labels": {Label.COMPONENT: component}, **meta}, "status": {"phase": phase, "podIP": ip,
                "conditions": [{"type": "Ready", "status": "False"}]}}  # fmt: skip

    pods = [pod("10.0.0.2"), pod("10.0.0.1"), pod("10.0.0.3", "web"), pod("10.0.0.4", phase="Pending"),
            pod("10.0.0.5", deletionTimestamp="2026-11-26T12:00:00Z"), pod("")]  # fmt: skip
    assert serving_pod_ips([pod_state(p) for p in pods], "api") == ["10.0.0.1", "10.0.0.2"]
