"""The executor against a recording fake of kube: every action is carried out once, in the order given."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from tradingstack.errors import ApiPermanentError, ApiTemporaryError
from tradingstack.kube.actions import (
    RESTART_FIELD_MANAGER,
    Action,
    Apply,
    CreateSecret,
    Delete,
    EventType,
    MergePatch,
    Obj,
    PatchLabels,
    PostEvent,
    WriteStatus,
)
from tradingstack.kube.executor import Outcome, execute

BODY: dict[str, Any] = {"kind": "TradingStack", "metadata": {"name": "s", "namespace": "n"}}


def child(kind: str, name: str) -> Obj:
    return {"kind": kind, "metadata": {"name": name, "namespace": "n"}}


class RecordingKube:
    """Records every write it is asked for; `refuse` and `existing` say what the API server would answer."""

    def __init__(self, refuse: Mapping[str, Exception] | None = None, existing: frozenset[str] = frozenset()) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self._refuse = dict(refuse or {})
        self._existing = existing

    async def post_event(self, about: Mapping[str, Any], event_type: EventType, reason: str, message: str) -> None:
        self.calls.append(("event", about["metadata"]["name"], event_type, reason, message))

    async def create(self, obj: Obj) -> Obj | None:
        self.calls.append(("create", obj["metadata"]["name"]))
        return None if obj["metadata"]["name"] in self._existing else {**obj, "live": True}

    async def apply(self, obj: Obj, field_manager: str = "operator") -> Obj:
        self.calls.append(
            ("apply", obj["metadata"]["name"])
            if field_manager == "operator"
            else ("apply", obj["metadata"]["name"], field_manager)
        )
        if (error := self._refuse.get(obj["metadata"]["name"])) is not None:
            raise error
        return {**obj, "live": True}

    async def delete(self, kind: str, name: str, namespace: str) -> None:
        self.calls.append(("delete", kind, name, namespace))

    async def merge_patch(self, kind: str, name: str, namespace: str, patch: Mapping[str, Any]) -> None:
        self.calls.append(("patch", kind, name, namespace, dict(patch)))

    async def patch_labels(self, kind: str, name: str, namespace: str, labels: Mapping[str, str | None]) -> None:
        self.calls.append(("labels", kind, name, namespace, dict(labels)))

    async def replace_status(self, namespace: str, name: str, status: Obj) -> None:
        self.calls.append(("status", namespace, name, status))


async def test_actions_are_carried_out_in_the_order_given() -> None:
    kube = RecordingKube()
    patch: dict[str, Any] = {"metadata": {"ownerReferences": []}}
    actions: list[Action] = [
        PostEvent("Warning", "NameConflict", "ConfigMap/x exists"),
        CreateSecret(child("Secret", "s-redis")),
        Apply(child("Service", "s-api")),
        Delete("Deployment", "s-old", "n"),
        MergePatch("Secret", "s-redis", "n", patch),
    ]
    outcome = await execute(kube, BODY, actions)
    assert kube.calls == [
        ("event", "s", "Warning", "NameConflict", "ConfigMap/x exists"),
        ("create", "s-redis"),
        ("apply", "s-api"),
        ("delete", "Deployment", "s-old", "n"),
        ("patch", "Secret", "s-redis", "n", patch),
    ]
    assert outcome.live == {
        ("Secret", "s-redis"): {**child("Secret", "s-redis"), "live": True},
        ("Service", "s-api"): {**child("Service", "s-api"), "live": True},
    }
    assert outcome.refused == {} and outcome.done == actions


async def test_a_refused_apply_is_recorded_and_the_later_actions_still_run() -> None:
    kube = RecordingKube(refuse={"s-api": ApiPermanentError("422 Invalid: spec.replicas", 422)})
    actions: list[Action] = [
        Apply(child("Deployment", "s-api")),
        Apply(child("Service", "s-api-svc")),
        Delete("Job", "j", "n"),
    ]
    outcome = await execute(kube, BODY, actions)
    assert [call[0] for call in kube.calls] == ["apply", "apply", "delete"] and outcome.done == actions
    assert outcome.refused == {("Deployment", "s-api"): "422 Invalid: spec.replicas"}
    assert list(outcome.live) == [("Service", "s-api-svc")]


async def test_a_secret_that_already_exists_returns_no_live_object() -> None:
    kube = RecordingKube(existing=frozenset({"s-redis"}))
    outcome = await execute(kube, BODY, [CreateSecret(child("Secret", "s-redis"))])
    assert kube.calls == [("create", "s-redis")]
    assert outcome.live == {} and outcome.refused == {}


async def test_any_other_error_ends_the_batch_and_the_outcome_says_what_was_written() -> None:
    # A temporary error fails the pass as a direct call would; the next pass plans again from what is live.
    kube = RecordingKube(refuse={"s-api": ApiTemporaryError("503 unavailable", delay=5, code=503)})
    written = Apply(child("Service", "s-api-svc"))
    outcome = Outcome()
    with pytest.raises(ApiTemporaryError):
        await execute(kube, BODY, [written, Apply(child("Deployment", "s-api")), Delete("Job", "j", "n")], outcome)
    assert kube.calls == [("apply", "s-api-svc"), ("apply", "s-api")]
    assert outcome.done == [written] and list(outcome.live) == [("Service", "s-api-svc")]


async def test_status_stamp_and_labels_are_carried_out_in_the_order_given() -> None:
    kube = RecordingKube()
    stamp = child("Deployment", "s-api")
    actions: list[Action] = [
        WriteStatus("n", "s", {"phase": "Ready"}),
        Apply(stamp, field_manager=RESTART_FIELD_MANAGER),
        PatchLabels("Pod", "s-redis-1", "n", {"role": "master"}),
        PatchLabels("Pod", "s-redis-0", "n", {"role": None}),
        PostEvent("Warning", "RedisFailover", "moved"),
    ]
    outcome = await execute(kube, BODY, actions)
    assert kube.calls == [
        ("status", "n", "s", {"phase": "Ready"}),
        ("apply", "s-api", RESTART_FIELD_MANAGER),
        ("labels", "Pod", "s-redis-1", "n", {"role": "master"}),
        ("labels", "Pod", "s-redis-0", "n", {"role": None}),
        ("event", "s", "Warning", "RedisFailover", "moved"),
    ]
    assert outcome.live == {("Deployment", "s-api"): {**stamp, "live": True}} and outcome.done == actions


async def test_a_refused_stamp_is_an_error_not_a_refused_child() -> None:
    # Only the operator's own applies of children are reported in the status; a stamp refused ends the pass.
    kube = RecordingKube(refuse={"s-api": ApiPermanentError("403 Forbidden", 403)})
    outcome = Outcome()
    stamp = Apply(child("Deployment", "s-api"), field_manager=RESTART_FIELD_MANAGER)
    with pytest.raises(ApiPermanentError):
        await execute(kube, BODY, [stamp, PostEvent("Normal", "RestartingService", "api")], outcome)
    assert outcome.done == [] and outcome.refused == {}
