"""The write planner of a reconcile pass: which writes, which children are left alone, and in which order."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.unit.test_ownership import UID, example, obj, ref, secrets_for
from tradingstack.api import TradingStackStatus
from tradingstack.api.status import Condition, Phase
from tradingstack.components import render
from tradingstack.kube.actions import (
    Action,
    Apply,
    ChildKey,
    CreateSecret,
    Delete,
    MergePatch,
    Obj,
    PostEvent,
    WriteStatus,
    key_of,
)
from tradingstack.reconcile.diff import with_applied_hash
from tradingstack.reconcile.ownership import NameConflict
from tradingstack.reconcile.plan import (
    apply_errors,
    new_problem_events,
    plan_child_writes,
    plan_follow_ups,
    plan_status_write,
    prunes,
    reported_problems,
    status_document,
)

STACK = example()
DESIRED = [with_applied_hash(o) for o in render(STACK, STACK.owner_reference())]
SECRETS = secrets_for("Retain")
LIVE: dict[ChildKey, Obj] = {key_of(o): {**o, "status": {}} for o in DESIRED + SECRETS}
"""A settled stack: every child as rendered (plus what the server adds), the generated Secrets created."""


def without(children: dict[ChildKey, Obj], *keys: ChildKey) -> dict[ChildKey, Obj]:
    return {key: live for key, live in children.items() if key not in keys}


def applied(actions: list[Action]) -> list[ChildKey]:
    return [a.key for a in actions if isinstance(a, Apply)]


def test_a_settled_stack_plans_no_write() -> None:
    plan = plan_child_writes(DESIRED, SECRETS, LIVE, {}, {}, reported="")
    assert plan.actions == [] and plan.blocked == {}
    assert plan_follow_ups(STACK, DESIRED, SECRETS, LIVE, [], reported="") == []


def test_only_a_missing_or_changed_child_is_applied_and_only_a_missing_secret_created() -> None:
    drifted = {**LIVE[("Service", "s-api")], "spec": {"ports": []}}
    children = {**without(LIVE, ("Deployment", "s-api"), ("Secret", "s-redis")), ("Service", "s-api"): drifted}
    plan = plan_child_writes(DESIRED, SECRETS, children, {}, {}, reported="")
    assert plan.actions == [
        CreateSecret(SECRETS[0]),
        Apply(next(o for o in DESIRED if key_of(o) == ("Service", "s-api"))),
        Apply(next(o for o in DESIRED if key_of(o) == ("Deployment", "s-api"))),
    ]


def test_a_name_held_by_someone_else_is_neither_applied_nor_created() -> None:
    taken = {("ConfigMap", "s-gateway"): NameConflict("ConfigMap", "s-gateway", "not created by this stack")}
    plan = plan_child_writes(DESIRED, SECRETS, {}, taken, {}, reported="")
    assert ("ConfigMap", "s-gateway") not in applied(plan.actions)
    taken_secret = {("Secret", "s-redis"): NameConflict("Secret", "s-redis", "not created by this stack")}
    plan = plan_child_writes(DESIRED, SECRETS, {}, taken_secret, {}, reported="")
    assert [a.key for a in plan.actions if isinstance(a, CreateSecret)] == [("Secret", "s-postgres")]


def test_a_child_whose_pods_would_read_an_unusable_secret_is_blocked_not_applied() -> None:
    taken = {("Secret", "s-redis"): NameConflict("Secret", "s-redis", "not created by this stack")}
    plan = plan_child_writes(DESIRED, SECRETS, {}, taken, {}, reported="")
    assert plan.blocked[("Deployment", "s-api")] == "not applied, its pods would read Secret/s-redis"
    assert not set(plan.blocked) & set(applied(plan.actions))
    # The same for a user Secret (existingSecret) that is missing or lacks keys.
    problems = {"s-postgres": "Secret/s-postgres (existingSecret) does not exist"}
    plan = plan_child_writes(DESIRED, SECRETS, LIVE, {}, problems, reported="")
    assert plan.blocked == {}, "an unchanged child is not written, so it is not blocked either"
    plan = plan_child_writes(DESIRED, SECRETS, without(LIVE, ("Deployment", "s-api")), {}, problems, reported="")
    assert plan.blocked == {("Deployment", "s-api"): "not applied, its pods would read Secret/s-postgres"}


def test_a_problem_gets_one_event_the_pass_it_is_new() -> None:
    degraded = {"type": "Degraded", "status": "True", "reason": "NameConflict", "message": "ConfigMap/a exists",
                "lastTransitionTime": "2026-12-03T12:00:00Z"}  # fmt: skip
    previous = TradingStackStatus.model_validate({"conditions": [degraded]})
    reported = reported_problems(previous)
    assert new_problem_events(reported, "NameConflict", ["ConfigMap/a exists", "Service/b exists"]) == [
        PostEvent("Warning", "NameConflict", "Service/b exists")
    ]
    assert reported_problems(TradingStackStatus()) == ""


def test_the_first_batch_reports_then_creates_then_applies() -> None:
    taken = {("ConfigMap", "s-gateway"): NameConflict("ConfigMap", "s-gateway", "not created by this stack")}
    problems = {"mine": "Secret/mine (existingSecret) does not exist"}
    plan = plan_child_writes(DESIRED, SECRETS, {}, taken, problems, reported="")
    kinds = [type(a).__name__ for a in plan.actions]
    assert kinds == ["PostEvent", "PostEvent", "CreateSecret", "CreateSecret"] + ["Apply"] * (len(DESIRED) - 1)
    assert [a.reason for a in plan.actions if isinstance(a, PostEvent)] == ["NameConflict", "SecretInvalid"]
    assert applied(plan.actions) == [key_of(o) for o in DESIRED if key_of(o) != ("ConfigMap", "s-gateway")]


def test_apply_errors_follow_the_rendered_order_whether_blocked_or_refused() -> None:
    errors = apply_errors(
        DESIRED,
        blocked={("Deployment", "s-api"): "not applied, its pods would read Secret/x"},
        refused={("ConfigMap", "s-gateway"): "422 Invalid"},
    )
    assert errors == ["ConfigMap/s-gateway: 422 Invalid", "Deployment/s-api: not applied, its pods would read Secret/x"]


def test_only_the_stacks_own_children_of_a_prunable_kind_no_longer_rendered_are_deleted() -> None:
    mine = [ref(UID)]
    children = {
        **LIVE,
        ("ConfigMap", "s-old"): obj("ConfigMap", "s-old", ownerReferences=mine),
        ("ConfigMap", "s-users"): obj("ConfigMap", "s-users"),  # no controller: not the stack's to delete
        ("PersistentVolumeClaim", "s-data"): obj("PersistentVolumeClaim", "s-data", ownerReferences=mine),
        ("Secret", "s-old-secret"): obj("Secret", "s-old-secret", ownerReferences=mine),
    }
    assert prunes(STACK, DESIRED, children) == [Delete("ConfigMap", "s-old", "n")]


def test_the_second_batch_reports_refusals_then_prunes_then_follows_the_deletion_policy() -> None:
    owned_secret = {**LIVE[("Secret", "s-redis")], "metadata": {"name": "s-redis", "ownerReferences": [ref(UID)]}}
    children = {
        **LIVE,
        ("Secret", "s-redis"): owned_secret,
        ("ConfigMap", "s-old"): obj("ConfigMap", "s-old", ownerReferences=[ref(UID)]),
    }
    actions = plan_follow_ups(STACK, DESIRED, SECRETS, children, ["ConfigMap/s-gateway: 422 Invalid"], reported="")
    assert actions == [
        PostEvent("Warning", "ApplyFailed", "ConfigMap/s-gateway: 422 Invalid"),
        Delete("ConfigMap", "s-old", "n"),
        MergePatch("Secret", "s-redis", "n", {"metadata": {"ownerReferences": []}}),
    ]
    # A refusal already in the Degraded message is not posted again.
    again = plan_follow_ups(STACK, DESIRED, SECRETS, children, ["ConfigMap/s-gateway: 422 Invalid"],
                            reported="ConfigMap/s-gateway: 422 Invalid")  # fmt: skip
    assert not any(isinstance(a, PostEvent) for a in again)


def status(phase: Phase, degraded_reason: str = "Progressing") -> TradingStackStatus:
    at = datetime(2026, 12, 3, tzinfo=UTC)
    return TradingStackStatus(
        observed_generation=1,
        phase=phase,
        conditions=[
            Condition(type="Ready", status="True" if phase == "Ready" else "False", reason="R", message="all ready",
                      last_transition_time=at),
            Condition(type="Degraded", status="True" if phase in ("Degraded", "Failed") else "False",
                      reason=degraded_reason, message="what is wrong", last_transition_time=at),
        ],
    )  # fmt: skip


def test_an_unchanged_status_is_not_written_again() -> None:
    assert plan_status_write("n", "s", status("Ready"), status("Ready"), has_status=True) == []


def test_a_stack_without_a_status_gets_its_first_one_even_when_it_equals_the_default() -> None:
    default = TradingStackStatus()
    assert plan_status_write("n", "s", default, default, has_status=False) == [
        WriteStatus("n", "s", status_document(default))
    ]


def test_a_changed_status_is_written_then_a_new_phase_announced() -> None:
    ready = status("Ready")
    assert plan_status_write("n", "s", status("Progressing"), ready, has_status=True) == [
        WriteStatus("n", "s", status_document(ready)),
        PostEvent("Normal", "Ready", "all ready"),
    ]
    degraded = status("Degraded", "ServiceUnhealthy")
    assert plan_status_write("n", "s", ready, degraded, has_status=True)[1:] == [
        PostEvent("Warning", "ServiceUnhealthy", "what is wrong")
    ]


def test_a_phase_change_whose_problems_had_their_own_events_is_not_announced_again() -> None:
    for reason in ("ApplyFailed", "NameConflict", "SecretInvalid"):
        degraded = status("Degraded", reason)
        assert plan_status_write("n", "s", status("Ready"), degraded, has_status=True) == [
            WriteStatus("n", "s", status_document(degraded))
        ]


def test_a_changed_status_in_the_same_phase_is_written_without_an_event() -> None:
    before, after = status("Progressing"), status("Progressing").model_copy(update={"ready_summary": "1/2"})
    assert plan_status_write("n", "s", before, after, has_status=True) == [
        WriteStatus("n", "s", status_document(after))
    ]
