"""Status of a stack computed from what was observed: workloads' real status, apply errors, backups, health.

Pure: the caller passes the children as parsed by `components.observe`, the previous status and `now`. Each
component assesses its own part (`components.<component>.assess`); this module composes the assessments with
what belongs to no component (name conflicts, unusable Secrets, refused applies, failing pods) into the
stack's Ready, Progressing and Degraded conditions and its phase. A condition keeps its
lastTransitionTime while its status is unchanged, so a resync of a steady stack computes an identical status
and the operator writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from tradingstack.api import Condition, TradingStack, TradingStackStatus
from tradingstack.api.status import (
    ConditionType,
    MaintenanceStatus,
    Phase,
    PostgresStatus,
    RedisStatus,
    RestartsStatus,
    RolloutStatus,
)
from tradingstack.components import gateway as gateway_component
from tradingstack.components import postgres as postgres_component
from tradingstack.components import redis as redis_component
from tradingstack.components import services as services_component
from tradingstack.components.assess import ConditionUpdate
from tradingstack.components.observe import PodState, WorkloadState
from tradingstack.contract import Annotation
from tradingstack.health.rollup import StackHealth
from tradingstack.reconcile.halt import halt_status, halted_condition
from tradingstack.schedule import maintenance
from tradingstack.schedule.restarts import run_id


def set_condition(
    conditions: list[Condition], kind: ConditionType, update: ConditionUpdate, now: datetime, generation: int
) -> list[Condition]:
    previous = next((c for c in conditions if c.type == kind), None)
    changed = previous is None or previous.status != update.status
    condition = Condition(
        type=kind,
        status=update.status,
        reason=update.reason,
        message=update.message,
        last_transition_time=now if changed or previous is None else previous.last_transition_time,
        observed_generation=generation,
    )
    return [c for c in conditions if c.type != kind] + [condition]


def pod_failures(pods: Iterable[PodState], workloads: Iterable[WorkloadState]) -> dict[str, str]:
    """Why a component's pods do not run, by component: a pod that cannot be scheduled, a container that
    cannot start, or a workload whose pods cannot be created (ReplicaFailure, e.g. a quota or admission refusal).
    A canary is not counted against its service: its rollout reports it (`rollout_problems`)."""
    found: dict[str, str] = {}
    for pod in pods:
        if pod.component and pod.problem and pod.component not in found and not pod.canary:
            found[pod.component] = pod.problem
    for workload in workloads:
        if workload.component and workload.replica_failure and not workload.canary:
            found.setdefault(workload.component, workload.replica_failure)
    return found


def serving_pod_ips(pods: Iterable[PodState], component: str) -> list[str]:
    """IPs of a component's pods that run and are not being deleted: those that can serve a health document,
    ready or not. A canary's pod is not one of them: its health gates its rollout, not the service's status."""
    return sorted(ip for pod in pods if pod.component == component and not pod.canary and (ip := pod.serving_ip))


def rollout_problems(rollouts: Mapping[str, RolloutStatus]) -> list[tuple[str, str]]:
    """Degraded while a service's spec still renders a revision that was rolled back."""
    rolled_back = [r.message for _, r in sorted(rollouts.items()) if r.step == "RolledBack"]
    return [("RolloutRolledBack", "; ".join(rolled_back))] if rolled_back else []


def rolling_out(rollouts: Mapping[str, RolloutStatus]) -> list[str]:
    """`rollout of <service>` for each service whose canary bakes or whose Deployment is being promoted."""
    return [f"rollout of {name}" for name, r in sorted(rollouts.items()) if r.step in ("Baking", "Promoting")]


@dataclass(frozen=True)
class Observations:
    """Everything the status is computed from, gathered by the reconciler."""

    workloads: Mapping[tuple[str, str], WorkloadState]
    """Live Deployments and StatefulSets by (kind, name)."""

    apply_errors: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    """Rendered children whose names are taken by objects the stack does not own (not applied)."""
    secret_problems: list[str] = field(default_factory=list)
    """Secrets the spec references (existingSecret) that are missing or lack keys."""
    pods: Sequence[PodState] = ()
    """The stack's live pods (by the stack label)."""
    health: StackHealth | None = None
    """Roll-up of the services' health documents; None when the operator does not read them."""
    redis: RedisStatus = field(default_factory=RedisStatus)
    postgres: PostgresStatus = field(default_factory=PostgresStatus)
    backup_condition: ConditionUpdate | None = None
    postgres_condition: ConditionUpdate | None = None
    """PostgresReady of a Patroni cluster from its members (`reconcile.patroni_status`); None: from the
    StatefulSet."""
    restarts: RestartsStatus = field(default_factory=RestartsStatus)
    rollouts: Mapping[str, RolloutStatus] = field(default_factory=dict)
    """The services' health-gated rollouts (`reconcile.rollout`)."""
    held_templates: Sequence[str] = ()
    """StatefulSet template changes waiting for maintenance (`reconcile.maintenance_gate`)."""


def _stack_problems(observed: Observations) -> list[tuple[str, str]]:
    """(reason, message) of what degrades the stack and belongs to no one component, most actionable first."""
    failing = pod_failures(observed.pods, observed.workloads.values())
    candidates = [
        ("NameConflict", "; ".join(observed.conflicts)),
        ("SecretInvalid", "; ".join(observed.secret_problems)),
        ("ApplyFailed", "; ".join(observed.apply_errors)),
        ("PodsFailing", "; ".join(f"{c}: {m}" for c, m in sorted(failing.items()))),
    ]
    return [(reason, message) for reason, message in candidates if message]


