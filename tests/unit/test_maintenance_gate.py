"""The maintenance gate of the StatefulSets: a template change waits for maintenance, anything else does not."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.unit.test_pass import NOW, ApiServer, example_body
from tests.unit.test_rollout_pass import applied, at
from tradingstack.contract import Annotation
from tradingstack.kube.actions import Obj
from tradingstack.reconcile.maintenance_gate import HeldTemplates, hold_statefulset_templates

CLOSED = "outside the maintenance windows"
REDIS = "quantum-trader-redis"


def statefulset(revision: str | None, name: str = REDIS) -> Obj:
    annotations = {Annotation.REVISION: revision} if revision else {}
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name, "annotations": annotations}}


def test_a_changed_template_is_held_only_while_maintenance_is_closed() -> None:
    live = {("StatefulSet", REDIS): statefulset("aaaaaaaaaa")}
    desired = [statefulset("bbbbbbbbbb")]
    held = hold_statefulset_templates(desired, live, CLOSED)
    assert held.held == {("StatefulSet", REDIS)}
    assert held.pending == [f"StatefulSet {REDIS} (revision bbbbbbbbbb) waits for the maintenance window"]
    assert hold_statefulset_templates(desired, live, None) == HeldTemplates()


def test_the_same_template_a_first_deploy_and_an_older_operators_object_are_not_held() -> None:
    same = hold_statefulset_templates([statefulset("aaaaaaaaaa")], {("StatefulSet", REDIS): statefulset("aaaaaaaaaa")},
                                      CLOSED)  # fmt: skip
    first = hold_statefulset_templates([statefulset("aaaaaaaaaa")], {}, CLOSED)
    older = hold_statefulset_templates([statefulset("aaaaaaaaaa")], {("StatefulSet", REDIS): statefulset(None)}, CLOSED)
    assert same == first == older == HeldTemplates()


def closed_body(**redis: Any) -> dict[str, Any]:
    body = example_body()
    body["metadata"]["generation"] = 2
    body["spec"]["maintenance"] = {"windows": [{"schedule": "0 21 * * *", "durationMinutes": 60, "timeZone": "UTC"}]}
    body["spec"]["redis"] = {**body["spec"].get("redis", {}), **redis}
    return body


async def test_a_redis_image_change_waits_for_the_window_and_applies_when_it_opens() -> None:
    api = ApiServer()
    await at(api, example_body(), NOW)
    api.settle()
    before = api.objects["StatefulSet", REDIS]["spec"]["template"]
    body = closed_body(image="redis:7.4.2")
    status, calls = await at(api, body, NOW)  # 12:00 UTC: closed until 21:00
    assert REDIS not in applied(calls) and api.objects["StatefulSet", REDIS]["spec"]["template"] == before
    assert f"StatefulSet {REDIS}" in " ".join(status.maintenance.pending), status.maintenance.pending
    api.settle()
    assert (await at(api, body, NOW + timedelta(minutes=5)))[1] == [], "a held change's resync writes nothing"

    status, calls = await at(api, body, NOW.replace(hour=21, minute=5))
    assert REDIS in applied(calls) and not status.maintenance.pending
    assert api.objects["StatefulSet", REDIS]["spec"]["template"]["spec"]["containers"][0]["image"] == "redis:7.4.2"


async def test_a_replica_count_change_is_not_held() -> None:
    api = ApiServer()
    await at(api, example_body(), NOW)
    api.settle()
    status, calls = await at(api, closed_body(replicas=5), NOW)
    assert REDIS in applied(calls) and api.objects["StatefulSet", REDIS]["spec"]["replicas"] == 5
    assert not status.maintenance.pending
