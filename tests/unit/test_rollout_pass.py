"""Health-gated rollouts through whole reconcile passes against the in-memory API server (`test_pass.ApiServer`):
what is applied, held, pruned and announced at each step, and that a pass with nothing to do writes nothing.
The data plane is not read, so Ready alone gates the canary here (`reconcile.rollout.CanaryPod.health`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from tests.unit.test_pass import NOW, ApiServer, example_body
from tradingstack.api import TradingStackStatus
from tradingstack.contract import Annotation
from tradingstack.kube.actions import FIELD_MANAGER, Obj
from tradingstack.kube.client import Kube
from tradingstack.reconcile.stack import StackReconciler

MAIN = "quantum-trader-ai-engine"
CANARY = "quantum-trader-ai-engine-canary"


async def at(api: ApiServer, body: dict[str, Any], now: datetime) -> tuple[TradingStackStatus, list[tuple[Any, ...]]]:
    api.calls.clear()
    reconciler = StackReconciler(cast(Kube, api), clock=lambda: now, new_password=lambda: "pw", read_data_plane=False)
    status = await reconciler.reconcile({**body, "status": api.status} if api.status else body)
    return status, list(api.calls)


def with_image(image: str, generation: int) -> dict[str, Any]:
    body = example_body()
    body["metadata"]["generation"] = generation
    body["spec"]["services"][0]["image"] = image
    return body


async def settled_stack() -> ApiServer:
    api = ApiServer()
    await at(api, example_body(), NOW)
    api.settle()
    await at(api, example_body(), NOW)
    assert (await at(api, example_body(), NOW))[1] == []
    return api


def canary_pod(api: ApiServer, *, ready: bool = True, restarts: int = 0) -> None:
    """The pod the canary Deployment's ReplicaSet would create, as the kubelet reports it."""
    template = api.objects["Deployment", CANARY]["spec"]["template"]
    pod: Obj = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": CANARY + "-5d9f-abcde",
            "labels": dict(template["metadata"]["labels"]),
            "annotations": dict(template["metadata"]["annotations"]),
            "creationTimestamp": "2026-12-03T12:00:05Z",
        },
        "status": {
            "phase": "Running",
            "podIP": "10.244.0.9",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [{"name": "ai-engine", "restartCount": restarts, "state": {"running": {}}}],
        },
    }
    api.objects["Pod", pod["metadata"]["name"]] = pod


def applied(calls: list[tuple[Any, ...]]) -> list[str]:
    return [call[2] for call in calls if call[0] == "apply"]


def events(calls: list[tuple[Any, ...]]) -> list[tuple[str, str]]:
    return [(call[1], call[2]) for call in calls if call[0] == "event"]


def main_image(api: ApiServer) -> str:
    return str(api.objects["Deployment", MAIN]["spec"]["template"]["spec"]["containers"][0]["image"])


