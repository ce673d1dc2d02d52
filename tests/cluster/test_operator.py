"""The operator against the real API server: children, status, drift repair, pruning, deletion policy."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import yaml

from tests.fixtures.cluster import REPO, Cluster, wait_for
from tests.fixtures.operator import OperatorProcess, wait_for_condition, wait_for_passes, write_requests
from tradingstack.api import TradingStack
from tradingstack.api.spec import PostgresSpec
from tradingstack.components import render
from tradingstack.contract import Annotation

pytestmark = pytest.mark.cluster
EXAMPLE = REPO / "examples" / "quantum-trader.yaml"
READY_TIMEOUT = 240


def example(namespace: str) -> dict[str, Any]:
    document = yaml.safe_load(EXAMPLE.read_text())
    document["metadata"]["namespace"] = namespace
    return dict(document)


def rendered_children(document: dict[str, Any]) -> set[tuple[str, str]]:
    stack = TradingStack.model_validate(document)
    return {(o["kind"], o["metadata"]["name"]) for o in render(stack, stack.owner_reference())}


def existing(cluster: Cluster, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
    result = cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    return dict(json.loads(result.stdout)) if result.returncode == 0 else None


def deploy_and_wait_ready(cluster: Cluster, namespace: str, document: dict[str, Any]) -> dict[str, Any]:
    cluster.apply(document, namespace=namespace)
    return wait_for_condition(cluster, namespace, document["metadata"]["name"], "Ready", "True", READY_TIMEOUT)


def test_example_reaches_ready_with_every_child(cluster: Cluster, namespace: str, operator: OperatorProcess) -> None:
    document = example(namespace)
    stack = deploy_and_wait_ready(cluster, namespace, document)
    for kind, name in rendered_children(document):
        assert existing(cluster, namespace, kind, name) is not None, (kind, name)
    for kind, name in (("Secret", "quantum-trader-redis"), ("Secret", "quantum-trader-postgres")):
        secret = existing(cluster, namespace, kind, name)
        assert secret is not None and secret["data"]["password"], name
    status = stack["status"]
    assert status["observedGeneration"] == stack["metadata"]["generation"]
    assert status["phase"] == "Ready"
    assert status["readySummary"] == "6/6"
    assert status["services"]["ai-engine"] == {
        "ready": 2,
        "desired": 2,
        "health": status["services"]["ai-engine"]["health"],
    }
    types = {c["type"]: c for c in status["conditions"]}
    assert set(types) == {"Ready", "Progressing", "Degraded", "RedisReady", "PostgresReady", "BackupHealthy", "Halted"}
    assert types["RedisReady"]["status"] == "True" and types["Degraded"]["status"] == "False"
    assert all(c["reason"] and c["lastTransitionTime"] for c in types.values())

    table = cluster.kubectl("get", "ts", "-n", namespace).stdout.splitlines()
    header = table[0].split()
    assert header[:5] == ["NAME", "READY", "PHASE", "SERVICES", "REDIS"]
    assert "BACKUP" in header and "RESTART" in header and header[-1] == "AGE"
    assert table[1].split()[:4] == ["quantum-trader", "True", "Ready", "6/6"]

    reasons = {e["reason"] for e in cluster.kubectl_json("get", "events", "-n", namespace)["items"]}
    assert {"Reconciling", "Ready"} <= reasons

    metrics = operator.metrics()
    assert operator.metric("tradingstack_reconcile_duration_seconds_count") >= 1
    assert operator.metric("tradingstack_children_applied_total") >= len(rendered_children(document))
    assert 'tradingstack_stacks{phase="Ready"} 1.0' in metrics
    per_stack = f'namespace="{namespace}",service="ai-engine",stack="quantum-trader"'
    assert f"tradingstack_service_ready_replicas{{{per_stack}}} 2.0" in metrics
    ready = f'condition="Ready",namespace="{namespace}",stack="quantum-trader"'
    assert f"tradingstack_stack_condition{{{ready}}} 1.0" in metrics
    assert "tradingstack_reconcile_errors_total" in metrics


def test_logs_are_json_with_the_stack(cluster: Cluster, namespace: str, operator: OperatorProcess) -> None:
    deploy_and_wait_ready(cluster, namespace, example(namespace))
    lines = [json.loads(line) for line in operator.log().splitlines() if line.strip()]
    ours = [line for line in lines if line["logger"].startswith("tradingstack")]
    assert any("applied Deployment/quantum-trader-ai-engine" in line["message"] for line in ours)
    assert all(line.get("stack") == "quantum-trader" and line.get("namespace") == namespace for line in ours)


LEAK_SCAN_KINDS = (
    "tradingstacks,events,configmaps,deployments,statefulsets,services,cronjobs,jobs,pods,poddisruptionbudgets,"
    "persistentvolumeclaims,networkpolicies"
)
"""Everything in the namespace but the Secrets themselves: objects, their status, annotations (kopf's too)."""


def test_generated_passwords_appear_nowhere_but_in_their_secrets(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    document = example(namespace)
    deploy_and_wait_ready(cluster, namespace, document)
    cluster.kubectl("annotate", "tradingstack", "quantum-trader", "-n", namespace,
                    f"{Annotation.RESTART_NOW}=leak-scan")  # fmt: skip
    wait_for_passes(operator, count=2)  # a restart run and its status writes are scanned too
    secrets = {
        f"{name}/{key}": base64.b64decode(value).decode()
        for name in ("quantum-trader-redis", "quantum-trader-postgres")
        for key, value in cluster.kubectl_json("get", "secret", name, "-n", namespace)["data"].items()
    }
    passwords = {where: value for where, value in secrets.items() if len(value) >= 16}
    assert len(passwords) >= 2, sorted(secrets)  # the generated passwords, not the user name or database
    objects = cluster.kubectl("get", LEAK_SCAN_KINDS, "-n", namespace, "-o", "json").stdout
    places = {"operator log": operator.log(), f"objects in {namespace} ({LEAK_SCAN_KINDS})": objects}
    leaks = [f"{where} in the {place}" for where, value in passwords.items() for place, text in places.items()
             if value in text or base64.b64encode(value.encode()).decode() in text]  # fmt: skip
    assert not leaks


def generations(cluster: Cluster, namespace: str) -> dict[str, tuple[int, str]]:
    items = cluster.kubectl_json("get", "deployments", "-n", namespace)["items"]
    return {
        d["metadata"]["name"]: (d["metadata"]["generation"], d["spec"]["template"]["spec"]["containers"][0]["image"])
        for d in items
    }


def test_spec_changes_touch_only_what_changed(cluster: Cluster, namespace: str, operator: OperatorProcess) -> None:
    document = example(namespace)
    deploy_and_wait_ready(cluster, namespace, document)
    before = generations(cluster, namespace)

    ai = next(s for s in document["spec"]["services"] if s["name"] == "ai-engine")
    ai.update(replicas=3)  # the pod template stays: applied at once
    cluster.apply(document, namespace=namespace)
    wait_for(
        lambda: (existing(cluster, namespace, "deployment", "quantum-trader-ai-engine") or {})["spec"]["replicas"] == 3,
        timeout=60,
        what="ai-engine replica change",
    )
    wait_for_passes(operator)
    after = generations(cluster, namespace)
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"quantum-trader-ai-engine"}

    # A new pod template is a new revision: the Deployment is held and the revision bakes in a canary. The kwok
    # pods' health documents cannot be read (UNREACHABLE is not HEALTHY), so here it is never promoted.
    ai.update(image="ghcr.io/quantumtrader/demo-service:0.2.0")
    cluster.apply(document, namespace=namespace)
    wait_for(
        lambda: generations(cluster, namespace).get("quantum-trader-ai-engine-canary", (0, ""))[1].endswith(":0.2.0"),
        timeout=60,
        what="ai-engine canary of the image change",
    )
    wait_for_passes(operator)
    assert generations(cluster, namespace)["quantum-trader-ai-engine"] == after["quantum-trader-ai-engine"]

    document["spec"]["services"] = [s for s in document["spec"]["services"] if s["name"] != "portfolio"]
    cluster.apply(document, namespace=namespace)
    wait_for(
        lambda: (
            existing(cluster, namespace, "deployment", "quantum-trader-portfolio") is None
            and existing(cluster, namespace, "service", "quantum-trader-portfolio") is None
        ),
        timeout=60,
        what="portfolio Deployment and Service pruned",
    )
    assert existing(cluster, namespace, "deployment", "quantum-trader-execution") is not None


def test_children_changed_by_hand_are_restored(cluster: Cluster, namespace: str, operator: OperatorProcess) -> None:
    document = example(namespace)
    deploy_and_wait_ready(cluster, namespace, document)

    cluster.kubectl("delete", "service", "quantum-trader-execution", "-n", namespace)
    cluster.kubectl("delete", "configmap", "quantum-trader-gateway", "-n", namespace)
    wait_for(
        lambda: (
            existing(cluster, namespace, "service", "quantum-trader-execution")
            and existing(cluster, namespace, "configmap", "quantum-trader-gateway")
        ),
        timeout=60,
        what="deleted children restored",
    )

    cluster.kubectl("scale", "deployment", "quantum-trader-risk-safety", "--replicas=5", "-n", namespace)
    cluster.kubectl(
        "patch", "statefulset", "quantum-trader-postgres", "-n", namespace, "--type=json",
        "-p", '[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"postgres:9"}]',
    )  # fmt: skip

    def reverted() -> bool:
        risk = existing(cluster, namespace, "deployment", "quantum-trader-risk-safety")
        pg = existing(cluster, namespace, "statefulset", "quantum-trader-postgres")
        return bool(
            risk
            and risk["spec"]["replicas"] == 2
            and pg
            and pg["spec"]["template"]["spec"]["containers"][0]["image"] == PostgresSpec().image
        )

    wait_for(reverted, timeout=60, what="hand edits of managed fields reverted")


def test_invalid_spec_is_reported_not_retried_hot(cluster: Cluster, namespace: str, operator: OperatorProcess) -> None:
    # The CRD cannot know IANA zone names; the model can.
    document = example(namespace)
    document["spec"]["restarts"]["timeZone"] = "Europe/Atlantis"
    cluster.apply(document, namespace=namespace)
    stack = wait_for_condition(cluster, namespace, "quantum-trader", "Degraded", "True", 60)
    degraded = next(c for c in stack["status"]["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "InvalidSpec"
    assert "spec.restarts.timeZone" in degraded["message"]
    assert stack["status"]["phase"] == "Failed"
    passes = operator.metric("tradingstack_reconcile_duration_seconds_count")
    wait_for_passes(operator, count=1)
    # One pass per resync interval, not a hot loop; nothing rendered was created.
    assert operator.metric("tradingstack_reconcile_duration_seconds_count") - passes < 5
    assert existing(cluster, namespace, "deployment", "quantum-trader-ai-engine") is None


def test_rejected_by_the_api_server(cluster: Cluster, namespace: str, crd: None) -> None:
    document = example(namespace)
    document["spec"]["redis"].update(quorum=4, sentinels=3)
    result = cluster.kubectl("apply", "-f", "-", "-n", namespace, input=json.dumps(document), check=False)
    assert result.returncode != 0 and "quorum must be <= sentinels" in result.stderr


@pytest.mark.parametrize("policy", ["Retain", "Delete"])
def test_deletion_policy_decides_what_data_survives(
    cluster: Cluster, namespace: str, operator: OperatorProcess, policy: str
) -> None:
    document = example(namespace)
    document["spec"]["deletionPolicy"] = policy
    deploy_and_wait_ready(cluster, namespace, document)
    claims = {c["metadata"]["name"] for c in cluster.kubectl_json("get", "pvc", "-n", namespace)["items"]}
    assert "quantum-trader-postgres-backups" in claims and "data-quantum-trader-postgres-0" in claims

    cluster.kubectl("delete", "tradingstack", "quantum-trader", "-n", namespace, "--wait=true", "--timeout=90s")
    wait_for(
        lambda: not cluster.kubectl_json("get", "deployments,statefulsets,cronjobs", "-n", namespace)["items"],
        timeout=90,
        what="owned workloads garbage-collected",
    )

    def remaining_claims() -> set[str]:
        items = cluster.kubectl_json("get", "pvc", "-n", namespace)["items"]
        return {c["metadata"]["name"] for c in items if not c["metadata"].get("deletionTimestamp")}

    if policy == "Retain":
        # Garbage collection is done (the StatefulSets are gone), so anything it would delete is deleted.
        assert claims <= remaining_claims()
        assert existing(cluster, namespace, "secret", "quantum-trader-postgres") is not None
    else:
        wait_for(lambda: not remaining_claims(), timeout=90, what="claims deleted with the stack")


def test_forced_resync_of_a_ready_stack_writes_nothing(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    deploy_and_wait_ready(cluster, namespace, example(namespace))
    wait_for_passes(operator, count=2)
    audit = cluster.audit_log
    mark = len(audit.read_text().splitlines())
    # The strongest resync: a new operator process with nothing in memory reconciles every stack again.
    operator.stop()
    operator.start()
    wait_for_passes(operator, count=3)
    assert write_requests(audit, namespace, mark) == []


def test_pods_that_cannot_run_are_reported_naming_the_service(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    document = example(namespace)
    engine = next(s for s in document["spec"]["services"] if s["name"] == "ai-engine")
    engine["resources"] = {"requests": {"cpu": "500", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}
    cluster.apply(document, namespace=namespace)
    stack = wait_for_condition(cluster, namespace, "quantum-trader", "Degraded", "True", READY_TIMEOUT)
    degraded = next(c for c in stack["status"]["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "PodsFailing"
    assert degraded["message"].startswith("ai-engine: pod quantum-trader-ai-engine-")
    assert "Unschedulable: " in degraded["message"] and "Insufficient cpu" in degraded["message"]
