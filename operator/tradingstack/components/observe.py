"""What the live children say, parsed once: typed, frozen states of the kinds the components own.

Pure. Each rule that reads a field of an observed object lives here once: a workload's rollout and readiness
(Deployment and StatefulSet), why a pod does not run, which pods can serve a health document, whether a Job has
finished and how, and the backup tool's result in its pod's termination message. The reconcile pass, the
restart planner, the status and the CLI's backup operations all read the children through these states.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from tradingstack.contract import Annotation, Label, termination

Child = Mapping[str, Any]
ChildKey = tuple[str, str]
"""(kind, name), as the pass keys its children."""

WORKLOAD_KINDS = ("Deployment", "StatefulSet")
STATEFULSET_REVISION_LABEL = "controller-revision-hash"
"""The label the StatefulSet controller puts on each pod: the ControllerRevision of the template it was made from."""


@dataclass(frozen=True)
class WorkloadState:
    """A Deployment or StatefulSet as its controller reports it."""

    kind: str
    name: str
    component: str | None
    """Label.COMPONENT of the workload."""
    generation: int
    """metadata.generation."""
    observed_generation: int
    """status.observedGeneration (0 when absent)."""
    desired: int
    """spec.replicas (1 when absent)."""
    replicas: int
    """status.replicas: pods of every template revision."""
    updated: int
    """status.updatedReplicas: pods of the current template."""
    ready: int
    """status.readyReplicas."""
    available: int
    """status.availableReplicas."""
    restarted_at: str | None = None
    """Annotation.RESTARTED_AT on the pod template: the restart run that last stamped it."""
    rollout_failure: str | None = None
    """The message of a Progressing condition with reason ProgressDeadlineExceeded."""
    replica_failure: str | None = None
    """`reason: message` of a true ReplicaFailure condition: its pods cannot be created (quota, admission)."""
    revision: str | None = None
    """Annotation.REVISION of the workload: the revision of the pod template it was last applied with (None: not
    applied by an operator that records revisions)."""
    canary: bool = False
    """Label.CANARY is `true`: a service's canary Deployment (`reconcile.rollout`)."""
    update_revision: str | None = None
    """A StatefulSet's status.updateRevision: the ControllerRevision of its current pod template, which its pods
    carry as STATEFULSET_REVISION_LABEL once they run it."""

    @property
    def rolled_out(self) -> bool:
        """The status' rule: the current template observed, every pod updated, no surplus pod, all ready."""
        current = self.observed_generation >= self.generation
        return current and self.updated >= self.desired and self.replicas == self.desired and self.ready >= self.desired


def workload_state(obj: Child) -> WorkloadState:
    spec, status = obj.get("spec", {}), obj.get("status", {})
    conditions = status.get("conditions", [])
    template_annotations = spec.get("template", {}).get("metadata", {}).get("annotations") or {}
    metadata = obj["metadata"]
    labels = metadata.get("labels") or {}
    return WorkloadState(
        kind=str(obj.get("kind", "")),
        name=str(metadata.get("name", "")),
        component=labels.get(Label.COMPONENT),
        generation=int(metadata.get("generation", 0)),
        observed_generation=int(status.get("observedGeneration", 0)),
        desired=int(spec.get("replicas", 1)),
        replicas=int(status.get("replicas", 0)),
        updated=int(status.get("updatedReplicas", 0)),
        ready=int(status.get("readyReplicas", 0)),
        available=int(status.get("availableReplicas", 0)),
        restarted_at=template_annotations.get(Annotation.RESTARTED_AT),
        rollout_failure=next(
            (
                c.get("message", "rollout failed")
                for c in conditions
                if c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded"
            ),
            None,
        ),
        replica_failure=next(
            (
                f"{c.get('reason')}: {c.get('message', '')}"
                for c in conditions
                if c.get("type") == "ReplicaFailure" and c.get("status") == "True"
            ),
            None,
        ),
        revision=(metadata.get("annotations") or {}).get(Annotation.REVISION),
        canary=labels.get(Label.CANARY) == "true",
        update_revision=status.get("updateRevision"),
    )


POD_FAILURES = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CrashLoopBackOff", "CreateContainerConfigError",
     "CreateContainerError", "RunContainerError"}
)  # fmt: skip
"""Waiting reasons of a container that will not start without a change: reported, not waited for."""


@dataclass(frozen=True)
class PodState:
    name: str
    labels: Mapping[str, str]
    created: str
    """metadata.creationTimestamp as written ("" when absent): RFC 3339 strings order by time."""
    deleting: bool
    phase: str | None
    ip: str | None
    problem: str | None
    """Why it does not run, when that needs a change: unschedulable, or a container that cannot start."""
    termination_messages: tuple[str, ...] = ()
    """The non-empty termination messages of its (non-init) containers, in their order."""
    ready: bool = False
    """Its Ready condition is True."""
    restarts: int = 0
    """The sum of its containers' restartCount."""
    crash_looping: bool = False
    """A container waits with reason CrashLoopBackOff."""
    revision: str | None = None
    """Annotation.REVISION on the pod (set on a canary's pods: the revision it runs)."""

    @property
    def component(self) -> str | None:
        return self.labels.get(Label.COMPONENT)

    @property
    def canary(self) -> bool:
        """A pod of a service's canary Deployment (Label.CANARY), which no Service and no main Deployment selects."""
        return self.labels.get(Label.CANARY) == "true"

    @property
    def serving_ip(self) -> str | None:
        """Its IP when it runs and is not being deleted: it can serve a health document, ready or not."""
        return self.ip if not self.deleting and self.phase == "Running" and self.ip else None


