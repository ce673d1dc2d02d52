"""Health-gated rollouts of the services as a level-based state machine: one pure planning step per pass.

When a service's rendered pod template (its revision, `render.common.template_revision`) differs from the
revision its live Deployment runs, the operator does not apply the Deployment. It applies a canary Deployment
beside it (`render.services.canary_deployment`: the same pod template, one replica, pods that neither the main
Deployment's selector nor the Service selects) and watches that one new pod:

- Baking: the canary pod must be Ready and report HEALTHY in its health document without a break for
  `rollout.bakeSeconds` (`healthySince` in the status; any other answer starts the count again);
- Promoting: the main Deployment is applied with the new template and the canary deleted (its pod would take
  the room of the surge pod); the RollingUpdate (maxSurge 1, maxUnavailable 0) removes no old pod before a new
  one is Ready. Once the Deployment reports the rollout complete the revision is recorded as the last good one;
- RolledBack: a canary pod that reports UNHEALTHY, restarts or crash-loops, or is not Ready and HEALTHY within
  `rollout.deadlineSeconds`, is deleted. The main Deployment never left its template, so the rollback removes
  nothing that was Ready. The revision is recorded as bad and not tried again while the spec renders it.

Why a canary Deployment rather than pausing the Deployment: a paused Deployment does not roll at all, and a
resumed one rolls every pod at the pace of its strategy; the Deployment controller cannot stop after one new pod
(maxSurge only bounds how many are created at once, and the next follows as soon as that one is Ready). A
second Deployment of one pod is the only way to hold a single new pod for as long as the bake lasts, and removing
it is a rollback that touches none of the pods serving traffic.

Applied directly, without a canary: a first deploy (no live Deployment), a live Deployment without a revision
annotation (made by an older operator), a service with replicas 0, and a live Deployment at zero replicas (after
a halt: nothing runs to protect). While the stack is halted no rollout starts or goes on (`HoldHalted`); while
maintenance is closed (`spec.maintenance`) a disruptive service's rollout does not start (`HoldClosed`), but one
that has started goes on: stopping a half-promoted Deployment would leave two revisions serving.

Everything the planner needs to resume lives in the status and on the live objects, so a restarted operator
picks up where it stopped. The status changes only when a step does: a pass that changes nothing writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

from tradingstack.api import ServiceSpec
from tradingstack.api.spec import RolloutSpec
from tradingstack.api.status import RolloutStatus
from tradingstack.kube.actions import PostEvent


@dataclass(frozen=True)
class CanaryPod:
    """The newest canary pod of the target revision, as the planner needs it."""

    ready: bool
    """Its Ready condition is True."""
    restarts: int
    """The sum of its containers' restartCount."""
    crash_looping: bool
    """A container waits with reason CrashLoopBackOff."""
    health: str | None
    """Its health document's status (HEALTHY, DEGRADED, UNHEALTHY), UNREACHABLE when it did not answer, None when
    the operator does not read health documents (then Ready alone gates the rollout)."""
    problem: str | None = None
    """Why it does not run, when that needs a change (unschedulable, image pull)."""


@dataclass(frozen=True)
class RolloutObservation:
    """What the planner needs to know about one service's Deployments."""

    main_exists: bool
    """The service's Deployment exists."""
    live_revision: str | None
    """Its Annotation.REVISION (None: absent, or applied by an operator that did not record revisions)."""
    main_complete: bool = False
    """Its rollout is complete: the current template observed, every pod updated and ready, no old pod left."""
    canary_revision: str | None = None
    """Annotation.REVISION of the canary Deployment; None when there is none."""
    canary_pod: CanaryPod | None = None
    """The canary's newest pod running `canary_revision`, not being deleted; None when there is none yet."""

    main_replicas: int | None = None
    """The live Deployment's spec.replicas (0 after a halt, for example)."""


@dataclass(frozen=True)
class ApplyMain:
    """Apply the service's Deployment as rendered (no rollout in progress); no canary."""

    reason: str
    hold_main: ClassVar[bool] = False
    canary: ClassVar[bool] = False
    event: ClassVar[None] = None


@dataclass(frozen=True)
class StartCanary:
    """A new revision: hold the Deployment, apply the canary."""

    revision: str
    event: PostEvent
    hold_main: ClassVar[bool] = True
    canary: ClassVar[bool] = True


@dataclass(frozen=True)
class Bake:
    """The canary runs `revision`; wait (`waiting_for`) with the Deployment held."""

    revision: str
    waiting_for: str
    hold_main: ClassVar[bool] = True
    canary: ClassVar[bool] = True
    event: ClassVar[None] = None


