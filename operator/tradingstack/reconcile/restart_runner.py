"""Turns the daily-restart planner's decision into the writes of a reconcile pass: pure.

The planner (`reconcile.restarts`) decides from the Deployments observed here; `plan_restarts` returns, in the
order the executor must carry them out, the write of the interim status (the restart status before the stamp,
so a crash between the two can only repeat a stamp that did not happen), the stamp (applied with the restart
field manager) and the decision's Event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tradingstack.api import TradingStack, TradingStackStatus
from tradingstack.api.status import RestartsStatus
from tradingstack.components.observe import WorkloadState
from tradingstack.contract import Annotation
from tradingstack.kube.actions import RESTART_FIELD_MANAGER, Action, Apply, ChildKey, Obj
from tradingstack.reconcile.plan import plan_status_write
from tradingstack.reconcile.restarts import (
    DeploymentObservation,
    PostgresMembers,
    RestartPostgresMember,
    Stamp,
    SwitchoverPostgres,
    plan_restart_step,
)
from tradingstack.render.common import child_name
from tradingstack.schedule.maintenance import parse_override


def observe_deployment(service: str, live: WorkloadState) -> DeploymentObservation:
    """The planner's view of a service's Deployment (parsed by `components.observe.workload_state`)."""
    return DeploymentObservation(
        service=service,
        restarted_at=live.restarted_at,
        generation=live.generation,
        observed_generation=live.observed_generation,
        desired_replicas=live.desired,
        replicas=live.replicas,
        updated_replicas=live.updated,
        ready_replicas=live.ready,
        available_replicas=live.available,
    )


def created_at(body: Mapping[str, Any]) -> datetime | None:
    """When the stack was created (the models do not keep metadata.creationTimestamp)."""
    stamp = body["metadata"].get("creationTimestamp")
    return datetime.fromisoformat(stamp) if stamp else None


def restart_stamp(stack: TradingStack, service: str, run_id: str) -> Obj:
    """The only fields the restart field manager owns: the pod-template annotation."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": child_name(stack, service), "namespace": stack.namespace},
        "spec": {"template": {"metadata": {"annotations": {Annotation.RESTARTED_AT: run_id}}}},
    }


@dataclass(frozen=True)
class RestartPlan:
    restarts: RestartsStatus
    """The new status.restarts."""
    written: TradingStackStatus
    """The status the stack has once `actions` are carried out: the interim one when it stamps, else `written`."""
    actions: list[Action]
    """In order: the interim status write (when it changed), the stamp, the decision's Event."""
    postgres: RestartPostgresMember | SwitchoverPostgres | None = None
    """The Patroni cluster's step, carried out through its REST API after `actions` (which write the status
    first: a crash between the two repeats nothing that happened)."""


def plan_restarts(
    stack: TradingStack,
    created: datetime | None,
    written: TradingStackStatus,
    *,
    has_status: bool,
    degraded: bool,
    workloads: Mapping[ChildKey, WorkloadState],
    now: datetime,
    postgres: PostgresMembers | None = None,
) -> RestartPlan:
    """`written`: the stack's status as last written; `has_status`: see `plan_status_write`; `workloads`: the live
    Deployments and StatefulSets (`components.observe`); `postgres`: see `plan_restart_step`."""
    deployments = [
        observe_deployment(service.name, live)
        for service in stack.spec.services
        if (live := workloads.get(("Deployment", child_name(stack, service.name)))) is not None
    ]
    step = plan_restart_step(
        stack.spec,
        written.restarts,
        degraded=degraded,
        trigger=stack.metadata.annotations.get(Annotation.RESTART_NOW),
        deployments=deployments,
        now=now,
        created=created,
        override=parse_override(stack.metadata.annotations.get(Annotation.APPLY_NOW)),
        postgres=postgres,
    )
    decision = step.decision
    actions: list[Action] = []
    if isinstance(decision, Stamp | RestartPostgresMember | SwitchoverPostgres):
        interim = written.model_copy(update={"restarts": step.status})
        actions += plan_status_write(stack.namespace, stack.name, written, interim, has_status=has_status)
        written = interim
    if isinstance(decision, Stamp):
        stamp = restart_stamp(stack, decision.service, decision.run_id)
        actions.append(Apply(stamp, field_manager=RESTART_FIELD_MANAGER))
    if decision.event is not None:
        actions.append(decision.event)
    patroni = decision if isinstance(decision, RestartPostgresMember | SwitchoverPostgres) else None
    return RestartPlan(step.status, written, actions, patroni)