def _problems(status: Mapping[str, Any]) -> list[str]:
    problems = [
        f"{c.get('reason')}: {c.get('message', '')}".rstrip(": ")
        for c in status.get("conditions", [])
        if c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason") == "Unschedulable"
    ]
    for container in status.get("initContainerStatuses", []) + status.get("containerStatuses", []):
        waiting = container.get("state", {}).get("waiting") or {}
        if waiting.get("reason") in POD_FAILURES:
            problems.append(f"{waiting['reason']}: {waiting.get('message', '')}".rstrip(": "))
    return problems


def pod_state(obj: Child) -> PodState:
    metadata, status = obj["metadata"], obj.get("status", {})
    problems = _problems(status)
    containers = status.get("containerStatuses", [])
    return PodState(
        name=str(metadata.get("name", "")),
        labels=dict(metadata.get("labels", {})),
        created=str(metadata.get("creationTimestamp", "")),
        deleting=bool(metadata.get("deletionTimestamp")),
        phase=status.get("phase"),
        ip=status.get("podIP"),
        problem=f"pod {metadata['name']}: {problems[0]}" if problems else None,
        termination_messages=tuple(
            message
            for container in containers
            if (message := container.get("state", {}).get("terminated", {}).get("message"))
        ),
        ready=any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", [])),
        restarts=sum(int(c.get("restartCount", 0)) for c in containers),
        crash_looping=any(
            (c.get("state", {}).get("waiting") or {}).get("reason") == "CrashLoopBackOff" for c in containers
        ),
        revision=(metadata.get("annotations") or {}).get(Annotation.REVISION),
    )


def newest_termination_message(pods: Iterable[PodState]) -> str | None:
    """The last termination message of the newest pod that has one (of two as new, the later one given)."""
    newest: tuple[str, str] | None = None
    for pod in pods:
        for message in pod.termination_messages:
            if newest is None or pod.created >= newest[0]:
                newest = (pod.created, message)
    return newest[1] if newest else None


@dataclass(frozen=True)
class JobRun:
    """A Job, and the tool's result from its newest pod's termination message."""

    name: str
    owners: tuple[str, ...]
    """Names of its owners (the CronJob that created it)."""
    succeeded: bool | None
    """True: Complete; False: Failed; None: not finished."""
    finished_at: datetime | None
    """completionTime of a Complete Job, else the finishing condition's lastTransitionTime."""
    failure: str | None
    """A Failed Job's condition message (or reason)."""
    result: termination.TerminationMessage | None
    """What the tool reported (None when no pod wrote a termination message)."""


def _timestamp(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)


def job_run(job: Child, pods: Iterable[PodState] = ()) -> JobRun:
    """`pods`: the Job's pods (any order; the newest one's message is its result)."""
    metadata, status = job["metadata"], job.get("status", {})
    owners = tuple(str(ref.get("name")) for ref in metadata.get("ownerReferences", []))
    message = newest_termination_message(pods)
    result = termination.parse(message) if message else None
    finished = next(
        (
            c
            for c in status.get("conditions", [])
            if c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
        ),
        None,
    )
    if finished is None:
        return JobRun(str(metadata["name"]), owners, None, None, None, result)
    succeeded = finished["type"] == "Complete"
    at = (status.get("completionTime") if succeeded else None) or finished.get("lastTransitionTime")
    return JobRun(
        name=str(metadata["name"]),
        owners=owners,
        succeeded=succeeded,
        finished_at=_timestamp(at) if at else None,
        failure=None if succeeded else finished.get("message") or finished.get("reason"),
        result=result,
    )


@dataclass(frozen=True)
class ChildrenState:
    """A stack's live children as typed states, each object parsed once."""

    workloads: Mapping[ChildKey, WorkloadState]
    """Deployments and StatefulSets by (kind, name)."""
    pods: tuple[PodState, ...]
    jobs: tuple[JobRun, ...]
    """Every Job with the termination messages of its pods (by the job-name label)."""

    def workload(self, kind: str, name: str) -> WorkloadState | None:
        return self.workloads.get((kind, name))

    def with_objects(self, written: Mapping[ChildKey, Child]) -> ChildrenState:
        """The state with the workloads among `written` (what the API server returned for a write) parsed anew."""
        fresh = {key: workload_state(obj) for key, obj in written.items() if key[0] in WORKLOAD_KINDS}
        return replace(self, workloads={**self.workloads, **fresh})


def observe(children: Mapping[ChildKey, Child]) -> ChildrenState:
    """Parses every child the components read, once."""
    pods = tuple(pod_state(obj) for (kind, _), obj in children.items() if kind == "Pod")
    jobs = tuple(
        job_run(obj, (pod for pod in pods if pod.labels.get(Label.JOB_NAME) == name))
        for (kind, name), obj in children.items()
        if kind == "Job"
    )
    workloads = {key: workload_state(obj) for key, obj in children.items() if key[0] in WORKLOAD_KINDS}
    return ChildrenState(workloads, pods, jobs)
