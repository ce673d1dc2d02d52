"""The operator never touches what is not its own, and deletionPolicy decides at deletion time (real API server).

Each scenario here was a defect found by an adversarial run: a child name taken by a user's object or by another
stack's child, a Secret planted under a generated name, a policy changed after creation, non-canonical quantities,
a service scaled to zero, and Events posted twice.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fixtures.cluster import Cluster, wait_for
from tests.fixtures.operator import OperatorProcess, wait_for_condition, wait_for_passes, write_requests
from tradingstack.api.base import canonical_quantity
from tradingstack.render.common import NONROOT_UID, container_security_context, pod_security_context

pytestmark = pytest.mark.cluster
TIMEOUT = 180
IMAGE = "ghcr.io/quantumtrader/demo-service:0.1.0"


def stack(name: str, namespace: str, services: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "trading.quantumtrader.dev/v1alpha1",
        "kind": "TradingStack",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"services": services, **spec},
    }


def service(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": IMAGE, "port": 8000, **fields}


def without_stores(**spec: Any) -> dict[str, Any]:
    return {"redis": {"enabled": False}, "postgres": {"enabled": False}, **spec}


def get(cluster: Cluster, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    result = cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    return dict(json.loads(result.stdout)) if result.returncode == 0 else None


def condition(cluster: Cluster, namespace: str, name: str, kind: str) -> dict[str, Any]:
    status = cluster.kubectl_json("get", "tradingstack", name, "-n", namespace).get("status", {})
    return next(c for c in status.get("conditions", []) if c["type"] == kind)


def warnings(cluster: Cluster, namespace: str, stack_name: str, reason: str) -> list[dict[str, Any]]:
    items = cluster.kubectl_json("get", "events", "-n", namespace)["items"]
    return [
        e
        for e in items
        if e["reason"] == reason and e["involvedObject"]["name"] == stack_name and e["type"] == "Warning"
    ]


def test_an_object_that_is_not_the_stacks_is_never_adopted(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    # The gateway renders a ConfigMap `<stack>-gateway`; the user's object of that name was there first.
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "s-gateway", "namespace": namespace, "labels": {"team": "desk"}},
            "data": {"nginx.conf": "mine"},
        }
    )
    before = get(cluster, "configmap", "s-gateway", namespace)
    assert before is not None
    cluster.apply(stack("s", namespace, [service("api")], **without_stores()))

    degraded = wait_for_condition(cluster, namespace, "s", "Degraded", "True", TIMEOUT)
    message = next(c for c in degraded["status"]["conditions"] if c["type"] == "Degraded")
    assert message["reason"] == "NameConflict"
    assert "ConfigMap/s-gateway exists and is not created by this stack" in message["message"]
    assert condition(cluster, namespace, "s", "Ready")["status"] == "False"
    wait_for_passes(operator, count=2)
    after = get(cluster, "configmap", "s-gateway", namespace)
    assert after is not None
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["data"] == {"nginx.conf": "mine"} and "ownerReferences" not in after["metadata"]
    # The rest of the stack is applied: only the conflicting child is held back.
    assert get(cluster, "deployment", "s-api", namespace) is not None
    assert len(warnings(cluster, namespace, "s", "NameConflict")) == 1

    cluster.kubectl("delete", "tradingstack", "s", "-n", namespace, "--wait=true", "--timeout=90s")
    wait_for(lambda: get(cluster, "deployment", "s-api", namespace) is None, timeout=90, what="children collected")
    kept = get(cluster, "configmap", "s-gateway", namespace)
    assert kept is not None and kept["data"] == {"nginx.conf": "mine"}


def test_the_conflict_clears_when_the_name_is_free_again(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s-api", "namespace": namespace},
                   "spec": {"ports": [{"port": 80}]}})  # fmt: skip
    cluster.apply(stack("s", namespace, [service("api")], **without_stores(gateway={"enabled": False})))
    wait_for_condition(cluster, namespace, "s", "Degraded", "True", TIMEOUT)
    cluster.kubectl("delete", "service", "s-api", "-n", namespace)
    wait_for_condition(cluster, namespace, "s", "Ready", "True", TIMEOUT)
    owner = get(cluster, "service", "s-api", namespace)
    assert owner is not None and owner["metadata"]["ownerReferences"][0]["name"] == "s"


def test_two_stacks_whose_child_names_collide_do_not_fight(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    # Stack `a` with service `b-x` and stack `a-b` with service `x` both render Deployment `a-b-x`.
    quiet = without_stores(gateway={"enabled": False})
    cluster.apply(stack("a", namespace, [service("b-x")], **quiet))
    wait_for_condition(cluster, namespace, "a", "Ready", "True", TIMEOUT)
    first = get(cluster, "deployment", "a-b-x", namespace)
    assert first is not None
    cluster.apply(stack("a-b", namespace, [service("x", port=9000)], **quiet))
    degraded = wait_for_condition(cluster, namespace, "a-b", "Degraded", "True", TIMEOUT)
    reason = next(c for c in degraded["status"]["conditions"] if c["type"] == "Degraded")
    assert reason["reason"] == "NameConflict"
    assert "Deployment/a-b-x exists and is controlled by TradingStack/a" in reason["message"]

    mark = len(cluster.audit_log.read_text().splitlines())
    wait_for_passes(operator, count=4)
    assert [w for w in write_requests(cluster.audit_log, namespace, mark) if w["name"] == "a-b-x"] == []
    assert condition(cluster, namespace, "a", "Ready")["status"] == "True"
    kept = get(cluster, "deployment", "a-b-x", namespace)
    assert kept is not None and kept["metadata"]["labels"]["trading.quantumtrader.dev/stack"] == "a"
    assert kept["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] == 8000


def test_a_service_name_ending_in_a_component_is_refused_by_the_api_server(
    cluster: Cluster, namespace: str, crd: None
) -> None:
    document = stack("a", namespace, [service("b-redis")])
    result = cluster.kubectl("apply", "-f", "-", "-n", namespace, input=json.dumps(document), check=False)
    assert result.returncode != 0 and "name must not end in -<component>" in result.stderr


def test_a_planted_secret_is_never_used_as_credentials(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    planted = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s-postgres", "namespace": namespace},
               "stringData": {"password": "chosen-by-someone-else"}}  # fmt: skip
    cluster.apply(planted)
    before = get(cluster, "secret", "s-postgres", namespace)
    assert before is not None
    cluster.apply(stack("s", namespace, [service("api", uses=["postgres"])], redis={"enabled": False}))
    degraded = wait_for_condition(cluster, namespace, "s", "Degraded", "True", TIMEOUT)
    message = next(c for c in degraded["status"]["conditions"] if c["type"] == "Degraded")["message"]
    assert "Secret/s-postgres exists and is not created by this stack" in message
    assert "StatefulSet/s-postgres: not applied, its pods would read Secret/s-postgres" in message
    assert "Deployment/s-api: not applied, its pods would read Secret/s-postgres" in message
    wait_for_passes(operator, count=2)
    assert get(cluster, "statefulset", "s-postgres", namespace) is None
    assert get(cluster, "deployment", "s-api", namespace) is None
    after = get(cluster, "secret", "s-postgres", namespace)
    assert after is not None and after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def secrets_left(cluster: Cluster, namespace: str) -> set[str]:
    items = cluster.kubectl_json("get", "secrets", "-n", namespace)["items"]
    return {s["metadata"]["name"] for s in items if not s["metadata"].get("deletionTimestamp")}


@pytest.mark.parametrize(
    ("created", "changed", "wait_for_a_pass"),
    [("Delete", "Retain", True), ("Retain", "Delete", True), ("Delete", "Retain", False)],
    ids=["delete-to-retain", "retain-to-delete", "delete-to-retain-then-deleted-at-once"],
)
def test_the_policy_at_deletion_time_decides_for_the_credentials(
    cluster: Cluster, namespace: str, operator: OperatorProcess, created: str, changed: str, wait_for_a_pass: bool
) -> None:
    document = stack("s", namespace, [service("api", uses=["redis", "postgres"])], deletionPolicy=created)
    cluster.apply(document)
    wait_for_condition(cluster, namespace, "s", "Ready", "True", TIMEOUT)
    generated = {"s-redis", "s-postgres"}
    assert generated <= secrets_left(cluster, namespace)
    document["spec"]["deletionPolicy"] = changed
    cluster.apply(document)
    if wait_for_a_pass:
        wait_for_passes(operator, count=2)
    cluster.kubectl("delete", "tradingstack", "s", "-n", namespace, "--wait=true", "--timeout=90s")
    wait_for(
        lambda: not cluster.kubectl_json("get", "deployments,statefulsets", "-n", namespace)["items"],
        timeout=90,
        what="owned workloads garbage-collected",
    )
    if changed == "Retain":
        # Garbage collection is done (the StatefulSets are gone), so anything it would delete is deleted.
        assert generated <= secrets_left(cluster, namespace)
    else:
        wait_for(lambda: not generated & secrets_left(cluster, namespace), timeout=90, what="credentials deleted")


NON_CANONICAL = [
    "0.5",
    "1.5Gi",
    "2048Mi",
    "1000M",
    "1.0",
    "1500m",
    "0.25Gi",
    "1331.2",
    "0.0001",
    "1024k",
    "437.5Ki",
    "448000",
]


def test_canonical_quantities_are_the_api_servers(cluster: Cluster, namespace: str) -> None:
    # A server-side dry run returns the object as stored: each quantity in the server's canonical form.
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "quantities", "namespace": namespace},
        "spec": {
            "securityContext": pod_security_context(NONROOT_UID),
            "containers": [
                {
                    "name": f"c{i}",
                    "image": IMAGE,
                    "resources": {"requests": {"cpu": value, "memory": value}},
                    "securityContext": container_security_context(),
                }
                for i, value in enumerate(NON_CANONICAL)
            ],
        },
    }
    result = cluster.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(pod))
    stored = [c["resources"]["requests"] for c in json.loads(result.stdout)["spec"]["containers"]]
    assert [(r["cpu"], r["memory"]) for r in stored] == [(canonical_quantity(v),) * 2 for v in NON_CANONICAL]


def test_non_canonical_quantities_cause_no_write_on_resync(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    resources = {"requests": {"cpu": "0.5", "memory": "1.5Gi"}, "limits": {"cpu": "1.0", "memory": "2048Mi"}}
    document = stack(
        "s",
        namespace,
        [service("api", resources=resources, uses=["redis"])],
        postgres={"enabled": False},
        redis={"storage": {"size": "1024Mi"}, "resources": {"requests": {"cpu": "0.1", "memory": "1000M"},
                                                           "limits": {"memory": "1.0Gi"}}},
    )  # fmt: skip
    cluster.apply(document)
    wait_for_condition(cluster, namespace, "s", "Ready", "True", TIMEOUT)
    wait_for_passes(operator, count=2)
    mark = len(cluster.audit_log.read_text().splitlines())
    operator.stop()
    operator.start()  # a new process: nothing in memory, every child compared again
    wait_for_passes(operator, count=3)
    assert write_requests(cluster.audit_log, namespace, mark) == []


def test_a_service_scaled_to_zero_is_not_counted_ready(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    services = [service("api"), service("idle", replicas=0)]
    cluster.apply(stack("s", namespace, services, **without_stores(gateway={"enabled": False})))
    ready = wait_for_condition(cluster, namespace, "s", "Ready", "True", TIMEOUT)
    assert ready["status"]["readySummary"] == "1/2"
    assert ready["status"]["services"]["idle"]["ready"] == 0
    message = next(c for c in ready["status"]["conditions"] if c["type"] == "Ready")["message"]
    assert message == "1/2 services ready, scaled to zero: idle"


def test_one_event_per_refused_child(cluster: Cluster, namespace: str, operator: OperatorProcess) -> None:
    # The models do not compare requests with limits; the API server refuses the Deployment.
    resources = {"requests": {"cpu": "2", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "128Mi"}}
    cluster.apply(stack("s", namespace, [service("api", resources=resources)], **without_stores()))
    degraded = wait_for_condition(cluster, namespace, "s", "Degraded", "True", TIMEOUT)
    assert next(c for c in degraded["status"]["conditions"] if c["type"] == "Degraded")["reason"] == "ApplyFailed"
    wait_for_passes(operator, count=3)
    refused = warnings(cluster, namespace, "s", "ApplyFailed")
    assert len(refused) == 1 and "Deployment/s-api" in refused[0]["message"]


def test_an_existing_secret_is_used_only_when_referenced_and_complete(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    document = stack("s", namespace, [service("api", uses=["postgres"])], redis={"enabled": False},
                     postgres={"existingSecret": "desk-db"})  # fmt: skip
    cluster.apply(document)
    degraded = wait_for_condition(cluster, namespace, "s", "Degraded", "True", TIMEOUT)
    message = next(c for c in degraded["status"]["conditions"] if c["type"] == "Degraded")
    assert (
        message["reason"] == "SecretInvalid" and "Secret/desk-db (existingSecret) does not exist" in message["message"]
    )
    assert get(cluster, "deployment", "s-api", namespace) is None

    credentials = {"username": "trading", "password": "from-the-desk"}
    partial = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "desk-db", "namespace": namespace},
               "stringData": credentials}  # fmt: skip
    cluster.apply(partial)
    wait_for(
        lambda: "lacks the key(s) dsn" in condition(cluster, namespace, "s", "Degraded")["message"],
        timeout=TIMEOUT,
        what="the missing key reported",
    )
    credentials["dsn"] = f"postgresql://trading:from-the-desk@s-postgres.{namespace}.svc:5432/trading"
    cluster.apply(partial)
    wait_for_condition(cluster, namespace, "s", "Ready", "True", TIMEOUT)
    api = get(cluster, "deployment", "s-api", namespace)
    assert api is not None and '"name": "desk-db"' in json.dumps(api["spec"]["template"])
    assert get(cluster, "secret", "s-postgres", namespace) is None  # nothing generated
    before = get(cluster, "secret", "desk-db", namespace)
    cluster.kubectl("delete", "tradingstack", "s", "-n", namespace, "--wait=true", "--timeout=90s")
    after = get(cluster, "secret", "desk-db", namespace)
    assert before is not None and after is not None
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
