"""The daily restarts as a level-based state machine: one pure planning step per timer tick.

Each tick the wiring observes the service Deployments, calls `plan_restart_step`, writes the returned
`RestartsStatus` if it changed, then carries out the decision (stamp one Deployment, or nothing) and emits its
event. Everything the planner needs to resume lives in the status and on the Deployments, so an operator
restarted at any moment picks up where it stopped:

- a run's identifier is derived from its scheduled time (or from the trigger value for manual runs), so a
  resumed run stamps the same value again;
- a service whose pod template already carries the run id is never stamped again for that run: the planner
  only waits for its rollout and readiness;
- only the first service of the order that is not done yet is ever touched, so one service rolls at a time.

Write the status before stamping: then a crash between the two only repeats a Stamp that had not happened.

Maintenance (`spec.maintenance`, `schedule.maintenance`) gates when a scheduled run may start, never a run in
progress: see `plan_restart_step`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

from tradingstack.api.spec import TradingStackSpec
from tradingstack.api.status import RestartsStatus
from tradingstack.contract import Annotation
from tradingstack.contract.patroni_cluster import PatroniCluster
from tradingstack.kube.actions import PostEvent
from tradingstack.reconcile.switchover import Done, Refuse, RestartMember, Switchover, WaitFor, plan_postgres_restart
from tradingstack.schedule.cron import as_utc
from tradingstack.schedule.maintenance import Override, closed_reason
from tradingstack.schedule.restarts import due_run, next_run, restart_order, run_id


@dataclass(frozen=True)
class DeploymentObservation:
    """What the planner needs to know about one service's Deployment."""

    service: str
    """Service name (as in spec.services), not the Deployment's object name."""

    restarted_at: str | None
    """Current value of Annotation.RESTARTED_AT on the pod template (spec.template.metadata.annotations)."""

    generation: int
    """metadata.generation."""

    observed_generation: int
    """status.observedGeneration (0 when absent)."""

    desired_replicas: int
    """spec.replicas."""

    replicas: int
    """status.replicas: pods of every template revision."""

    updated_replicas: int
    """status.updatedReplicas: pods of the current template."""

    ready_replicas: int
    """status.readyReplicas."""

    available_replicas: int
    """status.availableReplicas."""

    health_ready: bool | None = None
    """Whether the service's health document reports it ready; None when it was not read."""

    @property
    def not_ready_reason(self) -> str | None:
        """Why the rollout is not finished or the service not ready (as `kubectl rollout status`), else None."""
        if self.observed_generation < self.generation:
            return "the Deployment controller has not observed the new pod template yet"
        if self.updated_replicas < self.desired_replicas:
            return f"{self.updated_replicas}/{self.desired_replicas} pods updated"
        if self.replicas > self.updated_replicas:
            return f"{self.replicas - self.updated_replicas} old pod(s) still terminating"
        if self.available_replicas < self.updated_replicas:
            return f"{self.available_replicas}/{self.updated_replicas} updated pods available"
        if self.ready_replicas < self.desired_replicas:
            return f"{self.ready_replicas}/{self.desired_replicas} pods ready"
        if self.health_ready is False:
            return "its health document does not report it ready"
        return None


@dataclass(frozen=True)
class Idle:
    """No run is active or due. Nothing to do until `next_run` (None: no scheduled run ahead)."""

    next_run: datetime | None
    event: ClassVar[None] = None


@dataclass(frozen=True)
class Skip:
    """The run that was due is skipped (stack Degraded with skipWhenDegraded, the stack halted, or a run held for
    maintenance that can no longer start): post the event, touch nothing."""

    run_id: str
    reason: str
    event: PostEvent


@dataclass(frozen=True)
class Stamp:
    """Set Annotation.RESTARTED_AT = run_id on the pod template of `service`'s Deployment (server-side apply)."""

    service: str
    run_id: str
    event: PostEvent


@dataclass(frozen=True)
class Wait:
    """`service` is rolling out; check again on a later tick. The run fails if it is not ready by `deadline`."""

    service: str
    run_id: str
    deadline: datetime
    event: ClassVar[None] = None


@dataclass(frozen=True)
class Fail:
    """The run stopped at `service` (`reason`); the services after it were left untouched."""

    service: str
    run_id: str
    reason: str
    event: PostEvent


@dataclass(frozen=True)
class Finish:
    """Every service of the run was restarted and is ready."""

    run_id: str
    event: PostEvent


