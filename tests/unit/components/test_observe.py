"""The shared parsers of the live children (components.observe), from recorded objects."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tradingstack.api import BackupInfo
from tradingstack.components.observe import (
    JobRun,
    job_run,
    newest_termination_message,
    observe,
    pod_state,
    workload_state,
)
from tradingstack.contract import Annotation, Label
from tradingstack.contract.termination import ToolFailure

DEPLOYMENT: dict[str, Any] = {
    "kind": "Deployment",
    "metadata": {"name": "qt-api", "generation": 4, "labels": {Label.COMPONENT: "api"}},
    "spec": {"replicas": 3, "template": {"metadata": {"annotations": {Annotation.RESTARTED_AT: "run-1"}}}},
    "status": {
        "observedGeneration": 4,
        "replicas": 4,
        "updatedReplicas": 3,
        "readyReplicas": 3,
        "availableReplicas": 2,
        "conditions": [
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "too slow"},
            {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": "quota exceeded"},
        ],
    },
}


def test_a_deployment_is_read_once_into_its_rollout_state() -> None:
    state = workload_state(DEPLOYMENT)
    assert (state.kind, state.name, state.component) == ("Deployment", "qt-api", "api")
    assert (state.generation, state.observed_generation, state.desired) == (4, 4, 3)
    assert (state.replicas, state.updated, state.ready, state.available) == (4, 3, 3, 2)
    assert state.restarted_at == "run-1"
    assert state.rollout_failure == "too slow"
    assert state.replica_failure == "FailedCreate: quota exceeded"
    assert not state.rolled_out  # a surplus (old) pod is still there


def test_a_statefulset_without_status_is_not_rolled_out_and_defaults_to_one_replica() -> None:
    state = workload_state({"kind": "StatefulSet", "metadata": {"name": "qt-redis", "generation": 1}, "spec": {}})
    assert (state.desired, state.ready, state.rolled_out, state.rollout_failure) == (1, 0, False, None)
    settled = {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1}
    assert workload_state({"kind": "StatefulSet", "metadata": {"generation": 1}, "status": settled}).rolled_out


def _pod(name: str, **status: Any) -> dict[str, Any]:
    return {"kind": "Pod", "metadata": {"name": name, "labels": {Label.COMPONENT: "api"}}, "status": status}


def test_a_pod_that_will_not_run_without_a_change_names_its_first_problem() -> None:
    unschedulable = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes"}
    pull = {"state": {"waiting": {"reason": "ImagePullBackOff", "message": "back-off"}}}
    assert pod_state(_pod("a", conditions=[unschedulable], containerStatuses=[pull])).problem == (
        "pod a: Unschedulable: 0/3 nodes"
    )
    assert pod_state(_pod("b", initContainerStatuses=[pull])).problem == "pod b: ImagePullBackOff: back-off"
    creating = {"state": {"waiting": {"reason": "ContainerCreating"}}}
    assert pod_state(_pod("c", containerStatuses=[creating])).problem is None


def test_only_running_pods_not_being_deleted_serve_health() -> None:
    assert pod_state(_pod("a", phase="Running", podIP="10.0.0.1")).serving_ip == "10.0.0.1"
    assert pod_state(_pod("b", phase="Pending", podIP="10.0.0.2")).serving_ip is None
    deleting = _pod("c", phase="Running", podIP="10.0.0.3")
    deleting["metadata"]["deletionTimestamp"] = "2026-12-03T12:00:00Z"
    assert pod_state(deleting).serving_ip is None


def _job_pod(name: str, created: str, *messages: str) -> dict[str, Any]:
    statuses = [{"state": {"terminated": {"exitCode": 1, "message": m}}} for m in messages]
    metadata = {"name": name, "creationTimestamp": created, "labels": {Label.JOB_NAME: "b-1"}}
    return {"kind": "Pod", "metadata": metadata, "status": {"containerStatuses": statuses}}


def test_the_result_is_the_last_message_of_the_newest_pod_that_wrote_one() -> None:
    older = pod_state(_job_pod("b-1-a", "2026-12-03T01:00:00Z", "old"))
    newer = pod_state(_job_pod("b-1-b", "2026-12-03T01:05:00Z", "first", "last"))
    silent = pod_state(_job_pod("b-1-c", "2026-12-03T01:09:00Z"))
    assert newest_termination_message([newer, older, silent]) == "last"
    twin = pod_state(_job_pod("b-1-d", "2026-12-03T01:05:00Z", "twin"))
    assert newest_termination_message([newer, twin]) == "twin"  # as new: the later one given
    assert newest_termination_message([]) is None


def _job(*conditions: dict[str, Any], **status: Any) -> dict[str, Any]:
    owner = {"kind": "CronJob", "name": "qt-postgres-backup"}
    metadata = {"name": "b-1", "ownerReferences": [owner]}
    return {"kind": "Job", "metadata": metadata, "status": {"conditions": list(conditions), **status}}


BACKUP = BackupInfo(time=datetime(2026, 12, 3, 1, 4, tzinfo=UTC), name="t-1", size_bytes=9, checksum="c", verified=True)


def test_a_complete_job_finishes_at_its_completion_time_with_the_tools_result() -> None:
    complete = {"type": "Complete", "status": "True", "lastTransitionTime": "2026-12-03T01:06:00Z"}
    pods = [pod_state(_job_pod("b-1-a", "2026-12-03T01:00:00Z", BACKUP.model_dump_json(by_alias=True)))]
    run = job_run(_job(complete, completionTime="2026-12-03T01:05:00Z"), pods)
    assert run == JobRun("b-1", ("qt-postgres-backup",), True, datetime(2026, 12, 3, 1, 5, tzinfo=UTC), None, BACKUP)


def test_a_failed_job_reports_its_condition_and_the_tools_error() -> None:
    failed = {"type": "Failed", "status": "True", "lastTransitionTime": "2026-12-03T01:06:00Z",
              "reason": "BackoffLimitExceeded"}  # fmt: skip
    run = job_run(_job(failed), [pod_state(_job_pod("b-1-a", "2026-12-03T01:00:00Z", '{"error": "refused"}'))])
    assert (run.succeeded, run.finished_at, run.failure) == (
        False,
        datetime(2026, 12, 3, 1, 6, tzinfo=UTC),
        "BackoffLimitExceeded",
    )
    assert run.result == ToolFailure(error="refused")


def test_a_running_job_has_not_finished() -> None:
    run = job_run(_job({"type": "Complete", "status": "False"}))
    assert (run.succeeded, run.finished_at, run.result) == (None, None, None)


def test_observe_parses_each_child_once_and_gives_each_job_its_own_pods() -> None:
    complete = {"type": "Complete", "status": "True", "lastTransitionTime": "2026-12-03T01:06:00Z"}
    other = _job_pod("b-2-a", "2026-12-03T01:00:00Z", "not b-1's")
    other["metadata"]["labels"][Label.JOB_NAME] = "b-2"
    state = observe(
        {
            ("Deployment", "qt-api"): DEPLOYMENT,
            ("Job", "b-1"): _job(complete),
            ("Pod", "b-1-a"): _job_pod("b-1-a", "2026-12-03T01:00:00Z", '{"error": "mine"}'),
            ("Pod", "b-2-a"): other,
            ("ConfigMap", "qt-gateway"): {"kind": "ConfigMap", "metadata": {"name": "qt-gateway"}},
        }
    )
    assert state.workload("Deployment", "qt-api") == workload_state(DEPLOYMENT)
    assert [pod.name for pod in state.pods] == ["b-1-a", "b-2-a"]
    assert [(job.name, job.result) for job in state.jobs] == [("b-1", ToolFailure(error="mine"))]
    stamped = {**DEPLOYMENT, "metadata": {**DEPLOYMENT["metadata"], "generation": 5}}
    assert state.with_objects({("Deployment", "qt-api"): stamped}).workloads[("Deployment", "qt-api")].generation == 5