@dataclass(frozen=True)
class Promote:
    """Apply the Deployment with `revision` and delete the canary: the canary's pod would hold the room the
    rolling update's surge pod needs (on a full node the promotion would never finish); maxUnavailable 0 keeps
    every Ready pod until its replacement is Ready."""

    revision: str
    hold_main: ClassVar[bool] = False
    canary: ClassVar[bool] = False
    event: ClassVar[None] = None


@dataclass(frozen=True)
class Finish:
    """The Deployment runs `revision` on every pod: delete the canary, `revision` is the last good one."""

    revision: str
    event: PostEvent
    hold_main: ClassVar[bool] = False
    canary: ClassVar[bool] = False


@dataclass(frozen=True)
class RollBack:
    """`revision` failed (`reason`): delete the canary, keep the Deployment on its template, record it bad."""

    revision: str
    reason: str
    event: PostEvent
    hold_main: ClassVar[bool] = True
    canary: ClassVar[bool] = False


@dataclass(frozen=True)
class HoldBad:
    """The spec still renders the rolled-back `revision`: keep the Deployment as it is, start no canary."""

    revision: str
    hold_main: ClassVar[bool] = True
    canary: ClassVar[bool] = False
    event: ClassVar[None] = None


@dataclass(frozen=True)
class HoldHalted:
    """The stack is halted (spec.halt): no rollout starts or goes on; the Deployment is kept as it is and a canary
    is removed. The rollout starts afresh after the resume."""

    revision: str
    hold_main: ClassVar[bool] = True
    canary: ClassVar[bool] = False
    event: ClassVar[None] = None


@dataclass(frozen=True)
class HoldClosed:
    """`revision` is new and the service is disruptive, but maintenance is closed (`reason`): the Deployment is kept
    as it is and no canary starts until maintenance opens. A rollout already baking or promoting is not held."""

    revision: str
    reason: str
    hold_main: ClassVar[bool] = True
    canary: ClassVar[bool] = False
    event: ClassVar[None] = None


RolloutDecision = ApplyMain | StartCanary | Bake | Promote | Finish | RollBack | HoldBad | HoldHalted | HoldClosed


@dataclass(frozen=True)
class RolloutStep:
    """One planning step: the decision to carry out and the service's status.rollouts entry to write."""

    decision: RolloutDecision
    status: RolloutStatus


MAX_MESSAGE = 1024
"""A message quotes the kubelet's reason for a pod that does not run: kept well inside the CRD's 4096."""


def _updated(status: RolloutStatus, **changes: Any) -> RolloutStatus:
    """A copy of the (frozen) status with `changes` (model_copy does not validate: the message is cut here)."""
    if "message" in changes:
        changes["message"] = changes["message"][:MAX_MESSAGE]
    return status.model_copy(update=changes)


def _idle(status: RolloutStatus, observation: RolloutObservation) -> RolloutStatus:
    good = observation.live_revision if observation.main_complete else status.last_good_revision
    return _updated(status, step="Idle", started_at=None, healthy_since=None, message="", last_good_revision=good)


def plan_rollout_step(
    service: ServiceSpec,
    desired_revision: str,
    observation: RolloutObservation,
    previous: RolloutStatus,
    spec: RolloutSpec,
    now: datetime,
    *,
    halted: bool = False,
    closed: str | None = None,
) -> RolloutStep:
    """Decide the one thing to do about `service`'s rollout at `now`.

    `desired_revision`: the revision of the rendered pod template; `previous`: the service's persisted
    status.rollouts entry (empty for a new service); `spec`: its `rollout` settings; `halted`: the stack is
    halted (spec.halt), so no rollout starts or goes on; `closed`: why maintenance is closed at `now`
    (`schedule.maintenance.closed_reason`), None while it is open, so a disruptive service's rollout may start.
    """
    current = observation.live_revision
    status = _updated(previous, current_revision=current)
    if desired_revision != status.bad_revision:
        status = _updated(status, bad_revision=None)  # the spec changed since the rollback: try again
    if not observation.main_exists:
        return RolloutStep(
            ApplyMain("first deploy"), _idle(_updated(status, target_revision=desired_revision), observation)
        )
    if current is None:
        return RolloutStep(
            ApplyMain("the Deployment records no revision (an older operator applied it)"), _idle(status, observation)
        )
    if service.replicas == 0:
        return RolloutStep(ApplyMain("scaled to zero"), _idle(status, observation))
    if observation.main_replicas == 0 and not halted:
        # Nothing runs (e.g. a resume after a halt): no Ready pod to protect, and a canary would only delay it.
        return RolloutStep(ApplyMain("its Deployment runs no pod"), _idle(status, observation))
    if desired_revision == current:
        if status.step == "Promoting" and status.target_revision == desired_revision:
            if not observation.main_complete:
                return RolloutStep(Promote(desired_revision), status)
            event = PostEvent("Normal", "RolloutSucceeded", f"{service.name}: revision {desired_revision} rolled out")
            return RolloutStep(Finish(desired_revision, event), _idle(status, observation))
        return RolloutStep(ApplyMain("the Deployment runs the rendered revision"), _idle(status, observation))
    if desired_revision == status.bad_revision:
        return RolloutStep(HoldBad(desired_revision), status)
    if halted:
        held = _updated(_idle(status, observation), message=f"revision {desired_revision} waits: the stack is halted")
        return RolloutStep(HoldHalted(desired_revision), held)
    if status.target_revision != desired_revision or status.step not in ("Baking", "Promoting"):
        if closed is not None and service.disruptive:
            pending = _updated(
                _idle(status, observation),
                step="Pending",
                target_revision=desired_revision,
                message=f"revision {desired_revision} waits for maintenance: {closed}",
            )
            return RolloutStep(HoldClosed(desired_revision, closed), pending)
        deadline = now + timedelta(seconds=spec.deadline_seconds)
        started = _updated(
            status,
            step="Baking",
            target_revision=desired_revision,
            started_at=now,
            healthy_since=None,
            message=_waiting(desired_revision, NO_CANARY_POD, deadline),
        )
        event = PostEvent(
            "Normal", "RolloutStarted", f"{service.name}: canary of revision {desired_revision} (from {current})"
        )
        return RolloutStep(StartCanary(desired_revision, event), started)
    if status.step == "Promoting":
        return RolloutStep(Promote(desired_revision), status)  # its apply has not taken yet: apply again
    return _bake(service, desired_revision, observation, status, spec, now)