@dataclass(frozen=True)
class Hold:
    """The scheduled run `run_id` is due but maintenance is closed (`reason`): nothing starts. It starts once
    maintenance opens before `deadline` (its scheduled time + windowMinutes, the catch-up rule), else it is
    skipped. `event` (Normal RestartHeld) only on the first step that holds it."""

    run_id: str
    reason: str
    deadline: datetime
    event: PostEvent | None


@dataclass(frozen=True)
class Paused:
    """A run in progress while restarts are paused (the stack is halted): nothing is stamped, nothing times out;
    the service's serviceReadyTimeoutSeconds counts anew once restarts are released. The Event is posted when
    the pause begins."""

    service: str
    run_id: str
    reason: str
    event: PostEvent | None


@dataclass(frozen=True)
class RestartPostgresMember:
    """Restart the server of the Patroni member `member` (a replica by then) through its REST API
    (`reconcile.switchover`); recorded in status.restarts.membersDone before it is asked for."""

    member: str
    run_id: str
    event: PostEvent


@dataclass(frozen=True)
class SwitchoverPostgres:
    """Switch the Patroni leader `leader` over to `candidate` (a replica already restarted) before restarting it."""

    leader: str
    candidate: str
    run_id: str
    event: PostEvent


RestartDecision = (
    Idle | Skip | Stamp | Wait | Fail | Finish | Hold | Paused | RestartPostgresMember | SwitchoverPostgres
)

POSTGRES_STEP = "postgres"
"""status.restarts.inProgress/done while the run restarts the Patroni cluster (no service has this name: it is a
reserved component name)."""


@dataclass(frozen=True)
class PostgresMembers:
    """The Patroni cluster as its members report it (None: none answered), for a run that restarts it first."""

    cluster: PatroniCluster | None


HALTED = "the stack is halted (spec.halt)"
"""status.restarts.paused while the kill switch is on."""


@dataclass(frozen=True)
class RestartStep:
    """One planning step: the decision to carry out and the status to write (compare before writing)."""

    decision: RestartDecision
    status: RestartsStatus


def manual_run_id(trigger: str) -> str:
    """Run id of a manual run: derived from the trigger value, so a run resumed after a crash keeps its id."""
    return "manual-" + hashlib.sha256(trigger.encode()).hexdigest()[:12]


def plan_restart_step(
    spec: TradingStackSpec,
    status: RestartsStatus,
    *,
    degraded: bool,
    trigger: str | None,
    deployments: Iterable[DeploymentObservation],
    now: datetime,
    created: datetime | None = None,
    override: Override | None = None,
    postgres: PostgresMembers | None = None,
) -> RestartStep:
    """Decide the one thing to do about restarts at `now`.

    `status` is the persisted status.restarts; `degraded` whether the stack's Degraded condition is True;
    `trigger` the value of Annotation.RESTART_NOW on the TradingStack (None when absent), acted on once per
    value; `deployments` the observed Deployments of the services; `created` when the stack was created (the
    lower bound for scheduled runs while it has none); `override` the parsed Annotation.APPLY_NOW (None when
    absent), which opens maintenance while it is fresh; `postgres` the members of the stack's Patroni cluster
    (None: no Patroni cluster, or its members are not read): a run restarts it first, as the step `postgres`
    (`plan_postgres_restart`: the replicas one at a time, then a switchover, then the old leader), then the
    services; the step's deadline is serviceReadyTimeoutSeconds from its start.

    An active run (status.inProgress set) is carried on first: a run cannot be preempted, and a maintenance
    window closing (or a freeze starting) does not interrupt it either, so no desk is left half restarted.
    Otherwise a new trigger value starts a manual run (regardless of enabled and suspendUntil, which govern
    scheduled runs, and of maintenance: a trigger is a person's explicit decision; it also covers a scheduled
    run due at the same time), else the due scheduled run starts, but only while maintenance is open
    (`_maintenance_gate`). skipWhenDegraded is checked only when a run starts: a restart in progress briefly
    degrades the stack by design.

    While the stack is halted (`spec.halt`) restarts are paused (status.restarts.paused): a run that would start
    is Skipped, and a run in progress stamps no further service (`Paused`) until the halt is lifted.
    """
    now = as_utc(now)
    restarts = spec.restarts
    paused = HALTED if spec.halt is not None else None
    was_paused = status.paused
    status = status.model_copy(update={"next_run": next_run(restarts, now), "paused": paused})
    plan = _RunPlan(
        order=restart_order(spec.services, restarts),
        deployments={deployment.service: deployment for deployment in deployments},
        timeout_seconds=restarts.service_ready_timeout_seconds,
        now=now,
        postgres=postgres,
    )
    if status.in_progress is not None and status.run_id is not None:
        if paused is not None:
            return _pause(status, status.in_progress, status.run_id, paused, announce=was_paused is None)
        return plan.advance(status, status.run_id)
    skip = paused
    if skip is None and degraded and restarts.skip_when_degraded:
        skip = "the stack is Degraded and restarts.skipWhenDegraded is true"
    if trigger is not None and trigger != status.handled_trigger:
        triggered = status.model_copy(update={"handled_trigger": trigger})
        return plan.start(triggered, manual_run_id(trigger), now, f"requested by {Annotation.RESTART_NOW}", skip=skip)
    # A stack that never ran counts from its creation: one created at 04:40 is not restarted for 04:30.
    scheduled = due_run(restarts, status.last_run or created, now)
    gated = _maintenance_gate(spec, status, scheduled, now, override)
    if gated is not None:
        return gated
    if scheduled is not None:
        return plan.start(status, run_id(scheduled), scheduled, f"scheduled for {scheduled.isoformat()}", skip=skip)
    return RestartStep(Idle(status.next_run), status)


