"""The restart planner driven tick by tick against simulated Deployments, as the operator's timer drives it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradingstack.api import TradingStack, TradingStackStatus
from tradingstack.api.spec import DEFAULT_RESTART_ORDER, HaltSpec, TradingStackSpec
from tradingstack.api.status import RestartsStatus
from tradingstack.components.observe import observe
from tradingstack.contract import Annotation
from tradingstack.kube.actions import RESTART_FIELD_MANAGER, Apply, Obj, PostEvent, WriteStatus
from tradingstack.reconcile.plan import status_document
from tradingstack.reconcile.restart_runner import plan_restarts, restart_stamp
from tradingstack.reconcile.restarts import (
    HALTED,
    DeploymentObservation,
    Fail,
    Finish,
    Idle,
    Paused,
    RestartStep,
    Skip,
    Stamp,
    Wait,
    manual_run_id,
    plan_restart_step,
)

SCHEDULED = datetime(2026, 11, 26, 4, 30, tzinfo=UTC)
RUN = "20261126T043000Z"
TICK = timedelta(seconds=15)


def stack(**restarts: Any) -> TradingStackSpec:
    services = [
        {"name": name, "image": f"example/{name}:1", "port": 8000, "replicas": 2} for name in DEFAULT_RESTART_ORDER
    ]
    return TradingStackSpec.model_validate({"services": services, "restarts": {"schedule": "30 4 * * *", **restarts}})


def settled(service: str, restarted_at: str | None = None) -> DeploymentObservation:
    return DeploymentObservation(
        service=service,
        restarted_at=restarted_at,
        generation=3,
        observed_generation=3,
        desired_replicas=2,
        replicas=2,
        updated_replicas=2,
        ready_replicas=2,
        available_replicas=2,
    )


@dataclass
class Cluster:
    """Deployments as the API server and the Deployment controller would evolve them."""

    deployments: dict[str, DeploymentObservation]
    stuck: frozenset[str] = frozenset()

    @classmethod
    def settled(cls, stuck: frozenset[str] = frozenset()) -> Cluster:
        return cls({name: settled(name, "20261125T043000Z") for name in DEFAULT_RESTART_ORDER}, stuck)

    def stamp(self, service: str, run: str) -> None:
        current = self.deployments[service]
        if current.restarted_at == run:  # server-side apply of an unchanged value changes nothing
            return
        self.deployments[service] = replace(current, restarted_at=run, generation=current.generation + 1)

    def roll(self) -> None:
        """One controller pass: a new template starts rolling; a rolling one finishes unless it is stuck."""
        for name, deployment in self.deployments.items():
            if deployment.observed_generation < deployment.generation:
                self.deployments[name] = replace(
                    deployment, observed_generation=deployment.generation, updated_replicas=1, replicas=3
                )
            elif deployment.updated_replicas < deployment.desired_replicas and name not in self.stuck:
                self.deployments[name] = settled(name, deployment.restarted_at)


@dataclass
class Operator:
    """The wiring: persist the status, carry out the decision, record what it did."""

    spec: TradingStackSpec
    cluster: Cluster
    status: RestartsStatus
    degraded: bool = False
    trigger: str | None = None

    def tick(self, now: datetime) -> RestartStep:
        step = plan_restart_step(
            self.spec,
            self.status,
            degraded=self.degraded,
            trigger=self.trigger,
            deployments=self.cluster.deployments.values(),
            now=now,
        )
        self.status = step.status
        if isinstance(step.decision, Stamp):
            self.cluster.stamp(step.decision.service, step.decision.run_id)
        return step

    def run_until_settled(self, start: datetime, ticks: int = 100) -> tuple[list[RestartStep], datetime]:
        """Tick (the controller rolling between ticks) until a run ends; returns every step and the time."""
        steps: list[RestartStep] = []
        now = start
        for _ in range(ticks):
            steps.append(self.tick(now))
            if isinstance(steps[-1].decision, Finish | Fail | Skip):
                return steps, now
            self.cluster.roll()
            now += TICK
        raise AssertionError(f"no run ended within {ticks} ticks: {steps[-3:]}")


def stamps(steps: list[RestartStep]) -> list[str]:
    return [step.decision.service for step in steps if isinstance(step.decision, Stamp)]


def test_idle_before_the_scheduled_time_reports_the_next_run() -> None:
    operator = Operator(stack(), Cluster.settled(), RestartsStatus(last_run=SCHEDULED - timedelta(days=1)))
    step = operator.tick(SCHEDULED - timedelta(minutes=5))
    assert step.decision == Idle(SCHEDULED)
    assert step.status.next_run == SCHEDULED and step.decision.event is None


def test_a_full_run_restarts_every_service_once_in_order() -> None:
    operator = Operator(stack(), Cluster.settled(), RestartsStatus(last_run=SCHEDULED - timedelta(days=1)))
    steps, end = operator.run_until_settled(SCHEDULED + timedelta(seconds=5))
    assert stamps(steps) == list(DEFAULT_RESTART_ORDER)
    assert all(operator.cluster.deployments[name].restarted_at == RUN for name in DEFAULT_RESTART_ORDER)
    # Only one service is ever in motion: each Wait is for the service stamped last.
    in_motion = ""
    for step in steps:
        if isinstance(step.decision, Stamp):
            in_motion = step.decision.service
        elif isinstance(step.decision, Wait):
            assert step.decision.service == in_motion
    finish = steps[-1].decision
    assert isinstance(finish, Finish) and finish.run_id == RUN and finish.event.event_type == "Normal"
    assert operator.status.last_run == SCHEDULED and operator.status.last_result == "Succeeded"
    assert operator.status.done == list(DEFAULT_RESTART_ORDER) and operator.status.in_progress is None
    assert operator.status.next_run == SCHEDULED + timedelta(days=1)
    assert isinstance(operator.tick(end + TICK).decision, Idle)


def test_an_operator_restarted_mid_run_resumes_without_a_second_stamp() -> None:
    operator = Operator(stack(), Cluster.settled(), RestartsStatus(last_run=SCHEDULED - timedelta(days=1)))
    now = SCHEDULED + timedelta(seconds=5)
    while stamps([operator.tick(now)]) != ["portfolio"]:
        operator.cluster.roll()
        now += TICK
    # A new operator process: only the persisted status and the cluster survive.
    restarted = Operator(operator.spec, operator.cluster, operator.status)
    resumed = restarted.tick(now + TICK)
    assert resumed.decision == Wait("portfolio", RUN, now + timedelta(seconds=600))
    steps, _ = restarted.run_until_settled(now + 2 * TICK)
    assert stamps(steps) == ["risk-safety", "monitoring-health", "execution"]


def test_a_stamp_whose_status_write_was_lost_is_not_repeated() -> None:
    operator = Operator(stack(), Cluster.settled(), RestartsStatus(last_run=SCHEDULED - timedelta(days=1)))
    before = operator.status
    first = operator.tick(SCHEDULED + timedelta(seconds=5))
    assert stamps([first]) == ["rl-training"]
    # The stamp reached the cluster but the operator died before writing the status.
    restarted = Operator(operator.spec, operator.cluster, before)
    resumed = restarted.tick(SCHEDULED + timedelta(seconds=20))
    assert isinstance(resumed.decision, Wait) and resumed.decision.service == "rl-training"
    steps, _ = restarted.run_until_settled(SCHEDULED + timedelta(seconds=35))
    assert stamps(steps) == list(DEFAULT_RESTART_ORDER[1:])


def test_a_service_that_never_becomes_ready_fails_the_run_at_its_deadline() -> None:
    cluster = Cluster.settled(stuck=frozenset({"portfolio"}))
    operator = Operator(
        stack(serviceReadyTimeoutSeconds=60), cluster, RestartsStatus(last_run=SCHEDULED - timedelta(days=1))
    )
    steps, end = operator.run_until_settled(SCHEDULED)
    assert stamps(steps) == ["rl-training", "ai-engine", "portfolio"]
    stamped_at = next(
        step.status.stamped_at
        for step in steps
        if isinstance(step.decision, Stamp) and step.decision.service == "portfolio"
    )
    assert isinstance(stamped_at, datetime) and end == stamped_at + timedelta(seconds=60)
    waits = [
        step.decision for step in steps if isinstance(step.decision, Wait) and step.decision.service == "portfolio"
    ]
    assert waits and all(wait.deadline == end for wait in waits)
    fail = steps[-1].decision
    assert isinstance(fail, Fail) and fail.service == "portfolio" and fail.run_id == RUN
    assert fail.event.event_type == "Warning" and fail.event.reason == "RestartFailed"
    assert "1/2 pods updated" in fail.reason
    assert "not restarted: risk-safety, monitoring-health, execution" in fail.event.message
    assert operator.status.last_result == "Failed" and operator.status.in_progress is None
    assert operator.status.done == ["rl-training", "ai-engine"]
    for untouched in ["risk-safety", "monitoring-health", "execution"]:
        assert operator.cluster.deployments[untouched].restarted_at == "20261125T043000Z"
    later = [operator.tick(end + n * TICK) for n in range(1, 5)]
    assert all(isinstance(step.decision, Idle) for step in later)


def test_an_unready_health_document_holds_the_run() -> None:
    cluster = Cluster.settled()
    cluster.deployments["rl-training"] = replace(settled("rl-training", RUN), health_ready=False)
    status = RestartsStatus(last_run=SCHEDULED, run_id=RUN, in_progress="rl-training", stamped_at=SCHEDULED)
    step = Operator(stack(), cluster, status).tick(SCHEDULED + timedelta(seconds=30))
    assert step.decision == Wait("rl-training", RUN, SCHEDULED + timedelta(seconds=600))


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"generation": 4}, "the Deployment controller has not observed the new pod template yet"),
        ({"updated_replicas": 1}, "1/2 pods updated"),
        ({"replicas": 3}, "1 old pod(s) still terminating"),
        ({"available_replicas": 1}, "1/2 updated pods available"),
        ({"ready_replicas": 1}, "1/2 pods ready"),
        ({"health_ready": False}, "its health document does not report it ready"),
        ({"health_ready": True}, None),
    ],
)
def test_readiness_follows_rollout_status_and_the_health_document(changes: dict[str, Any], reason: str | None) -> None:
    assert replace(settled("ai-engine"), **changes).not_ready_reason == reason


def test_a_missing_deployment_fails_the_run() -> None:
    cluster = Cluster.settled()
    del cluster.deployments["rl-training"]
    step = Operator(stack(), cluster, RestartsStatus()).tick(SCHEDULED)
    assert isinstance(step.decision, Fail) and step.decision.reason == "its Deployment was not found"


def test_a_degraded_stack_skips_the_run_with_an_event() -> None:
    operator = Operator(
        stack(), Cluster.settled(), RestartsStatus(last_run=SCHEDULED - timedelta(days=1)), degraded=True
    )
    step = operator.tick(SCHEDULED + timedelta(seconds=5))
    assert isinstance(step.decision, Skip) and step.decision.run_id == RUN
    assert step.decision.event.event_type == "Warning" and step.decision.event.reason == "RestartSkipped"
    assert step.status.last_run == SCHEDULED and step.status.last_result == "Skipped"
    # The skipped run is not started later in its window once the stack recovers.
    operator.degraded = False
    assert isinstance(operator.tick(SCHEDULED + timedelta(minutes=10)).decision, Idle)
    assert all(d.restarted_at == "20261125T043000Z" for d in operator.cluster.deployments.values())


def test_a_degraded_stack_is_restarted_when_skipping_is_off() -> None:
    operator = Operator(stack(skipWhenDegraded=False), Cluster.settled(), RestartsStatus(), degraded=True)
    assert stamps([operator.tick(SCHEDULED)]) == ["rl-training"]


def test_a_manual_trigger_runs_once_per_value() -> None:
    midday = SCHEDULED + timedelta(hours=6)
    operator = Operator(stack(enabled=False), Cluster.settled(), RestartsStatus(last_run=SCHEDULED), trigger="please")
    steps, end = operator.run_until_settled(midday)
    run = manual_run_id("please")
    assert stamps(steps) == list(DEFAULT_RESTART_ORDER)
    assert isinstance(steps[-1].decision, Finish) and steps[-1].decision.run_id == run
    assert operator.status.handled_trigger == "please" and operator.status.last_run == midday
    assert [operator.tick(end + n * TICK).decision for n in (1, 2)] == [Idle(None), Idle(None)]
    operator.trigger = "again"
    assert stamps([operator.tick(end + 3 * TICK)]) == ["rl-training"]
    assert operator.cluster.deployments["rl-training"].restarted_at == manual_run_id("again")


def test_a_trigger_during_a_run_starts_after_it_and_a_due_run_is_covered_by_a_trigger() -> None:
    operator = Operator(stack(), Cluster.settled(), RestartsStatus(last_run=SCHEDULED - timedelta(days=1)))
    operator.tick(SCHEDULED)
    operator.trigger = "now"
    steps, end = operator.run_until_settled(SCHEDULED + TICK)
    assert stamps(steps) == list(DEFAULT_RESTART_ORDER[1:])
    assert isinstance(steps[-1].decision, Finish) and steps[-1].decision.run_id == RUN
    manual, _ = operator.run_until_settled(end + TICK)
    assert isinstance(manual[-1].decision, Finish) and manual[-1].decision.run_id == manual_run_id("now")
    # A trigger pending when the schedule is due runs once and stands for the scheduled run as well.
    both = Operator(stack(), Cluster.settled(), RestartsStatus(last_run=SCHEDULED - timedelta(days=1)), trigger="x")
    steps, end = both.run_until_settled(SCHEDULED + timedelta(seconds=5))
    assert stamps(steps) == list(DEFAULT_RESTART_ORDER)
    assert isinstance(both.tick(end + TICK).decision, Idle)


def test_nothing_to_restart_finishes_at_once() -> None:
    operator = Operator(stack(exclude=list(DEFAULT_RESTART_ORDER)), Cluster.settled(), RestartsStatus())
    step = operator.tick(SCHEDULED)
    assert isinstance(step.decision, Finish) and step.status.done == []


restart_annotations = st.sampled_from([None, "20261125T043000Z", RUN])


@st.composite
def observations(draw: st.DrawFn, service: str) -> DeploymentObservation:
    generation = draw(st.integers(1, 5))
    desired = draw(st.integers(1, 3))
    return DeploymentObservation(
        service=service,
        restarted_at=draw(restart_annotations),
        generation=generation,
        observed_generation=draw(st.integers(generation - 1, generation)),
        desired_replicas=desired,
        replicas=draw(st.integers(0, desired + 1)),
        updated_replicas=draw(st.integers(0, desired)),
        ready_replicas=draw(st.integers(0, desired)),
        available_replicas=draw(st.integers(0, desired)),
        health_ready=draw(st.sampled_from([None, True, False])),
    )


@given(
    st.tuples(*(observations(name) for name in DEFAULT_RESTART_ORDER)),
    st.lists(st.sampled_from(DEFAULT_RESTART_ORDER), unique=True),
    st.sampled_from([None, *DEFAULT_RESTART_ORDER]),
    st.integers(0, 3600),
    st.booleans(),
)
def test_the_planner_never_stamps_a_service_already_carrying_the_run_id(
    deployments: tuple[DeploymentObservation, ...],
    done: list[str],
    in_progress: str | None,
    elapsed: int,
    degraded: bool,
) -> None:
    status = RestartsStatus(
        last_run=SCHEDULED,
        run_id=RUN,
        in_progress=in_progress,
        stamped_at=SCHEDULED if in_progress else None,
        done=done,
    )
    step = plan_restart_step(
        stack(),
        status,
        degraded=degraded,
        trigger=None,
        deployments=deployments,
        now=SCHEDULED + timedelta(seconds=elapsed),
    )
    by_name = {deployment.service: deployment for deployment in deployments}
    decision = step.decision
    if isinstance(decision, Stamp):
        assert by_name[decision.service].restarted_at != decision.run_id
    if isinstance(decision, Stamp | Wait):
        # The service in motion is the first one of the order that is not done: one at a time, in order.
        assert decision.service == next(name for name in DEFAULT_RESTART_ORDER if name not in step.status.done)
        assert step.status.in_progress == decision.service


def test_a_stack_created_inside_the_window_waits_for_the_next_scheduled_time() -> None:
    created = SCHEDULED + timedelta(minutes=10)
    step = plan_restart_step(
        stack(),
        RestartsStatus(),
        degraded=False,
        trigger=None,
        deployments=Cluster.settled().deployments.values(),
        now=created + timedelta(seconds=30),
        created=created,
    )
    assert isinstance(step.decision, Idle) and step.decision.next_run == SCHEDULED + timedelta(days=1)
    without_creation_time = plan_restart_step(
        stack(),
        RestartsStatus(),
        degraded=False,
        trigger=None,
        deployments=Cluster.settled().deployments.values(),
        now=created + timedelta(seconds=30),
    )
    assert isinstance(without_creation_time.decision, Stamp)  # the window alone would have started a run


def triggered_stack(trigger: str) -> TradingStack:
    return TradingStack.model_validate(
        {
            "metadata": {
                "name": "qt",
                "namespace": "trading",
                "uid": "u",
                "annotations": {Annotation.RESTART_NOW: trigger},
            },
            "spec": stack().model_dump(mode="json", by_alias=True, exclude_none=True),
        }
    )


def live_deployment(name: str, restarted_at: str | None = None) -> Obj:
    annotations = {Annotation.RESTARTED_AT: restarted_at} if restarted_at else {}
    return {
        "kind": "Deployment",
        "metadata": {"name": name, "generation": 3},
        "spec": {"replicas": 2, "template": {"metadata": {"annotations": annotations}}},
        "status": {"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2,
                   "availableReplicas": 2},
    }  # fmt: skip


def test_a_stamp_is_planned_after_the_status_that_records_it_and_before_its_event() -> None:
    stack_ = triggered_stack("now-1")
    children = {("Deployment", f"qt-{s}"): live_deployment(f"qt-{s}") for s in DEFAULT_RESTART_ORDER}
    written = TradingStackStatus(phase="Ready")
    plan = plan_restarts(
        stack_, None, written, has_status=True, degraded=False, workloads=observe(children).workloads, now=SCHEDULED
    )
    first = plan.restarts.in_progress
    assert first == DEFAULT_RESTART_ORDER[0] and plan.written == written.model_copy(update={"restarts": plan.restarts})
    write, stamp, event = plan.actions
    assert write == WriteStatus("trading", "qt", status_document(plan.written))
    assert stamp == Apply(restart_stamp(stack_, first, manual_run_id("now-1")), field_manager=RESTART_FIELD_MANAGER)
    assert isinstance(event, PostEvent) and event.reason == "RestartingService"


def test_no_stamp_no_interim_status_write() -> None:
    # Every Deployment already carries the run's stamp and is ready: the run finishes with its Event only.
    stack_ = triggered_stack("now-1")
    run = manual_run_id("now-1")
    children = {("Deployment", f"qt-{s}"): live_deployment(f"qt-{s}", run) for s in DEFAULT_RESTART_ORDER}
    written = TradingStackStatus(phase="Ready")
    plan = plan_restarts(
        stack_, None, written, has_status=True, degraded=False, workloads=observe(children).workloads, now=SCHEDULED
    )
    assert plan.written is written and plan.restarts.last_result == "Succeeded"
    assert [type(a) for a in plan.actions] == [PostEvent]


def halted(spec: TradingStackSpec) -> TradingStackSpec:
    return spec.model_copy(update={"halt": HaltSpec(reason="exchange outage", requested_by="ops")})


def test_a_halted_stack_starts_no_run_and_says_why() -> None:
    operator = Operator(halted(stack()), Cluster.settled(), RestartsStatus(last_run=SCHEDULED - timedelta(days=1)))
    step = operator.tick(SCHEDULED + timedelta(seconds=5))
    assert isinstance(step.decision, Skip) and step.decision.reason == HALTED
    assert step.decision.event.reason == "RestartSkipped" and HALTED in step.decision.event.message
    assert step.status.paused == HALTED and step.status.last_result == "Skipped"
    # A trigger while halted is skipped as well (acted on once), and nothing is ever stamped.
    operator.trigger = "please"
    step = operator.tick(SCHEDULED + timedelta(minutes=1))
    assert isinstance(step.decision, Skip) and operator.status.handled_trigger == "please"
    assert all(d.restarted_at == "20261125T043000Z" for d in operator.cluster.deployments.values())
    # Lifted: paused clears, the skipped run is not caught up, the next day's runs normally.
    operator.spec = stack()
    step = operator.tick(SCHEDULED + timedelta(minutes=2))
    assert isinstance(step.decision, Idle) and step.status.paused is None
    assert stamps([operator.tick(SCHEDULED + timedelta(days=1))]) == ["rl-training"]


def test_a_run_in_progress_stamps_no_further_service_while_halted_and_resumes_after() -> None:
    operator = Operator(stack(), Cluster.settled(), RestartsStatus(last_run=SCHEDULED - timedelta(days=1)))
    assert stamps([operator.tick(SCHEDULED)]) == ["rl-training"]
    operator.cluster.roll()
    operator.cluster.roll()
    operator.spec = halted(stack())
    now = SCHEDULED + TICK
    first = operator.tick(now)
    assert isinstance(first.decision, Paused) and first.decision.service == "rl-training"
    assert first.decision.event is not None and first.decision.event.reason == "RestartPaused"
    assert first.status.paused == HALTED and first.status.in_progress == "rl-training"
    assert first.status.stamped_at is None  # the deadline counts anew on release
    # Paused for longer than serviceReadyTimeoutSeconds: no stamp, no failure, one Event only.
    later = [operator.tick(now + timedelta(minutes=m)) for m in (5, 20, 60)]
    assert all(isinstance(s.decision, Paused) and s.decision.event is None for s in later)
    assert operator.cluster.deployments["ai-engine"].restarted_at == "20261125T043000Z"
    operator.spec = stack()
    steps, _ = operator.run_until_settled(now + timedelta(minutes=61))
    assert stamps(steps) == list(DEFAULT_RESTART_ORDER[1:])
    assert isinstance(steps[-1].decision, Finish) and operator.status.paused is None
