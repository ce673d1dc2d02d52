"""Turns the rollout planner's decisions into the objects a reconcile pass applies: pure.

For each service `plan_rollouts` observes its Deployment and canary (`components.observe`), asks
`reconcile.rollout.plan_rollout_step`, and returns the decisions, the new status.rollouts and the decisions'
Events. `rollout_objects` then takes the rendered objects and the decisions and returns what the pass applies:
the rendered objects plus each wanted canary, and the set of main Deployments held (kept, so never pruned, but
not applied while their new revision bakes or after it was rolled back). A canary no decision wants is not among
the desired objects, so the pass prunes it like any other child no longer rendered.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from tradingstack.api import TradingStack, TradingStackStatus
from tradingstack.api.status import RolloutStatus
from tradingstack.components.observe import ChildrenState, PodState, workload_state
from tradingstack.contract import CANARY_SUFFIX, Annotation
from tradingstack.kube.actions import ChildKey, Obj, PostEvent, key_of
from tradingstack.reconcile.diff import with_applied_hash
from tradingstack.reconcile.maintenance_gate import maintenance_closed
from tradingstack.reconcile.rollout import CanaryPod, RolloutDecision, RolloutObservation, plan_rollout_step
from tradingstack.render.common import child_name
from tradingstack.render.services import canary_deployment


def canary_name(stack: TradingStack, service: str) -> str:
    return child_name(stack, service) + CANARY_SUFFIX


def canary_pod(pods: Iterable[PodState], service: str, revision: str | None) -> PodState | None:
    """The newest pod of `service`'s canary running `revision`, not being deleted."""
    candidates = [
        pod
        for pod in pods
        if pod.canary and pod.component == service and not pod.deleting and revision and pod.revision == revision
    ]
    return max(candidates, key=lambda pod: pod.created, default=None)


def canary_pod_ips(stack: TradingStack, state: ChildrenState) -> dict[str, str]:
    """By service: the IP of the canary pod whose health document the pass reads (one that runs)."""
    found: dict[str, str] = {}
    for service in stack.spec.services:
        canary = state.workload("Deployment", canary_name(stack, service.name))
        pod = canary_pod(state.pods, service.name, canary.revision if canary else None)
        if pod is not None and pod.serving_ip:
            found[service.name] = pod.serving_ip
    return found


def observe_rollout(
    stack: TradingStack, service: str, state: ChildrenState, health: Mapping[str, str] | None
) -> RolloutObservation:
    """`health`: the canaries' health states by service (of the pods `canary_pod_ips` names; a canary pod missing
    from it did not answer: UNREACHABLE); None when the operator does not read health documents."""
    main = state.workload("Deployment", child_name(stack, service))
    canary = state.workload("Deployment", canary_name(stack, service))
    pod = canary_pod(state.pods, service, canary.revision if canary else None)
    observed_pod = None
    if pod is not None:
        observed_pod = CanaryPod(
            ready=pod.ready,
            restarts=pod.restarts,
            crash_looping=pod.crash_looping,
            health=None if health is None else health.get(service, "UNREACHABLE"),
            problem=pod.problem,
        )
    return RolloutObservation(
        main_exists=main is not None,
        live_revision=main.revision if main else None,
        main_complete=main.rolled_out if main else False,
        canary_revision=canary.revision if canary else None,
        canary_pod=observed_pod,
        main_replicas=main.desired if main else None,
    )


def rendered_revision(desired: Iterable[Obj], stack: TradingStack, service: str) -> str | None:
    name = child_name(stack, service)
    for obj in desired:
        if key_of(obj) == ("Deployment", name):
            return str(obj["metadata"]["annotations"][Annotation.REVISION])
    return None


@dataclass(frozen=True)
class RolloutPlan:
    decisions: dict[str, RolloutDecision]
    """By service."""
    rollouts: dict[str, RolloutStatus]
    """The new status.rollouts."""
    events: list[PostEvent]
    """The decisions' Events (a rollout started, finished, rolled back)."""


def plan_rollouts(
    stack: TradingStack,
    desired: Iterable[Obj],
    state: ChildrenState,
    health: Mapping[str, str] | None,
    previous: TradingStackStatus,
    now: datetime,
) -> RolloutPlan:
    """`desired`: the rendered objects; `state`: the live children; `health`: see `observe_rollout`."""
    desired = list(desired)
    decisions: dict[str, RolloutDecision] = {}
    rollouts: dict[str, RolloutStatus] = {}
    events: list[PostEvent] = []
    closed = maintenance_closed(stack, now)
    for service in stack.spec.services:
        revision = rendered_revision(desired, stack, service.name)
        if revision is None:
            continue
        step = plan_rollout_step(
            service,
            revision,
            observe_rollout(stack, service.name, state, health),
            previous.rollouts.get(service.name, RolloutStatus()),
            service.rollout,
            now,
            halted=stack.spec.halt is not None,
            closed=closed,
        )
        decisions[service.name] = step.decision
        rollouts[service.name] = step.status
        if step.decision.event is not None:
            events.append(step.decision.event)
    return RolloutPlan(decisions, rollouts, events)


def interim_status(written: TradingStackStatus, plan: RolloutPlan) -> TradingStackStatus | None:
    """The status as `written` with the new status.rollouts, when a service's step changes (a canary started,
    promoted, rolled back, finished); None otherwise. Written before the pass's child writes, as the restart
    runner writes its status before the stamp: a crash between the two then resumes the step (the same
    `startedAt`, the revision already bad) instead of starting it again with a second Event."""
    idle = RolloutStatus()
    changed = any(status.step != written.rollouts.get(service, idle).step for service, status in plan.rollouts.items())
    return written.model_copy(update={"rollouts": plan.rollouts}) if changed else None


def with_live_revisions(plan: RolloutPlan, stack: TradingStack, children: Mapping[ChildKey, Obj]) -> RolloutPlan:
    """The plan with each service's currentRevision as the pass's writes left its Deployment (a first deploy or a
    promotion applies it), so the status written at the end of the pass is the one the next pass computes."""
    rollouts = dict(plan.rollouts)
    for service, status in plan.rollouts.items():
        live = children.get(("Deployment", child_name(stack, service)))
        if live is not None:
            rollouts[service] = status.model_copy(update={"current_revision": workload_state(live).revision})
    return RolloutPlan(plan.decisions, rollouts, plan.events)


@dataclass(frozen=True)
class RolloutObjects:
    desired: list[Obj]
    """The rendered objects and each wanted canary (with its applied hash), in apply order."""
    held: frozenset[ChildKey]
    """Main Deployments kept as they are: neither applied nor pruned."""


def rollout_objects(
    stack: TradingStack, desired: list[Obj], decisions: Mapping[str, RolloutDecision]
) -> RolloutObjects:
    """`desired`: the rendered objects (with their applied hashes); each canary follows its main Deployment."""
    objects: list[Obj] = []
    held: set[ChildKey] = set()
    by_key = {child_name(stack, service): decision for service, decision in decisions.items()}
    for obj in desired:
        objects.append(obj)
        kind, name = key_of(obj)
        decision = by_key.get(name) if kind == "Deployment" else None
        if decision is None:
            continue
        if decision.hold_main:
            held.add((kind, name))
        if decision.canary:
            objects.append(with_applied_hash(canary_deployment(obj)))
    return RolloutObjects(objects, frozenset(held))