async def test_a_good_image_bakes_in_a_canary_then_rolls_out_and_the_canary_goes() -> None:
    api = await settled_stack()
    old = api.objects["Deployment", MAIN]["metadata"]["annotations"][Annotation.REVISION]
    body = with_image("ghcr.io/quantumtrader/demo-service:0.2.0", 2)

    status, calls = await at(api, body, NOW)
    assert applied(calls) == [CANARY]  # the Deployment is held
    assert kinds(calls)[:3] == ["status", "apply", "event"]  # the step (with startedAt) written before the canary
    assert ("Normal", "RolloutStarted") in events(calls)
    canary = api.objects["Deployment", CANARY]
    new = canary["metadata"]["annotations"][Annotation.REVISION]
    assert new != old and main_image(api).endswith(":0.1.0")
    assert canary["metadata"]["ownerReferences"] == api.objects["Deployment", MAIN]["metadata"]["ownerReferences"]
    assert canary["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":0.2.0")
    rollout = status.rollouts["ai-engine"]
    assert (rollout.step, rollout.current_revision, rollout.target_revision) == ("Baking", old, new)
    assert status.conditions[[c.type for c in status.conditions].index("Progressing")].status == "True"
    assert status.ready_summary == "6/6"  # the canary counts neither for nor against its service
    assert (await at(api, body, NOW + timedelta(seconds=5)))[1] == []  # waiting for the pod: nothing changes

    canary_pod(api)
    status, calls = await at(api, body, NOW + timedelta(seconds=10))
    assert kinds(calls) == ["status"] and status.rollouts["ai-engine"].healthy_since == NOW + timedelta(seconds=10)
    assert (await at(api, body, NOW + timedelta(seconds=69)))[1] == []  # baking: no write

    status, calls = await at(api, body, NOW + timedelta(seconds=70))
    assert applied(calls) == [MAIN] and ("delete", "Deployment", CANARY) in calls  # promoted, its room freed
    assert ("Deployment", CANARY) not in api.objects
    assert main_image(api).endswith(":0.2.0") and status.rollouts["ai-engine"].step == "Promoting"

    api.objects["Deployment", MAIN]["metadata"]["generation"] = 2  # the controller has not observed it yet
    status, calls = await at(api, body, NOW + timedelta(seconds=75))
    assert status.rollouts["ai-engine"].step == "Promoting" and ("Normal", "RolloutSucceeded") not in events(calls)

    api.settle()
    status, calls = await at(api, body, NOW + timedelta(seconds=90))
    assert ("Normal", "RolloutSucceeded") in events(calls)
    rollout = status.rollouts["ai-engine"]
    assert (rollout.step, rollout.current_revision, rollout.last_good_revision) == ("Idle", new, new)
    assert (await at(api, body, NOW + timedelta(minutes=5)))[1] == []


def kinds(calls: list[tuple[Any, ...]]) -> list[str]:
    return [call[0] for call in calls]


async def test_a_crash_looping_canary_is_rolled_back_the_deployment_untouched_and_not_retried() -> None:
    api = await settled_stack()
    before = api.objects["Deployment", MAIN]
    body = with_image("ghcr.io/quantumtrader/demo-service:0.2.0-broken", 2)
    await at(api, body, NOW)
    bad = api.objects["Deployment", CANARY]["metadata"]["annotations"][Annotation.REVISION]
    canary_pod(api, ready=False, restarts=1)

    status, calls = await at(api, body, NOW + timedelta(seconds=20))
    # The step is written first (a crash after it resumes as rolled back), then the canary goes, then the Event.
    assert kinds(calls)[:3] == ["status", "delete", "event"] and calls[1] == ("delete", "Deployment", CANARY)
    assert api.statuses[-2]["rollouts"]["ai-engine"]["step"] == "RolledBack"
    assert applied(calls) == []
    assert api.objects["Deployment", MAIN] == before  # never changed: the rollback removes nothing Ready
    assert events(calls).count(("Warning", "RolloutRolledBack")) == 1
    degraded = next(c for c in status.conditions if c.type == "Degraded")
    assert degraded.status == "True" and degraded.reason == "RolloutRolledBack"
    assert "ai-engine" in degraded.message and bad in degraded.message
    assert status.rollouts["ai-engine"].bad_revision == bad and status.rollouts["ai-engine"].step == "RolledBack"

    for minutes in (1, 30):  # the same spec: neither a canary nor an Event again, no write at all
        assert (await at(api, body, NOW + timedelta(minutes=minutes)))[1] == []

    fixed = with_image("ghcr.io/quantumtrader/demo-service:0.2.1", 3)
    status, calls = await at(api, fixed, NOW + timedelta(hours=1))
    assert applied(calls) == [CANARY] and status.rollouts["ai-engine"].step == "Baking"
    assert status.rollouts["ai-engine"].bad_revision is None


async def test_a_canary_never_ready_is_rolled_back_at_the_deadline() -> None:
    api = await settled_stack()
    body = with_image("ghcr.io/quantumtrader/demo-service:0.2.0", 2)
    body["spec"]["services"][0]["rollout"] = {"deadlineSeconds": 120}
    await at(api, body, NOW)
    canary_pod(api, ready=False)
    _, calls = await at(api, body, NOW + timedelta(seconds=119))
    assert ("delete", "Deployment", CANARY) not in calls
    status, calls = await at(api, body, NOW + timedelta(seconds=120))
    assert ("delete", "Deployment", CANARY) in calls and "within 120s" in status.rollouts["ai-engine"].message


async def test_a_change_that_keeps_the_pod_template_is_applied_directly() -> None:
    api = await settled_stack()
    body = example_body()
    body["metadata"]["generation"] = 2
    body["spec"]["services"][0]["replicas"] += 1
    _, calls = await at(api, body, NOW)
    assert [c for c in calls if c[0] != "status"] == [("apply", "Deployment", MAIN, FIELD_MANAGER)]


async def test_a_deployment_from_an_older_operator_is_applied_directly_once() -> None:
    api = await settled_stack()
    for (kind, _), obj in api.objects.items():
        if kind == "Deployment":
            obj["metadata"]["annotations"].pop(Annotation.REVISION, None)
            obj["metadata"]["annotations"][Annotation.APPLIED_HASH] = "older"
    body = with_image("ghcr.io/quantumtrader/demo-service:0.2.0", 2)
    _, calls = await at(api, body, NOW)
    assert MAIN in applied(calls) and CANARY not in applied(calls)
    assert main_image(api).endswith(":0.2.0")


async def test_a_crash_after_the_step_was_written_resumes_it_without_a_second_event() -> None:
    api = await settled_stack()
    body = with_image("ghcr.io/quantumtrader/demo-service:0.2.0", 2)
    await at(api, body, NOW)
    api.objects.pop(("Deployment", CANARY))  # as if the pass had stopped after its first status write
    status, calls = await at(api, body, NOW + timedelta(seconds=30))
    assert applied(calls) == [CANARY] and events(calls) == []
    assert status.rollouts["ai-engine"].started_at == NOW  # the deadline still counts from the first start


async def test_a_rollout_waits_for_the_maintenance_window_and_an_override_starts_it() -> None:
    api = await settled_stack()
    # NOW is 12:00 UTC; the window opens at 21:00 UTC.
    window = {"windows": [{"schedule": "0 21 * * *", "durationMinutes": 60, "timeZone": "UTC"}]}
    body = with_image("ghcr.io/quantumtrader/ai-engine:9.9.9", generation=2)
    body["spec"]["maintenance"] = window
    status, calls = await at(api, body, NOW)
    assert ("Deployment", CANARY) not in api.objects and main_image(api) != "ghcr.io/quantumtrader/ai-engine:9.9.9"
    assert MAIN not in applied(calls)
    assert status.rollouts["ai-engine"].step == "Pending"
    assert any("rollout of ai-engine" in p for p in status.maintenance.pending), status.maintenance.pending
    assert (await at(api, body, NOW + timedelta(minutes=10)))[1] == [], "a held rollout's resync writes nothing"

    body["metadata"]["annotations"] = {Annotation.APPLY_NOW: f"{NOW.isoformat()}/e2e hotfix"}
    status, calls = await at(api, body, NOW + timedelta(minutes=11))
    assert ("Deployment", CANARY) in api.objects, "the override starts the canary"
    assert status.rollouts["ai-engine"].step == "Baking" and not status.maintenance.pending
