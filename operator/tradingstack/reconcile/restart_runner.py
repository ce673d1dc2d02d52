"""Carries out the daily-restart planner's decision during a reconcile pass.

The planner (`reconcile.restarts`) decides; this module observes the Deployments, writes the restart status
before stamping (so a crash between the two can only repeat a stamp that did not happen), stamps with the
restart field manager, and posts the decision's event.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

from tradingstack.api import TradingStack
from tradingstack.api.status import RestartsStatus
from tradingstack.contract import Annotation
from tradingstack.kube.client import RESTART_FIELD_MANAGER, ChildKey, Kube, Obj
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


def _created(body: Mapping[str, Any]) -> datetime | None:
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


async def advance_restarts(
    kube: Kube,
    body: Mapping[str, Any],
    stack: TradingStack,
    current: RestartsStatus,
    degraded: bool,
    children: dict[ChildKey, Obj],
    now: datetime,
    save: Callable[[RestartsStatus], Awaitable[None]],
) -> RestartsStatus:
    deployments = [
        observe_deployment(service.name, live)
        for service in stack.spec.services
        if (live := children.get(("Deployment", child_name(stack, service.name)))) is not None
    ]
    step = plan_restart_step(
        stack.spec,
        current,
        degraded=degraded,
        trigger=stack.metadata.annotations.get(Annotation.RESTART_NOW),
        deployments=deployments,
        now=now,
        created=_created(body),
    )
    decision = step.decision
    if isinstance(decision, Stamp):
        await save(step.status)
        stamped = await kube.apply(restart_stamp(stack, decision.service, decision.run_id), RESTART_FIELD_MANAGER)
        children[("Deployment", child_name(stack, decision.service))] = stamped
    if decision.event is not None:
        await kube.post_event(body, decision.event.type, decision.event.reason, decision.event.message)
    return step.status