def _maintenance_gate(
    spec: TradingStackSpec, status: RestartsStatus, scheduled: datetime | None, now: datetime, override: Override | None
) -> RestartStep | None:
    """Holds back the due scheduled run while maintenance is closed, and skips a held run that can no longer
    start; None when the planner goes on as without maintenance.

    A held run is recorded in status.restarts.held. It starts when maintenance opens while `due_run` still
    returns it (within windowMinutes of its scheduled time); once it is no longer due, or a later scheduled run
    is due instead, it is skipped: Skipped result and a Warning RestartSkipped Event naming why (the freeze's
    reason or "outside the maintenance windows", as at its scheduled time).
    """
    held = as_utc(status.held) if status.held is not None else None
    if held is not None and (scheduled is None or held < scheduled):
        restarts = spec.restarts
        at_schedule = closed_reason(spec.maintenance, held) or "maintenance was closed"
        if not restarts.enabled or (restarts.suspend_until is not None and as_utc(restarts.suspend_until) > now):
            reason = f"restarts were disabled or suspended while it waited for maintenance ({at_schedule})"
        else:
            reason = f"maintenance did not open within restarts.windowMinutes ({restarts.window_minutes}) of its "
            reason += f"scheduled time: {at_schedule}"
        run = run_id(held)
        message = f"Restart run {run} (scheduled for {held.isoformat()}) skipped: {reason}"
        skipped = _updated(status, last_run=held, last_result="Skipped", held=None)
        return RestartStep(Skip(run, reason, PostEvent("Warning", "RestartSkipped", message)), skipped)
    if scheduled is None:
        return None
    closed = closed_reason(spec.maintenance, now, override)
    if closed is None:
        return None
    run = run_id(scheduled)
    deadline = scheduled + timedelta(minutes=spec.restarts.window_minutes)
    if held == scheduled:
        return RestartStep(Hold(run, closed, deadline, None), status)
    message = f"Restart run {run} (scheduled for {scheduled.isoformat()}) waits for maintenance: {closed}"
    event = PostEvent("Normal", "RestartHeld", message)
    return RestartStep(Hold(run, closed, deadline, event), _updated(status, held=scheduled))


