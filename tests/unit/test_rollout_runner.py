"""The rollout wiring, pure: the live children read into the planner's observation, and the decisions turned into
the objects a pass applies, holds and prunes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tests.unit.test_render import example
from tradingstack.api import TradingStackStatus
from tradingstack.api.status import RolloutStatus
from tradingstack.components import render
from tradingstack.components.observe import observe, pod_state, workload_state
from tradingstack.contract import Annotation, Label
from tradingstack.kube.actions import PostEvent, key_of
from tradingstack.reconcile.diff import with_applied_hash
from tradingstack.reconcile.plan import plan_child_writes, prunes
from tradingstack.reconcile.rollout import (
    ApplyMain,
    Bake,
    Finish,
    HoldBad,
    Promote,
    RollBack,
    RolloutDecision,
    StartCanary,
)
from tradingstack.reconcile.rollout_runner import (
    canary_pod_ips,
    observe_rollout,
    plan_rollouts,
    rollout_objects,
)
from tradingstack.reconcile.status import pod_failures, serving_pod_ips
from tradingstack.render.services import canary_deployment

NOW = datetime(2026, 12, 3, 14, 30, tzinfo=UTC)
STACK = example("quantum-trader.yaml")
RENDERED = [with_applied_hash(o) for o in render(STACK, STACK.owner_reference())]
MAIN = ("Deployment", "quantum-trader-ai-engine")
CANARY = ("Deployment", "quantum-trader-ai-engine-canary")
EVENT = PostEvent("Normal", "RolloutStarted", "x")


def rendered(key: tuple[str, str]) -> dict[str, Any]:
    return next(o for o in RENDERED if key_of(o) == key)


def canary_pod(revision: str, *, restarts: int = 0, ready: bool = True, deleting: bool = False) -> dict[str, Any]:
    template = canary_deployment(rendered(MAIN))["spec"]["template"]["metadata"]
    metadata: dict[str, Any] = {
        "name": "quantum-trader-ai-engine-canary-1",
        "labels": template["labels"],
        "annotations": {**template["annotations"], Annotation.REVISION: revision},
        "creationTimestamp": "2026-12-03T14:30:05Z",
    }
    if deleting:
        metadata["deletionTimestamp"] = "2026-12-03T14:31:00Z"
    return {
        "kind": "Pod",
        "metadata": metadata,
        "status": {
            "phase": "Running",
            "podIP": "10.0.0.7",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [{"restartCount": restarts, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]
            if restarts
            else [{"restartCount": 0, "state": {"running": {}}}],
        },
    }


def test_the_decisions_hold_the_main_deployment_and_add_or_drop_the_canary() -> None:
    cases: list[tuple[RolloutDecision, bool, bool]] = [
        (ApplyMain("in sync"), False, False),
        (StartCanary("r", EVENT), True, True),
        (Bake("r", "the bake time"), True, True),
        (Promote("r"), False, False),
        (Finish("r", EVENT), False, False),
        (RollBack("r", "UNHEALTHY", EVENT), True, False),
        (HoldBad("r"), True, False),
    ]
    for decision, held, canary in cases:
        objects = rollout_objects(STACK, RENDERED, {"ai-engine": decision})
        assert (MAIN in objects.held) is held, decision
        keys = [key_of(o) for o in objects.desired]
        assert (CANARY in keys) is canary, decision
        assert MAIN in keys  # a held Deployment is still desired: never pruned
        assert objects.held <= {MAIN}
        if canary:
            assert keys.index(CANARY) == keys.index(MAIN) + 1  # in the Deployments' apply order
            assert Annotation.APPLIED_HASH in objects.desired[keys.index(CANARY)]["metadata"]["annotations"]


def test_a_held_deployment_is_not_applied_and_a_canary_no_longer_wanted_is_pruned() -> None:
    live_main = {**rendered(MAIN), "spec": {**rendered(MAIN)["spec"], "replicas": 9}}  # differs: would be applied
    live_canary = with_applied_hash(canary_deployment(rendered(MAIN)))
    children = {MAIN: live_main, CANARY: live_canary}
    baking = rollout_objects(STACK, RENDERED, {"ai-engine": Bake("r", "the bake time")})
    writes = plan_child_writes(baking.desired, [], children, {}, {}, "", baking.held)
    applied = [key_of(a.obj) for a in writes.actions if hasattr(a, "obj")]
    assert MAIN not in applied and CANARY not in applied  # held; the canary is as rendered
    assert CANARY not in {d.key for d in prunes(STACK, baking.desired, children)}
    done = rollout_objects(STACK, RENDERED, {"ai-engine": Finish("r", EVENT)})
    assert [d.key for d in prunes(STACK, done.desired, children)] == [CANARY]  # Deployments are prunable
    writes = plan_child_writes(done.desired, [], children, {}, {}, "", done.held)
    assert MAIN in [key_of(a.obj) for a in writes.actions if hasattr(a, "obj")]


def live(obj: dict[str, Any], **status: Any) -> dict[str, Any]:
    return {**obj, "metadata": {**obj["metadata"], "generation": 1}, "status": {"observedGeneration": 1, **status}}


def test_the_observation_reads_the_live_revision_and_the_canary_pod_of_its_revision() -> None:
    old_main = live(rendered(MAIN), replicas=2, updatedReplicas=2, readyReplicas=2, availableReplicas=2)
    old_main["metadata"]["annotations"] = {Annotation.REVISION: "old"}
    canary = live(with_applied_hash(canary_deployment(rendered(MAIN))))
    new = canary["metadata"]["annotations"][Annotation.REVISION]
    children = {MAIN: old_main, CANARY: canary, ("Pod", "p"): canary_pod(new, restarts=2)}
    state = observe(children)
    observation = observe_rollout(STACK, "ai-engine", state, {"ai-engine": "HEALTHY"})
    assert (observation.main_exists, observation.live_revision, observation.main_complete) == (True, "old", True)
    assert observation.canary_revision == new and observation.canary_pod is not None
    pod = observation.canary_pod
    assert (pod.ready, pod.restarts, pod.crash_looping, pod.health) == (True, 2, True, "HEALTHY")
    assert canary_pod_ips(STACK, state) == {"ai-engine": "10.0.0.7"}
    assert observe_rollout(STACK, "ai-engine", state, {}).canary_pod.health == "UNREACHABLE"  # type: ignore[union-attr]
    assert observe_rollout(STACK, "ai-engine", state, None).canary_pod.health is None  # type: ignore[union-attr]
    # A pod of an older canary revision, or one being deleted, is not the canary's pod.
    for stale in (canary_pod("other"), canary_pod(new, deleting=True)):
        other = observe({**children, ("Pod", "p"): stale})
        assert observe_rollout(STACK, "ai-engine", other, None).canary_pod is None
        assert canary_pod_ips(STACK, other) == {}


def test_the_canary_counts_neither_in_its_services_health_nor_in_its_failures() -> None:
    canary = with_applied_hash(canary_deployment(rendered(MAIN)))
    pod = pod_state(canary_pod("r", restarts=3))
    assert pod.canary and pod.component == "ai-engine" and pod.problem is not None
    assert serving_pod_ips([pod], "ai-engine") == []
    failing = {**canary, "status": {"conditions": [{"type": "ReplicaFailure", "status": "True", "reason": "X"}]}}
    assert workload_state(failing).canary
    assert pod_failures([pod], [workload_state(failing)]) == {}
    assert pod.labels[Label.NAME] == "ai-engine-canary"


def test_plan_rollouts_starts_one_canary_for_the_changed_service_only() -> None:
    children: dict[tuple[str, str], Any] = {}
    for obj in RENDERED:
        if obj["kind"] == "Deployment":
            n = obj["spec"]["replicas"]
            children[key_of(obj)] = live(obj, replicas=n, updatedReplicas=n, readyReplicas=n, availableReplicas=n)
    children[MAIN]["metadata"]["annotations"] = {Annotation.REVISION: "old"}
    plan = plan_rollouts(STACK, RENDERED, observe(children), None, TradingStackStatus(), NOW)
    assert set(plan.decisions) == {s.name for s in STACK.spec.services}
    assert isinstance(plan.decisions["ai-engine"], StartCanary)
    assert all(isinstance(d, ApplyMain) for name, d in plan.decisions.items() if name != "ai-engine")
    assert [e.reason for e in plan.events] == ["RolloutStarted"]
    portfolio = rendered(("Deployment", "quantum-trader-portfolio"))["metadata"]["annotations"][Annotation.REVISION]
    assert plan.rollouts["ai-engine"].step == "Baking"
    assert plan.rollouts["portfolio"] == RolloutStatus(current_revision=portfolio, last_good_revision=portfolio)
