"""The rollout planner step by step, with an injected clock: every branch of `plan_rollout_step`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tradingstack.api import ServiceSpec
from tradingstack.api.spec import RolloutSpec
from tradingstack.api.status import RolloutStatus
from tradingstack.reconcile.rollout import (
    ApplyMain,
    Bake,
    CanaryPod,
    Finish,
    HoldBad,
    HoldClosed,
    HoldHalted,
    Promote,
    RollBack,
    RolloutObservation,
    RolloutStep,
    StartCanary,
    plan_rollout_step,
)

T0 = datetime(2026, 12, 3, 14, 30, tzinfo=UTC)
OLD, NEW, NEWER = "aaaaaaaaaa", "bbbbbbbbbb", "cccccccccc"
SPEC = RolloutSpec(bake_seconds=60, deadline_seconds=600)
SERVICE = ServiceSpec.model_validate({"name": "api", "image": "example/api:2", "port": 8000, "replicas": 3})


def healthy_pod(**changes: object) -> CanaryPod:
    fields: dict[str, object] = {"ready": True, "restarts": 0, "crash_looping": False, "health": "HEALTHY"}
    return CanaryPod(**{**fields, **changes})  # type: ignore[arg-type]


def running(
    live: str = OLD, *, complete: bool = True, canary: str | None = None, pod: CanaryPod | None = None
) -> RolloutObservation:
    return RolloutObservation(
        main_exists=True, live_revision=live, main_complete=complete, canary_revision=canary, canary_pod=pod
    )


def step(
    observation: RolloutObservation,
    previous: RolloutStatus | None = None,
    now: datetime = T0,
    desired: str = NEW,
    service: ServiceSpec = SERVICE,
) -> RolloutStep:
    return plan_rollout_step(service, desired, observation, previous or RolloutStatus(), SPEC, now)


def baking(started: datetime = T0, healthy_since: datetime | None = None) -> RolloutStatus:
    return RolloutStatus(
        current_revision=OLD, target_revision=NEW, step="Baking", started_at=started, healthy_since=healthy_since
    )


def test_a_first_deploy_is_applied_directly() -> None:
    result = step(RolloutObservation(main_exists=False, live_revision=None))
    assert isinstance(result.decision, ApplyMain) and not result.decision.hold_main and not result.decision.canary
    assert result.status.step == "Idle" and result.status.target_revision == NEW


def test_a_deployment_without_a_revision_from_an_older_operator_is_applied_directly() -> None:
    result = step(running(live=None))  # type: ignore[arg-type]
    assert isinstance(result.decision, ApplyMain) and "older operator" in result.decision.reason


def test_a_service_scaled_to_zero_is_applied_directly() -> None:
    zero = SERVICE.model_copy(update={"replicas": 0})
    assert isinstance(step(running(), service=zero).decision, ApplyMain)


def test_an_unchanged_revision_is_idle_and_records_the_last_good_one_once_rolled_out() -> None:
    result = step(running(live=NEW))
    assert isinstance(result.decision, ApplyMain)
    assert result.status == RolloutStatus(current_revision=NEW, last_good_revision=NEW)
    # The same observation again: the same status, so the pass writes nothing.
    assert step(running(live=NEW), result.status, now=T0 + timedelta(hours=1)).status == result.status
    assert step(running(live=NEW, complete=False)).status.last_good_revision is None


def test_a_changed_template_starts_a_canary_and_holds_the_deployment() -> None:
    result = step(running(), RolloutStatus(current_revision=OLD, last_good_revision=OLD))
    decision = result.decision
    assert isinstance(decision, StartCanary) and decision.hold_main and decision.canary
    assert decision.event.reason == "RolloutStarted" and decision.event.event_type == "Normal"
    assert result.status.step == "Baking" and result.status.target_revision == NEW
    assert result.status.started_at == T0 and result.status.healthy_since is None
    assert result.status.last_good_revision == OLD


def test_the_canary_not_there_yet_is_waited_for() -> None:
    result = step(running(), baking(), now=T0 + timedelta(seconds=20))
    assert isinstance(result.decision, Bake) and result.decision.hold_main and result.decision.canary
    assert result.decision.waiting_for == "the canary pod"
    assert result.status.started_at == T0


def test_a_canary_of_another_revision_is_not_judged() -> None:
    crashed = healthy_pod(restarts=3, crash_looping=True)
    result = step(running(canary=OLD, pod=crashed), baking(), now=T0 + timedelta(seconds=20))
    assert isinstance(result.decision, Bake)


def test_healthy_for_less_than_the_bake_time_waits_and_records_since_when() -> None:
    first = step(running(canary=NEW, pod=healthy_pod()), baking(), now=T0 + timedelta(seconds=30))
    assert isinstance(first.decision, Bake) and first.decision.waiting_for == "the bake time"
    assert first.status.healthy_since == T0 + timedelta(seconds=30)
    later = step(running(canary=NEW, pod=healthy_pod()), first.status, now=T0 + timedelta(seconds=89))
    assert isinstance(later.decision, Bake)
    assert later.status == first.status  # nothing changed: no status write while it bakes


def test_healthy_for_the_bake_time_promotes() -> None:
    since = T0 + timedelta(seconds=30)
    result = step(
        running(canary=NEW, pod=healthy_pod()), baking(healthy_since=since), now=since + timedelta(seconds=60)
    )
    assert isinstance(result.decision, Promote) and not result.decision.hold_main and not result.decision.canary
    assert result.status.step == "Promoting" and result.status.healthy_since == since


def test_a_bake_time_of_zero_promotes_at_the_first_healthy_answer() -> None:
    result = plan_rollout_step(
        SERVICE, NEW, running(canary=NEW, pod=healthy_pod()), baking(), RolloutSpec(bake_seconds=0), T0
    )
    assert isinstance(result.decision, Promote)


@pytest.mark.parametrize("answer", ["DEGRADED", "UNREACHABLE"])
def test_an_answer_other_than_healthy_resets_the_bake(answer: str) -> None:
    since = T0 + timedelta(seconds=30)
    result = step(
        running(canary=NEW, pod=healthy_pod(health=answer)), baking(healthy_since=since), now=T0 + timedelta(seconds=80)
    )
    assert isinstance(result.decision, Bake) and result.status.healthy_since is None
    assert answer in result.decision.waiting_for


def test_a_canary_not_ready_resets_the_bake() -> None:
    since = T0 + timedelta(seconds=30)
    result = step(
        running(canary=NEW, pod=healthy_pod(ready=False)), baking(healthy_since=since), now=T0 + timedelta(seconds=80)
    )
    assert isinstance(result.decision, Bake) and result.status.healthy_since is None


def test_without_health_documents_ready_alone_gates_the_bake() -> None:
    since = T0 + timedelta(seconds=30)
    result = step(
        running(canary=NEW, pod=healthy_pod(health=None)),
        baking(healthy_since=since),
        now=since + timedelta(seconds=60),
    )
    assert isinstance(result.decision, Promote)


def assert_rolled_back(result: RolloutStep, why: str) -> None:
    decision = result.decision
    assert isinstance(decision, RollBack) and decision.hold_main and not decision.canary
    assert why in decision.reason
    assert decision.event.event_type == "Warning" and decision.event.reason == "RolloutRolledBack"
    assert "api" in decision.event.message and NEW in decision.event.message
    assert result.status.step == "RolledBack" and result.status.bad_revision == NEW
    assert result.status.message == decision.event.message


def test_an_unhealthy_canary_is_rolled_back() -> None:
    result = step(
        running(canary=NEW, pod=healthy_pod(health="UNHEALTHY", ready=False)), baking(), now=T0 + timedelta(seconds=40)
    )
    assert_rolled_back(result, "UNHEALTHY")


def test_an_unhealthy_canary_is_rolled_back_even_while_it_bakes() -> None:
    since = T0 + timedelta(seconds=10)
    result = step(
        running(canary=NEW, pod=healthy_pod(health="UNHEALTHY")),
        baking(healthy_since=since),
        now=T0 + timedelta(seconds=40),
    )
    assert_rolled_back(result, "UNHEALTHY")


@pytest.mark.parametrize(
    ("pod", "why"),
    [
        (healthy_pod(ready=False, health="UNREACHABLE", crash_looping=True, restarts=2), "crash-looping"),
        (healthy_pod(restarts=1), "restarted 1 time(s)"),
    ],
)
def test_a_crash_looping_canary_is_rolled_back(pod: CanaryPod, why: str) -> None:
    assert_rolled_back(step(running(canary=NEW, pod=pod), baking(), now=T0 + timedelta(seconds=40)), why)


def test_a_canary_not_ready_and_healthy_by_the_deadline_is_rolled_back() -> None:
    pending = healthy_pod(ready=False, health="UNREACHABLE", problem="pod api-canary-x: Unschedulable: 0/1 nodes")
    before = step(running(canary=NEW, pod=pending), baking(), now=T0 + timedelta(seconds=599))
    assert isinstance(before.decision, Bake) and "Unschedulable" in before.status.message
    result = step(running(canary=NEW, pod=pending), baking(), now=T0 + timedelta(seconds=600))
    assert_rolled_back(result, "within 600s: pod api-canary-x: Unschedulable")
    assert_rolled_back(step(running(), baking(), now=T0 + timedelta(seconds=600)), "within 600s")


def test_a_canary_healthy_at_the_deadline_goes_on_baking() -> None:
    since = T0 + timedelta(seconds=590)
    result = step(running(canary=NEW, pod=healthy_pod()), baking(healthy_since=since), now=T0 + timedelta(seconds=620))
    assert isinstance(result.decision, Bake)


def rolled_back() -> RolloutStatus:
    result = step(running(canary=NEW, pod=healthy_pod(health="UNHEALTHY")), baking(), now=T0 + timedelta(seconds=40))
    return result.status


def test_a_rolled_back_revision_is_not_tried_again() -> None:
    status = rolled_back()
    for minutes in (1, 60, 24 * 60):
        result = step(running(), status, now=T0 + timedelta(minutes=minutes))
        assert isinstance(result.decision, HoldBad) and result.decision.hold_main and not result.decision.canary
        assert result.status == status  # no write while the spec stays


def test_a_new_spec_after_a_rollback_starts_a_new_canary() -> None:
    later = T0 + timedelta(hours=1)
    result = step(running(), rolled_back(), now=later, desired=NEWER)
    assert isinstance(result.decision, StartCanary) and result.decision.revision == NEWER
    assert result.status.step == "Baking" and result.status.started_at == later
    assert result.status.bad_revision is None and result.status.target_revision == NEWER


def test_reverting_the_spec_after_a_rollback_is_idle_again() -> None:
    result = step(running(), rolled_back(), desired=OLD)
    assert isinstance(result.decision, ApplyMain)
    assert result.status.step == "Idle" and result.status.bad_revision is None and result.status.message == ""


def test_a_spec_reverted_while_the_canary_bakes_drops_the_canary() -> None:
    result = step(running(canary=NEW, pod=healthy_pod()), baking(), desired=OLD)
    assert isinstance(result.decision, ApplyMain) and not result.decision.canary
    assert result.status.step == "Idle"


def test_a_spec_changed_while_the_canary_bakes_restarts_the_bake() -> None:
    later = T0 + timedelta(seconds=50)
    result = step(running(canary=NEW, pod=healthy_pod()), baking(healthy_since=T0), now=later, desired=NEWER)
    assert isinstance(result.decision, StartCanary) and result.status.started_at == later
    assert result.status.healthy_since is None


def promoting() -> RolloutStatus:
    return baking(healthy_since=T0).model_copy(update={"step": "Promoting"})


def test_promotion_waits_for_the_deployment_to_complete_before_deleting_the_canary() -> None:
    rolling = step(running(live=NEW, complete=False, canary=NEW, pod=healthy_pod()), promoting())
    assert isinstance(rolling.decision, Promote) and not rolling.decision.canary and not rolling.decision.hold_main
    assert rolling.status.step == "Promoting" and rolling.status.current_revision == NEW
    done = step(running(live=NEW, complete=True, canary=NEW, pod=healthy_pod()), rolling.status)
    assert isinstance(done.decision, Finish) and not done.decision.canary and not done.decision.hold_main
    assert done.decision.event.reason == "RolloutSucceeded"
    assert done.status.step == "Idle" and done.status.last_good_revision == NEW
    assert done.status.started_at is None and done.status.healthy_since is None
    after = step(running(live=NEW), done.status, now=T0 + timedelta(hours=1))
    assert isinstance(after.decision, ApplyMain) and after.status == done.status


def test_a_promotion_whose_apply_did_not_take_applies_again() -> None:
    result = step(running(live=OLD, canary=NEW, pod=healthy_pod()), promoting())
    assert isinstance(result.decision, Promote) and result.status.step == "Promoting"


def test_a_long_kubelet_message_is_cut_to_fit_the_status() -> None:
    pending = healthy_pod(ready=False, health="UNREACHABLE", problem="ErrImagePull: " + "x" * 10000)
    result = step(running(canary=NEW, pod=pending), baking(), now=T0 + timedelta(seconds=600))
    assert isinstance(result.decision, RollBack) and len(result.status.message) == 1024
    RolloutStatus.model_validate(result.status.model_dump())


def test_a_deployment_at_zero_replicas_gets_the_new_revision_directly_after_a_resume() -> None:
    after_halt = RolloutObservation(main_exists=True, live_revision=OLD, main_complete=True, main_replicas=0)
    result = step(after_halt)
    assert isinstance(result.decision, ApplyMain) and "runs no pod" in result.decision.reason
    assert result.status.step == "Idle"


def test_no_rollout_starts_or_goes_on_while_the_stack_is_halted() -> None:
    halted = plan_rollout_step(SERVICE, NEW, running(), RolloutStatus(), SPEC, T0, halted=True)
    assert isinstance(halted.decision, HoldHalted) and halted.decision.hold_main and not halted.decision.canary
    assert "halted" in halted.status.message and halted.status.step == "Idle"
    # A canary that was baking is removed and its rollout starts afresh after the resume.
    was_baking = running(canary=NEW, pod=healthy_pod())
    held = plan_rollout_step(SERVICE, NEW, was_baking, baking(), SPEC, T0 + timedelta(seconds=30), halted=True)
    assert isinstance(held.decision, HoldHalted) and held.status.started_at is None
    resumed = step(was_baking, held.status, now=T0 + timedelta(minutes=30))
    assert isinstance(resumed.decision, StartCanary) and resumed.status.started_at == T0 + timedelta(minutes=30)
    # A halted haltable service sits at zero replicas: still held, not applied past the gate.
    at_zero = RolloutObservation(main_exists=True, live_revision=OLD, main_complete=True, main_replicas=0)
    assert isinstance(
        plan_rollout_step(SERVICE, NEW, at_zero, RolloutStatus(), SPEC, T0, halted=True).decision, HoldHalted
    )


CLOSED = "outside the maintenance windows"


def test_a_new_revision_of_a_disruptive_service_waits_while_maintenance_is_closed() -> None:
    held = plan_rollout_step(SERVICE, NEW, running(), RolloutStatus(), SPEC, T0, closed=CLOSED)
    assert isinstance(held.decision, HoldClosed) and held.decision.hold_main and not held.decision.canary
    assert held.status.step == "Pending" and held.status.target_revision == NEW
    assert held.status.message == f"revision {NEW} waits for maintenance: {CLOSED}"
    # The next pass, still closed: the same status (a resync writes nothing).
    again = plan_rollout_step(SERVICE, NEW, running(), held.status, SPEC, T0 + timedelta(minutes=5), closed=CLOSED)
    assert isinstance(again.decision, HoldClosed) and again.status == held.status
    # Maintenance opens: the canary starts.
    opened = plan_rollout_step(SERVICE, NEW, running(), held.status, SPEC, T0 + timedelta(hours=1))
    assert isinstance(opened.decision, StartCanary) and opened.status.step == "Baking"


def test_a_rollout_that_has_started_goes_on_when_maintenance_closes() -> None:
    later = T0 + timedelta(seconds=30)
    carried = plan_rollout_step(SERVICE, NEW, running(canary=NEW), baking(), SPEC, later, closed=CLOSED)
    assert isinstance(carried.decision, Bake)
    promoting = RolloutStatus(current_revision=OLD, target_revision=NEW, step="Promoting", started_at=T0)
    result = plan_rollout_step(SERVICE, NEW, running(complete=False), promoting, SPEC, later, closed=CLOSED)
    assert isinstance(result.decision, Promote)


def test_maintenance_does_not_hold_a_service_that_is_not_disruptive_or_a_first_deploy() -> None:
    calm = SERVICE.model_copy(update={"disruptive": False})
    assert isinstance(plan_rollout_step(calm, NEW, running(), RolloutStatus(), SPEC, T0, closed=CLOSED).decision,
                      StartCanary)  # fmt: skip
    first = RolloutObservation(main_exists=False, live_revision=None)
    assert isinstance(plan_rollout_step(SERVICE, NEW, first, RolloutStatus(), SPEC, T0, closed=CLOSED).decision,
                      ApplyMain)  # fmt: skip
