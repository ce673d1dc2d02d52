"""One whole reconcile pass (`StackReconciler`) against an in-memory API server: what a pass writes, and in which
order, from a new stack to a settled one. No network: the data plane (health documents, sentinels) is not read."""

from __future__ import annotations

import base64
import copy
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from tradingstack import components
from tradingstack.api import TradingStackStatus
from tradingstack.contract import Annotation
from tradingstack.errors import ApiTemporaryError
from tradingstack.kube.actions import FIELD_MANAGER, RESTART_FIELD_MANAGER, ChildKey, EventType, Obj
from tradingstack.kube.client import Kube
from tradingstack.reconcile import stack as stack_module
from tradingstack.reconcile.plan import status_document
from tradingstack.reconcile.stack import StackReconciler

EXAMPLE = Path(__file__).parents[2] / "examples" / "quantum-trader.yaml"
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
WRITES = ("create", "apply", "delete", "patch", "labels", "status", "event")


class ApiServer:
    """The Kube facade over a dict of objects: reads return copies, every write is recorded in `calls`."""

    def __init__(self, objects: Mapping[ChildKey, Obj] | None = None) -> None:
        self.objects: dict[ChildKey, Obj] = copy.deepcopy(dict(objects or {}))
        self.calls: list[tuple[Any, ...]] = []
        self.status: Obj | None = None
        self.statuses: list[Obj] = []
        """Every status written, in order."""

    async def list_children(
        self, namespace: str, selector: Mapping[str, str], kinds: Iterable[str]
    ) -> dict[ChildKey, Obj]:
        wanted = set(kinds)
        return {
            key: copy.deepcopy(obj)
            for key, obj in self.objects.items()
            if key[0] in wanted and all(obj["metadata"].get("labels", {}).get(k) == v for k, v in selector.items())
        }

    async def get(self, kind: str, name: str, namespace: str) -> Obj | None:
        return copy.deepcopy(self.objects.get((kind, name)))

    async def get_stack(self, namespace: str, name: str) -> Obj | None:
        """The stack as read back: only its status is kept here."""
        stack: Obj = {"metadata": {"name": name, "namespace": namespace}}
        return stack if self.status is None else {**stack, "status": copy.deepcopy(self.status)}

    async def create(self, obj: Obj) -> Obj | None:
        self.calls.append(("create", obj["kind"], obj["metadata"]["name"]))
        key = (obj["kind"], obj["metadata"]["name"])
        if key in self.objects:
            return None
        stored = copy.deepcopy(obj)
        if "stringData" in stored:  # as the API server stores a Secret
            stored["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in stored.pop("stringData").items()}
        self.objects[key] = stored
        return copy.deepcopy(stored)

    async def apply(self, obj: Obj, field_manager: str = FIELD_MANAGER) -> Obj:
        self.calls.append(("apply", obj["kind"], obj["metadata"]["name"], field_manager))
        key = (obj["kind"], obj["metadata"]["name"])
        if field_manager == RESTART_FIELD_MANAGER:  # a partial object: only the pod-template annotation
            template = self.objects[key]["spec"]["template"].setdefault("metadata", {})
            template.setdefault("annotations", {}).update(obj["spec"]["template"]["metadata"]["annotations"])
        else:
            self.objects[key] = {**copy.deepcopy(obj), "status": self.objects.get(key, {}).get("status", {})}
        return copy.deepcopy(self.objects[key])

    async def delete(self, kind: str, name: str, namespace: str) -> None:
        self.calls.append(("delete", kind, name))
        self.objects.pop((kind, name), None)

    async def merge_patch(self, kind: str, name: str, namespace: str, patch: Mapping[str, Any]) -> None:
        self.calls.append(("patch", kind, name))

    async def patch_labels(self, kind: str, name: str, namespace: str, labels: Mapping[str, str | None]) -> None:
        self.calls.append(("labels", kind, name))

    async def post_event(self, about: Mapping[str, Any], event_type: EventType, reason: str, message: str) -> None:
        self.calls.append(("event", event_type, reason))

    async def replace_status(self, namespace: str, name: str, status: Obj) -> None:
        self.calls.append(("status",))
        self.status = copy.deepcopy(status)
        self.statuses.append(self.status)

    def settle(self) -> None:
        """Every workload rolled out and ready, as the controllers would leave them."""
        for (kind, _), obj in self.objects.items():
            if kind in ("Deployment", "StatefulSet"):
                replicas = obj["spec"].get("replicas", 1)
                obj["metadata"]["generation"] = 1
                obj["status"] = {
                    "observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas,
                    "readyReplicas": replicas, "availableReplicas": replicas, "currentReplicas": replicas,
                }  # fmt: skip


def example_body(**annotations: str) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    body["metadata"].update(namespace="trading", uid="uid-1", generation=1, annotations=annotations)
    return body


async def one_pass(api: ApiServer, body: Mapping[str, Any]) -> tuple[TradingStackStatus, list[tuple[Any, ...]]]:
    """A pass over `body` as the stack's watch would deliver it (with the status the last pass wrote)."""
    api.calls.clear()
    reconciler = StackReconciler(cast(Kube, api), clock=lambda: NOW, new_password=lambda: "pw", read_data_plane=False)
    status = await reconciler.reconcile({**body, "status": api.status} if api.status else body)
    return status, list(api.calls)


def kinds_of(calls: list[tuple[Any, ...]]) -> list[str]:
    return [call[0] for call in calls]


async def test_a_new_stack_creates_its_secrets_and_children_then_writes_its_status() -> None:
    api = ApiServer()
    status, calls = await one_pass(api, example_body())
    assert calls[0] == ("event", "Normal", "Reconciling")
    creates = [call for call in calls if call[0] == "create"]
    assert {name for _, kind, name in creates if kind == "Secret"} == {
        "quantum-trader-redis",
        "quantum-trader-postgres",
    }
    applies = [call for call in calls if call[0] == "apply"]
    assert applies and all(call[3] == FIELD_MANAGER for call in applies)
    assert ("apply", "Deployment", "quantum-trader-ai-engine", FIELD_MANAGER) in applies
    # Secrets before the children whose pods read them, the status last.
    assert kinds_of(calls) == ["event", *["create"] * len(creates), *["apply"] * len(applies), "status"]
    assert api.status == status_document(status) and status.phase == "Progressing"


async def test_a_second_pass_over_what_the_first_left_writes_nothing() -> None:
    api = ApiServer()
    await one_pass(api, example_body())
    _, calls = await one_pass(api, example_body())
    assert calls == []
    api.settle()
    status, calls = await one_pass(api, example_body())
    assert status.phase == "Ready" and calls == [("status",), ("event", "Normal", "Ready")]
    _, calls = await one_pass(api, example_body())
    assert calls == []


async def test_a_changed_replica_count_is_exactly_one_apply() -> None:
    api = ApiServer()
    await one_pass(api, example_body())
    api.settle()
    await one_pass(api, example_body())
    body = example_body()
    body["metadata"]["generation"] = 2
    body["spec"]["services"][0]["replicas"] += 1
    _, calls = await one_pass(api, body)
    assert [call for call in calls if call[0] != "status"] == [
        ("apply", "Deployment", "quantum-trader-ai-engine", FIELD_MANAGER)
    ]


async def test_a_hand_edited_child_is_put_back_with_one_apply() -> None:
    api = ApiServer()
    await one_pass(api, example_body())
    api.objects["Deployment", "quantum-trader-risk-safety"]["spec"]["replicas"] = 9
    _, calls = await one_pass(api, example_body())
    assert calls == [("apply", "Deployment", "quantum-trader-risk-safety", FIELD_MANAGER)]


async def test_a_stamp_pass_writes_the_status_before_the_stamp_then_posts_its_event() -> None:
    api = ApiServer()
    await one_pass(api, example_body())
    api.settle()
    await one_pass(api, example_body())
    status, calls = await one_pass(api, example_body(**{Annotation.RESTART_NOW: "now-1"}))
    assert kinds_of(calls) == ["status", "apply", "event", "status"]
    _, stamp, event = calls[:3]
    assert stamp[3] == RESTART_FIELD_MANAGER and event[2] == "RestartingService"
    assert status.restarts.in_progress is not None and stamp[2] == f"quantum-trader-{status.restarts.in_progress}"
    interim = api.statuses[-2]["restarts"]  # written before the stamp: it already names the run and the service
    assert (interim["runId"], interim["inProgress"]) == (status.restarts.run_id, status.restarts.in_progress)
    live = api.objects["Deployment", stamp[2]]
    assert live["spec"]["template"]["metadata"]["annotations"][Annotation.RESTARTED_AT] == status.restarts.run_id
    assert api.status == status_document(status)


async def test_a_service_removed_from_the_spec_has_its_children_pruned() -> None:
    api = ApiServer()
    await one_pass(api, example_body())
    own = {key for key in api.objects if key[1].startswith("quantum-trader-rl-training")}
    body = example_body()
    body["spec"]["services"] = [s for s in body["spec"]["services"] if s["name"] != "rl-training"]
    body["metadata"]["generation"] = 2
    _, calls = await one_pass(api, body)
    assert {(kind, name) for _, kind, name in (call for call in calls if call[0] == "delete")} == own
    assert kinds_of(calls)[-1] == "status" and not own & set(api.objects)


def render_failing(monkeypatch: pytest.MonkeyPatch, *errors: Exception) -> None:
    """The renderer raises `errors`, one per pass, then works again (a bug met by some specs, then fixed)."""
    pending = list(errors)

    def render(*args: Any, **kwargs: Any) -> list[Obj]:
        if pending:
            raise pending.pop(0)
        return components.render(*args, **kwargs)

    monkeypatch.setattr(stack_module, "render", render)


async def ready_stack() -> ApiServer:
    api = ApiServer()
    await one_pass(api, example_body())
    api.settle()
    status, _ = await one_pass(api, example_body())
    assert status.phase == "Ready"
    return api


def condition(status: Obj | None, kind: str) -> Obj:
    assert status is not None
    return next(c for c in status["conditions"] if c["type"] == kind)


async def test_a_pass_that_raises_shows_the_error_once_and_the_next_good_pass_replaces_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = await ready_stack()
    bug = ValueError("Attribute's length must be >= 1 and <= 64, but it was 70 (password=Zq3xT9vLk2PmW8rB5nYc1HdF)")
    render_failing(monkeypatch, bug, bug)
    api.calls.clear()
    with pytest.raises(ValueError, match="length must be"):  # raised on, for the daemon to back off and retry
        await one_pass(api, example_body())
    assert api.calls == [("status",), ("event", "Warning", "ReconcileError")]
    degraded = condition(api.status, "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "ReconcileError")
    assert degraded["message"].startswith("ValueError: Attribute's length must be >= 1 and <= 64, but it was 70")
    assert "password=***" in degraded["message"] and "Zq3x" not in degraded["message"]
    assert api.status is not None and api.status["phase"] == "Degraded"
    assert condition(api.status, "Ready")["status"] == "True"  # what the failed pass did not observe is kept

    api.calls.clear()
    with pytest.raises(ValueError):
        await one_pass(api, example_body())
    assert api.calls == []  # the same error again: already shown, nothing written

    status, calls = await one_pass(api, example_body())
    assert status.phase == "Ready" and calls == [("status",), ("event", "Normal", "Ready")]
    degraded = condition(api.status, "Degraded")
    assert (degraded["status"], degraded["reason"], degraded["message"]) == ("False", "AsExpected", "")
    _, calls = await one_pass(api, example_body())
    assert calls == []


async def test_a_failed_status_write_on_the_error_path_does_not_hide_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    api = await ready_stack()
    render_failing(monkeypatch, ValueError("boom"))

    async def refused(namespace: str, name: str, status: Obj) -> None:
        raise ApiTemporaryError("503 ServiceUnavailable", code=503)

    monkeypatch.setattr(api, "replace_status", refused)
    with pytest.raises(ValueError, match="boom"):
        await one_pass(api, example_body())
    assert condition(api.status, "Degraded")["reason"] == "AsExpected"  # not written, and no Event either
    assert not [call for call in api.calls if call[0] == "event"]
