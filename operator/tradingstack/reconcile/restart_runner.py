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
from tradingstack.contract import Annotation
from tradingstack.kube.actions import RESTART_FIELD_MANAGER, Action, Apply, ChildKey, Obj, PostEvent
from tradingstack.reconcile.plan import plan_status_write
from tradingstack.reconcile.restarts import (
    DeploymentObservation,
    Stamp,
    plan_restart_step,
)
from tradingstack.render.common import child_name


def observe_deployment(service: str, live: Mapping[str, Any]) -> DeploymentObservation:
    spec, status = live.get("spec", {}), live.get("status", {})
    template_annotations = spec.get("template", {}).get("metadata", {}).get("annotations") or {}
    return DeploymentObservation(
        service=service,
        restarted_at=template_annotations.get(Annotation.RESTARTED_AT),
        generation=int(live["metadata"].get("generation", 0)),
        observed_generation=int(status.get("observedGeneration", 0)),
        desired_replicas=int(spec.get("replicas", 1)),
        replicas=int(status.get("replicas", 0)),
        updated_replicas=int(status.get("updatedReplicas", 0)),
        ready_replicas=int(status.get("readyReplicas", 0)),
        available_replicas=int(status.get("availableReplicas", 0)),
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


def plan_restarts(
    stack: TradingStack,
    created: datetime | None,
    written: TradingStackStatus,
    *,
    has_status: bool,
    degraded: bool,
    children: Mapping[ChildKey, Obj],
    now: datetime,
) -> RestartPlan:
    """`written`: the stack's status as last written; `has_status`: see `plan_status_write`."""
    deployments = [
        observe_deployment(service.name, live)
        for service in stack.spec.services
        if (live := children.get(("Deployment", child_name(stack, service.name)))) is not None
    ]
    step = plan_restart_step(
        stack.spec,
        written.restarts,
        degraded=degraded,
        trigger=stack.metadata.annotations.get(Annotation.RESTART_NOW),
        deployments=deployments,
        now=now,
        created=created,
    )
    decision = step.decision
    actions: list[Action] = []
    if isinstance(decision, Stamp):
        interim = written.model_copy(update={"restarts": step.status})
        actions += plan_status_write(stack.namespace, stack.name, written, interim, has_status=has_status)
        stamp = restart_stamp(stack, decision.service, decision.run_id)
        actions.append(Apply(stamp, field_manager=RESTART_FIELD_MANAGER))
        written = interim
    if decision.event is not None:
        actions.append(PostEvent(decision.event.type, decision.event.reason, decision.event.message))
    return RestartPlan(step.status, written, actions)