def pending_rollouts(rollouts: Mapping[str, RolloutStatus]) -> list[str]:
    """status.maintenance.pending lines of the rollouts waiting for maintenance (step Pending)."""
    return [
        f"rollout of {name} (revision {r.target_revision}) waits for the maintenance window"
        for name, r in sorted(rollouts.items())
        if r.step == "Pending"
    ]


def maintenance_status(
    stack: TradingStack,
    restarts: RestartsStatus,
    held_changes: Sequence[str],
    previous: MaintenanceStatus,
    now: datetime,
) -> MaintenanceStatus:
    """status.maintenance from spec.maintenance, the apply-now annotation, the restart status and the changes held
    for maintenance (`held_changes`: rollouts, StatefulSet templates) at `now`.

    Holds no `now`: every field is an instant fixed by the spec (an opening, a window's end, a freeze's end,
    an override's expiry), so it stays the same from one resync to the next until maintenance opens or closes.
    `handledOverride` becomes the annotation's value while that override is fresh (the caller posts the
    MaintenanceOverride Event when it changes); a stale or malformed value is ignored.
    """
    spec = stack.spec.maintenance
    raw = stack.metadata.annotations.get(Annotation.APPLY_NOW)
    override = maintenance.parse_override(raw)
    fresh = override if override is not None and override.fresh(now) else None
    scheduled_open = maintenance.is_open(spec, now)
    freeze = maintenance.freeze_in_force(spec, now)
    until = maintenance.open_until(spec, now) if scheduled_open else None
    if fresh is not None and not scheduled_open:
        until = fresh.until
    elif fresh is not None and until is not None:
        until = max(until, fresh.until)
    is_open = scheduled_open or fresh is not None
    pending = []
    if restarts.held is not None:
        pending.append(f"restart run {run_id(restarts.held)} waits for the maintenance window")
    pending += held_changes
    return MaintenanceStatus(
        open=is_open,
        next_window=None if is_open else maintenance.next_open(spec, now),
        open_until=until,
        frozen_until=maintenance.frozen_until(spec, now),
        freeze_reason=freeze.reason if freeze is not None else None,
        override_until=fresh.until if fresh is not None else None,
        override_reason=fresh.reason if fresh is not None else None,
        handled_override=raw if fresh is not None else previous.handled_override,
        pending=pending,
    )


def compute_status(
    stack: TradingStack, observed: Observations, previous: TradingStackStatus, now: datetime
) -> TradingStackStatus:
    """Each component assesses its own children; this composes the stack's conditions from the assessments."""
    generation = stack.metadata.generation
    workloads = observed.workloads
    services = services_component.assess(stack, workloads, observed.health)
    assessments = [
        services.assessment,
        redis_component.assess(stack, workloads),
        postgres_component.assess(stack, workloads, observed.backup_condition, observed.postgres_condition),
        gateway_component.assess(stack, workloads),
    ]
    degraded_reasons = _stack_problems(observed) + rollout_problems(observed.rollouts)
    degraded_reasons += [d for a in assessments for d in a.degraded]
    waiting = [w for a in assessments for w in a.waiting]
    not_applied = observed.apply_errors or observed.conflicts or observed.secret_problems
    ready = not waiting and not not_applied
    rollouts = rolling_out(observed.rollouts)
    progressing = bool(waiting) or bool(rollouts) or observed.restarts.in_progress is not None

    updates: dict[ConditionType, ConditionUpdate] = {
        "Ready": ConditionUpdate("True", "AllComponentsReady", services.message)
        if ready
        else ConditionUpdate("False", "ComponentsNotReady", "waiting for " + "; ".join(waiting or ["apply"])),
        "Progressing": ConditionUpdate("True", "RollingOut", "; ".join(waiting + rollouts) or "restart in progress")
        if progressing
        else ConditionUpdate("False", "Stable", "all rollouts complete"),
        "Degraded": ConditionUpdate("True", degraded_reasons[0][0], "; ".join(m for _, m in degraded_reasons))
        if degraded_reasons
        else ConditionUpdate("False", "AsExpected", ""),
    }
    for assessment in assessments:
        updates.update(assessment.conditions)
    halt = halt_status(stack, previous.halt, now)
    updates["Halted"] = halted_condition(halt)
    conditions = list(previous.conditions)
    for kind, update in updates.items():
        conditions = set_condition(conditions, kind, update, now, generation)

    phase: Phase = "Degraded" if degraded_reasons else "Ready" if ready else "Progressing"
    held = [*pending_rollouts(observed.rollouts), *observed.held_templates]
    return TradingStackStatus(
        observed_generation=generation,
        phase=phase,
        conditions=sorted(conditions, key=lambda c: c.type),
        ready_summary=f"{services.ready}/{len(stack.spec.services)}",
        services=services.services,
        redis=observed.redis,
        postgres=observed.postgres,
        restarts=observed.restarts,
        rollouts=dict(observed.rollouts),
        maintenance=maintenance_status(stack, observed.restarts, held, previous.maintenance, now),
        halt=halt,
    )


def invalid_spec_status(
    previous: TradingStackStatus, problems: list[str], generation: int, now: datetime
) -> TradingStackStatus:
    """A spec the API server accepted but the models refuse: Failed, Degraded naming the fields, nothing applied."""
    message = "; ".join(problems)
    conditions = set_condition(
        list(previous.conditions), "Degraded", ConditionUpdate("True", "InvalidSpec", message), now, generation
    )
    conditions = set_condition(
        conditions, "Ready", ConditionUpdate("False", "InvalidSpec", "fix the spec: " + message), now, generation
    )
    return previous.model_copy(
        update={
            "observed_generation": generation,
            "phase": "Failed",
            "conditions": sorted(conditions, key=lambda c: c.type),
        }
    )
