"""Status of a stack computed from what was observed: workloads' real status, apply errors, backups, health.

Pure: the caller passes the observed children, the previous status and `now`. A condition keeps its
lastTransitionTime while its status is unchanged, so a resync of a steady stack computes an identical status
and the operator writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from tradingstack.api import Condition, ServiceStatus, TradingStack, TradingStackStatus
from tradingstack.api.status import ConditionType, HealthState, Phase, PostgresStatus, RedisStatus, RestartsStatus
from tradingstack.components.observe import PodState, WorkloadState
from tradingstack.health.rollup import StackHealth

ConditionStatus = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class ConditionUpdate:
    status: ConditionStatus
    reason: str
    message: str = ""


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
    cannot start, or a workload whose pods cannot be created (ReplicaFailure, e.g. a quota or admission refusal)."""
    found: dict[str, str] = {}
    for pod in pods:
        if pod.component and pod.problem and pod.component not in found:
            found[pod.component] = pod.problem
    for workload in workloads:
        if workload.component and workload.replica_failure:
            found.setdefault(workload.component, workload.replica_failure)
    return found


def serving_pod_ips(pods: Iterable[PodState], component: str) -> list[str]:
    """IPs of a component's pods that run and are not being deleted: those that can serve a health document,
    ready or not."""
    return sorted(ip for pod in pods if pod.component == component and (ip := pod.serving_ip))


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
    restarts: RestartsStatus = field(default_factory=RestartsStatus)


def _health_state(health: StackHealth | None, service: str) -> HealthState:
    if health is None or service not in health.services:
        return "UNKNOWN"
    return health.services[service].value


def _store_condition(state: WorkloadState | None, name: str) -> ConditionUpdate:
    if state is None:
        return ConditionUpdate("False", "NotCreated", f"{name} does not exist yet")
    if state.rollout_failure:
        return ConditionUpdate("False", "RolloutFailed", state.rollout_failure)
    if not state.rolled_out:
        return ConditionUpdate("False", "NotReady", f"{state.ready}/{state.desired} pods ready")
    return ConditionUpdate("True", "Ready", f"{state.ready}/{state.desired} pods ready")


def _degraded_reasons(observed: Observations, rollouts_failed: list[str]) -> list[tuple[str, str]]:
    """(reason, message) of everything that keeps the stack from working as specified, most actionable first."""
    failing = pod_failures(observed.pods, observed.workloads.values())
    candidates = [
        ("NameConflict", "; ".join(observed.conflicts)),
        ("SecretInvalid", "; ".join(observed.secret_problems)),
        ("ApplyFailed", "; ".join(observed.apply_errors)),
        ("PodsFailing", "; ".join(f"{c}: {m}" for c, m in sorted(failing.items()))),
        ("RolloutFailed", "; ".join(rollouts_failed)),
    ]
    reasons = [(reason, message) for reason, message in candidates if message]
    if observed.health is not None and observed.health.degraded:
        reasons.append((observed.health.reason, observed.health.message))
    return reasons


def compute_status(
    stack: TradingStack, observed: Observations, previous: TradingStackStatus, now: datetime
) -> TradingStackStatus:
    spec, generation = stack.spec, stack.metadata.generation
    name = stack.name

    def state(kind: str, component: str) -> WorkloadState | None:
        return observed.workloads.get((kind, f"{name}-{component}"))

    services: dict[str, ServiceStatus] = {}
    not_ready: list[str] = []
    rolling: list[str] = []
    failed: list[str] = []
    for service in spec.services:
        current = state("Deployment", service.name)
        services[service.name] = ServiceStatus(
            ready=current.ready if current else 0,
            desired=service.replicas,
            health=_health_state(observed.health, service.name),
        )
        if current is None or not current.rolled_out:
            not_ready.append(service.name)
            rolling.append(service.name)
        if current is not None and current.rollout_failure:
            failed.append(f"{service.name}: {current.rollout_failure}")
    # A service scaled to zero is what the spec asks for, so it holds nothing up, but it serves nothing either.
    scaled_to_zero = [s.name for s in spec.services if s.replicas == 0 and s.name not in not_ready]
    ready_services = len(spec.services) - len(not_ready) - len(scaled_to_zero)
    services_ready = f"{ready_services}/{len(spec.services)} services ready"
    if scaled_to_zero:
        services_ready += f", scaled to zero: {', '.join(scaled_to_zero)}"

    redis = _store_condition(state("StatefulSet", "redis"), "Redis") if spec.redis.enabled else None
    postgres = _store_condition(state("StatefulSet", "postgres"), "Postgres") if spec.postgres.enabled else None
    gateway = state("Deployment", "gateway") if spec.gateway.enabled else None
    gateway_ready = not spec.gateway.enabled or (gateway is not None and gateway.rolled_out)

    degraded_reasons = _degraded_reasons(observed, failed)

    if spec.postgres.enabled and spec.postgres.backup.enabled:
        backup = observed.backup_condition or ConditionUpdate("Unknown", "NoBackupYet", "no backup Job has finished")
    else:
        backup = ConditionUpdate("True", "Disabled", "backups are disabled")
    if backup.status == "False":
        degraded_reasons.append(("BackupUnhealthy", backup.message))

    stores_ready = all(c is None or c.status == "True" for c in (redis, postgres))
    not_applied = observed.apply_errors or observed.conflicts or observed.secret_problems
    ready = not not_ready and stores_ready and gateway_ready and not not_applied
    waiting = [f"services {', '.join(not_ready)}"] if not_ready else []
    waiting += [n for n, c in (("redis", redis), ("postgres", postgres)) if c is not None and c.status != "True"]
    if not gateway_ready:
        waiting.append("gateway")
    progressing = bool(rolling) or not stores_ready or not gateway_ready or observed.restarts.in_progress is not None

    updates: dict[ConditionType, ConditionUpdate] = {
        "Ready": ConditionUpdate("True", "AllComponentsReady", services_ready)
        if ready
        else ConditionUpdate("False", "ComponentsNotReady", "waiting for " + "; ".join(waiting or ["apply"])),
        "Progressing": ConditionUpdate("True", "RollingOut", "; ".join(waiting) or "restart in progress")
        if progressing
        else ConditionUpdate("False", "Stable", "all rollouts complete"),
        "Degraded": ConditionUpdate("True", degraded_reasons[0][0], "; ".join(m for _, m in degraded_reasons))
        if degraded_reasons
        else ConditionUpdate("False", "AsExpected", ""),
        "RedisReady": redis or ConditionUpdate("True", "Disabled", "redis.enabled is false"),
        "PostgresReady": postgres or ConditionUpdate("True", "Disabled", "postgres.enabled is false"),
        "BackupHealthy": backup,
    }
    conditions = list(previous.conditions)
    for kind, update in updates.items():
        conditions = set_condition(conditions, kind, update, now, generation)

    phase: Phase = "Degraded" if degraded_reasons else "Ready" if ready else "Progressing"
    return TradingStackStatus(
        observed_generation=generation,
        phase=phase,
        conditions=sorted(conditions, key=lambda c: c.type),
        ready_summary=f"{ready_services}/{len(spec.services)}",
        services=services,
        redis=observed.redis,
        postgres=observed.postgres,
        restarts=observed.restarts,
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