def _bake(
    service: ServiceSpec,
    revision: str,
    observation: RolloutObservation,
    status: RolloutStatus,
    spec: RolloutSpec,
    now: datetime,
) -> RolloutStep:
    started_at = status.started_at or now
    deadline = started_at + timedelta(seconds=spec.deadline_seconds)
    pod = observation.canary_pod if observation.canary_revision == revision else None
    if pod is not None and (pod.crash_looping or pod.restarts > 0):
        how = "is crash-looping" if pod.crash_looping else f"restarted {pod.restarts} time(s)"
        return _roll_back(service, revision, status, f"its canary pod {how}")
    if pod is not None and pod.health == "UNHEALTHY":
        return _roll_back(service, revision, status, "its canary pod reports UNHEALTHY")
    healthy = pod is not None and pod.ready and pod.health in ("HEALTHY", None)
    if healthy:
        since = status.healthy_since or now
        if now - since >= timedelta(seconds=spec.bake_seconds):
            promoting = _updated(
                status,
                step="Promoting",
                started_at=started_at,
                healthy_since=since,
                message=f"promoting revision {revision}: its canary was Ready and HEALTHY for {spec.bake_seconds}s",
            )
            return RolloutStep(Promote(revision), promoting)
        baking = _updated(
            status,
            started_at=started_at,
            healthy_since=since,
            message=f"canary of revision {revision} Ready and HEALTHY since {since.isoformat()}; "
            f"promoted after {spec.bake_seconds}s",
        )
        return RolloutStep(Bake(revision, "the bake time"), baking)
    if now >= deadline:
        detail = f": {pod.problem}" if pod is not None and pod.problem else ""
        return _roll_back(
            service, revision, status, f"its canary was not Ready and HEALTHY within {spec.deadline_seconds}s{detail}"
        )
    if pod is None:
        waiting = NO_CANARY_POD
    elif not pod.ready:
        waiting = "the canary pod to be Ready" + (f" ({pod.problem})" if pod.problem else "")
    else:
        waiting = f"the canary pod to report HEALTHY (it reports {pod.health})"
    baking = _updated(status, started_at=started_at, healthy_since=None, message=_waiting(revision, waiting, deadline))
    return RolloutStep(Bake(revision, waiting), baking)


NO_CANARY_POD = "the canary pod"


def _waiting(revision: str, waiting: str, deadline: datetime) -> str:
    """The message while the canary is not Ready and HEALTHY: the same each pass while nothing changes."""
    return f"canary of revision {revision}: waiting for {waiting}; rolled back at {deadline.isoformat()}"


def _roll_back(service: ServiceSpec, revision: str, status: RolloutStatus, reason: str) -> RolloutStep:
    kept = status.current_revision
    message = f"{service.name}: revision {revision} rolled back, {reason}; the Deployment keeps revision {kept}"
    rolled_back = _updated(
        status, step="RolledBack", target_revision=revision, bad_revision=revision, healthy_since=None, message=message
    )
    return RolloutStep(
        RollBack(revision, reason, PostEvent("Warning", "RolloutRolledBack", rolled_back.message)), rolled_back
    )