@dataclass(frozen=True)
class _RunPlan:
    """The inputs of one step that do not change while it is planned."""

    order: list[str]
    deployments: dict[str, DeploymentObservation]
    timeout_seconds: int
    now: datetime
    postgres: PostgresMembers | None = None

    def start(
        self, status: RestartsStatus, run: str, started: datetime, origin: str, *, skip: str | None
    ) -> RestartStep:
        """Begin run `run` (scheduled or triggered at `started`), or skip it (`skip`: why)."""
        status = _updated(
            status,
            last_run=started,
            last_result=None,
            run_id=run,
            in_progress=None,
            stamped_at=None,
            done=[],
            members_done=[],
            held=None,
        )
        if skip is not None:
            event = PostEvent("Warning", "RestartSkipped", f"Restart run {run} ({origin}) skipped: {skip}")
            return RestartStep(Skip(run, skip, event), _updated(status, last_result="Skipped"))
        return self.advance(status, run)

    def advance(self, status: RestartsStatus, run: str) -> RestartStep:
        """Move the active run on: the Patroni cluster first (`_advance_postgres`), then the first service of the
        order not done yet is stamped or waited for."""
        done = list(status.done)
        if self.postgres is not None and POSTGRES_STEP not in done:
            step = self._advance_postgres(status, run, self.postgres.cluster, done)
            if step is not None:
                return step
            done.append(POSTGRES_STEP)
            status = _updated(status, members_done=[], done=done)
        for service in self.order:
            if service in done:
                continue
            deployment = self.deployments.get(service)
            if deployment is None:
                return self._fail(status, run, service, done, "its Deployment was not found")
            # The deadline counts from the first stamp of this service, kept across ticks and operator restarts.
            stamped_at = status.stamped_at if status.in_progress == service and status.stamped_at else self.now
            deadline = stamped_at + timedelta(seconds=self.timeout_seconds)
            current = _updated(status, in_progress=service, stamped_at=stamped_at, done=done)
            if deployment.restarted_at != run:
                if self.now >= deadline:
                    return self._fail(
                        status, run, service, done, f"it could not be stamped within {self.timeout_seconds}s"
                    )
                position = f"{self.order.index(service) + 1}/{len(self.order)}"
                event = PostEvent(
                    "Normal", "RestartingService", f"Restart run {run}: restarting {service} ({position})"
                )
                return RestartStep(Stamp(service, run, event), current)
            not_ready = deployment.not_ready_reason
            if not_ready is None:
                done.append(service)
                continue
            if self.now >= deadline:
                return self._fail(status, run, service, done, f"not ready within {self.timeout_seconds}s: {not_ready}")
            return RestartStep(Wait(service, run, deadline), current)
        restarted = ", ".join(done) or "no services to restart"
        event = PostEvent("Normal", "RestartSucceeded", f"Restart run {run} finished: {restarted}")
        finished = _updated(status, last_result="Succeeded", in_progress=None, stamped_at=None, done=done)
        return RestartStep(Finish(run, event), finished)

    def _advance_postgres(
        self, status: RestartsStatus, run: str, cluster: PatroniCluster | None, done: list[str]
    ) -> RestartStep | None:
        """The Patroni cluster's next step (`plan_postgres_restart`), None once every member was restarted."""
        members_done = list(status.members_done)
        step = plan_postgres_restart(cluster, members_done)
        if isinstance(step, Done):
            return None
        started = status.stamped_at if status.in_progress == POSTGRES_STEP and status.stamped_at else self.now
        deadline = started + timedelta(seconds=self.timeout_seconds)
        current = _updated(status, in_progress=POSTGRES_STEP, stamped_at=started, done=done)
        if self.now >= deadline:
            why = step.reason if isinstance(step, WaitFor | Refuse) else "its members were not all restarted"
            return self._fail(status, run, POSTGRES_STEP, done, f"not done within {self.timeout_seconds}s: {why}")
        match step:
            case RestartMember(member):
                message = f"Restart run {run}: restarting the server of Postgres member {member} (a replica)"
                event = PostEvent("Normal", "RestartingPostgres", message)
                restarted = _updated(current, members_done=[*members_done, member])
                return RestartStep(RestartPostgresMember(member, run, event), restarted)
            case Switchover(leader, candidate):
                message = f"Restart run {run}: switching the Postgres leader over from {leader} to {candidate}"
                event = PostEvent("Normal", "RestartingPostgres", message)
                return RestartStep(SwitchoverPostgres(leader, candidate, run, event), current)
        return RestartStep(Wait(POSTGRES_STEP, run, deadline), current)

    def _fail(self, status: RestartsStatus, run: str, service: str, done: list[str], reason: str) -> RestartStep:
        order = [POSTGRES_STEP, *self.order] if self.postgres is not None else self.order
        untouched = [name for name in order if name not in done and name != service]
        message = f"Restart run {run} failed at {service}: {reason}; not restarted: {', '.join(untouched) or 'none'}"
        failed = _updated(status, last_result="Failed", in_progress=None, stamped_at=None, done=done, members_done=[])
        return RestartStep(Fail(service, run, reason, PostEvent("Warning", "RestartFailed", message)), failed)


def _pause(status: RestartsStatus, service: str, run: str, reason: str, *, announce: bool) -> RestartStep:
    """The run in progress waits at `service`; its deadline is dropped so that it counts anew on release."""
    event = None
    if announce:
        event = PostEvent("Normal", "RestartPaused", f"Restart run {run} paused at {service}: {reason}")
    return RestartStep(Paused(service, run, reason, event), _updated(status, stamped_at=None))


def _updated(status: RestartsStatus, **changes: Any) -> RestartsStatus:
    """A copy of the (frozen) status with `changes`, given by Python field name."""
    return status.model_copy(update=changes)
