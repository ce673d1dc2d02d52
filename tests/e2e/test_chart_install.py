"""e2e: the operator chart installed with helm, the operator running with exactly the chart's RBAC.

The local cluster is kwok-based: pods become Running/Ready but no container runs, so the chart's Deployment
never really runs the operator. The operator runs here as a local process whose kubeconfig carries a token of
the chart's ServiceAccount: what it may do is what the installed chart grants, nothing more.

Cluster mode is run with a kopf namespace *pattern* (`--namespace e2e-stack-<id>*`) instead of
`--all-namespaces`: the cluster is shared with other suites whose stacks a cluster-wide operator would adopt.
A pattern still needs the cluster-wide grants (kopf lists and watches namespaces to resolve it, and the stack
namespace has no Role of its own), so the ClusterRole is what is exercised.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.helpers import CHART, CRD_NAME, ChartInstaller, Release
from tests.fixtures.cluster import REPO, Cluster, wait_for
from tests.fixtures.operator import wait_for_condition
from tests.golden import assert_golden

pytestmark = pytest.mark.cluster

GOLDEN = Path(__file__).parent / "golden"
EXAMPLE = REPO / "examples" / "quantum-trader.yaml"
MINIMAL = REPO / "examples" / "minimal.yaml"
STACK = "quantum-trader"
READY_TIMEOUT = 240
RESTART_NOW = "trading.quantumtrader.dev/restart-now"
RESTARTED_AT = "trading.quantumtrader.dev/restartedAt"
# Data the stack keeps on deletion with deletionPolicy Retain (the example's default).
RETAINED_CLAIMS = {
    "data-quantum-trader-postgres-0",
    "quantum-trader-postgres-backups",
    "data-quantum-trader-redis-0",
    "data-quantum-trader-redis-1",
    "data-quantum-trader-redis-2",
}


def load(path: Path, namespace: str) -> dict[str, Any]:
    document = dict(yaml.safe_load(path.read_text()))
    document["metadata"]["namespace"] = namespace
    return document


def get(cluster: Cluster, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    result = cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    return dict(json.loads(result.stdout)) if result.returncode == 0 else None


def stack_status(cluster: Cluster, namespace: str, name: str = STACK) -> dict[str, Any]:
    return dict(cluster.kubectl_json("get", "tradingstack", name, "-n", namespace).get("status", {}))


def can_i_list(cluster: Cluster, release: Release, namespace: str) -> str:
    """`kubectl auth can-i --list` as the ServiceAccount, normalised: one sorted line per rule, sorted."""
    out = cluster.kubectl("auth", "can-i", "--list", f"--as={release.username}", "-n", namespace).stdout
    rows = []
    for line in out.splitlines()[1:]:
        match = re.fullmatch(r"(\S*)\s+(\[.*?\])\s+(\[.*?\])\s+\[(.*)\]", line.rstrip())
        assert match, f"unexpected can-i line: {line!r}"
        resource, urls, names, verbs = match.groups()
        rows.append(f"{resource or '-'} {urls} {names} [{' '.join(sorted(verbs.split()))}]")
    return "\n".join(sorted(set(rows))) + "\n"


def can_i(cluster: Cluster, release: Release, *args: str) -> bool:
    result = cluster.kubectl("auth", "can-i", *args, f"--as={release.username}", check=False)
    return result.stdout.strip() == "yes"


def assert_no_wildcard_verbs(listing: str) -> None:
    for line in listing.splitlines():
        verbs = line.rsplit("[", 1)[1]
        assert "*" not in verbs, f"wildcard verb granted: {line}"


def assert_crd_is_the_charts(cluster: Cluster) -> None:
    cluster.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    served = cluster.kubectl_json("get", "crd", CRD_NAME)["spec"]
    shipped = yaml.safe_load((CHART / "crds" / "tradingstack.yaml").read_text())["spec"]
    assert served["names"] == shipped["names"] and served["scope"] == shipped["scope"]
    assert [(v["name"], v["schema"]) for v in served["versions"]] == [
        (v["name"], v["schema"]) for v in shipped["versions"]
    ], "the served CRD is not the chart's (helm never upgrades crds/: apply it with --server-side)"


def deployment(cluster: Cluster, namespace: str, service: str) -> dict[str, Any]:
    found = get(cluster, "deployment", f"{STACK}-{service}", namespace)
    assert found is not None, f"Deployment {STACK}-{service} missing"
    return found


def test_rendered_chart_is_accepted_by_the_api_server(cluster: Cluster, chart: ChartInstaller) -> None:
    """What the unit tests render, the real API server validates (dry-run=server) in both RBAC modes."""
    namespace = chart.namespace("e2e-dryrun")
    for sets in (["rbac.scope=cluster"], ["rbac.scope=namespace"]):
        manifests = cluster.helm(
            "template", "tradingstack-operator", str(CHART), "-n", namespace, "--skip-tests",
            "--set=grafanaDashboard.enabled=true", *[f"--set={s}" for s in sets],
        ).stdout  # fmt: skip
        result = cluster.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=manifests)
        assert "created (server dry run)" in result.stdout


def wait_for_status(cluster: Cluster, namespace: str, done: Any, timeout: float, what: str) -> dict[str, Any]:
    """Polls the stack's status until `done(status)` is truthy; a timeout shows the last status seen."""
    seen: list[dict[str, Any]] = [{}]

    def check() -> dict[str, Any] | None:
        seen[0] = stack_status(cluster, namespace)
        return seen[0] if done(seen[0]) else None

    try:
        return wait_for(check, timeout=timeout, what=what)
    except AssertionError as err:
        raise AssertionError(f"{err}\nlast status: {json.dumps(seen[0], indent=1)}") from None


def scale_and_change_image(cluster: Cluster, namespace: str) -> None:
    """Scale a service and change its image through the stack: the Deployment follows, pods become ready."""
    new_image = "ghcr.io/quantumtrader/demo-service:0.2.0"
    patch = [
        {"op": "replace", "path": "/spec/services/0/replicas", "value": 3},
        {"op": "replace", "path": "/spec/services/0/image", "value": new_image},
    ]
    cluster.kubectl("patch", "tradingstack", STACK, "-n", namespace, "--type=json", "-p", json.dumps(patch))

    def followed(status: dict[str, Any]) -> bool:
        ai = deployment(cluster, namespace, "ai-engine")
        return bool(
            ai["spec"]["replicas"] == 3
            and ai["spec"]["template"]["spec"]["containers"][0]["image"] == new_image
            and ai["status"].get("updatedReplicas") == 3
            and ai["status"].get("readyReplicas") == 3
            and status.get("services", {}).get("ai-engine", {}).get("ready") == 3
        )

    wait_for_status(cluster, namespace, followed, 90, "ai-engine at 3 ready replicas of the new image")


def delete_children_and_see_them_restored(cluster: Cluster, namespace: str) -> None:
    uid = deployment(cluster, namespace, "portfolio")["metadata"]["uid"]
    cluster.kubectl("delete", "deployment", f"{STACK}-portfolio", "-n", namespace)
    cluster.kubectl("delete", "service", f"{STACK}-execution", "-n", namespace)
    wait_for(
        lambda: (
            (d := get(cluster, "deployment", f"{STACK}-portfolio", namespace)) is not None
            and d["metadata"]["uid"] != uid
            and get(cluster, "service", f"{STACK}-execution", namespace) is not None
        ),
        timeout=60,
        what="deleted Deployment and Service restored",
    )


def restart_now(cluster: Cluster, namespace: str) -> None:
    """A restart run on demand: it succeeds, and every service got a ReplicaSet stamped with the run id."""
    trigger = f"e2e-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("annotate", "tradingstack", STACK, "-n", namespace, f"{RESTART_NOW}={trigger}", "--overwrite")
    status = wait_for_status(
        cluster,
        namespace,
        lambda s: (
            s.get("restarts", {}).get("handledTrigger") == trigger
            and s["restarts"].get("lastResult") in ("Succeeded", "Failed", "Skipped")
            and not s["restarts"].get("inProgress")
        ),
        180,
        f"restart run for {trigger} to finish",
    )
    assert status["restarts"]["lastResult"] == "Succeeded", status["restarts"]
    run_id = status["restarts"]["runId"]
    replica_sets = cluster.kubectl_json("get", "replicasets", "-n", namespace)["items"]
    for service in [s["name"] for s in load(EXAMPLE, namespace)["spec"]["services"]]:
        live = deployment(cluster, namespace, service)
        assert live["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT] == run_id, service
        stamped = [
            rs
            for rs in replica_sets
            if rs["metadata"]["ownerReferences"][0]["name"] == live["metadata"]["name"]
            and rs["spec"]["template"]["metadata"].get("annotations", {}).get(RESTARTED_AT) == run_id
        ]
        assert len(stamped) == 1, f"{service}: expected one ReplicaSet of run {run_id}"
        assert stamped[0]["status"].get("readyReplicas") == live["spec"]["replicas"], service


def run_backup_job_now(cluster: Cluster, namespace: str) -> None:
    """The backup CronJob's Job, run now. kwok's default stages complete pods owned by a Job (phase Succeeded,
    exit 0) without running anything: the Job completes, but no archive is written here (see the kind test)."""
    job = f"e2e-backup-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "job", f"--from=cronjob/{STACK}-postgres-backup", job, "-n", namespace)
    cluster.kubectl("wait", "--for=condition=Complete", f"job/{job}", "-n", namespace, "--timeout=90s", timeout=120)
    pods = cluster.kubectl_json("get", "pods", "-n", namespace, "-l", f"job-name={job}")["items"]
    assert [p["status"]["phase"] for p in pods] == ["Succeeded"]


def remaining_claims(cluster: Cluster, namespace: str) -> set[str]:
    items = cluster.kubectl_json("get", "pvc", "-n", namespace)["items"]
    return {c["metadata"]["name"] for c in items if not c["metadata"].get("deletionTimestamp")}


def test_cluster_mode_install_operate_uninstall(cluster: Cluster, chart: ChartInstaller, operator_as: Any) -> None:
    system = chart.namespace("e2e-system")
    stack_ns = chart.namespace(f"e2e-stack-{uuid.uuid4().hex[:4]}")
    release = chart.install(system, "rbac.scope=cluster", watched=[stack_ns])
    assert_crd_is_the_charts(cluster)

    # RBAC as installed: what the ServiceAccount may do in a namespace it has no Role in.
    listing = can_i_list(cluster, release, stack_ns)
    assert_golden("can-i-cluster.txt", listing, directory=GOLDEN)
    assert_no_wildcard_verbs(listing)
    assert not can_i(cluster, release, "list", "secrets", "--all-namespaces")  # get+create by name only
    assert not can_i(cluster, release, "create", "clusterrolebindings")

    operator = operator_as(release, stack_ns.rsplit("-", 1)[0] + "-*")
    cluster.apply(load(EXAMPLE, stack_ns), namespace=stack_ns)
    ready = wait_for_condition(cluster, stack_ns, STACK, "Ready", "True", READY_TIMEOUT)
    assert ready["status"]["readySummary"] == "6/6"
    assert remaining_claims(cluster, stack_ns) >= RETAINED_CLAIMS

    scale_and_change_image(cluster, stack_ns)
    delete_children_and_see_them_restored(cluster, stack_ns)
    wait_for_condition(cluster, stack_ns, STACK, "Ready", "True", 90)
    restart_now(cluster, stack_ns)
    run_backup_job_now(cluster, stack_ns)

    # Delete the stack while the operator runs (its finalizer), then uninstall the operator.
    cluster.kubectl("delete", "tradingstack", STACK, "-n", stack_ns, "--wait=true", "--timeout=90s", timeout=120)
    wait_for(
        lambda: not cluster.kubectl_json("get", "deployments,statefulsets,cronjobs", "-n", stack_ns)["items"],
        timeout=90,
        what="the stack's workloads garbage-collected",
    )
    operator.stop()
    chart.uninstall(release)

    assert get(cluster, "serviceaccount", release.service_account, system) is None
    assert get(cluster, "deployment", release.service_account, system) is None
    for kind in ("clusterrole", "clusterrolebinding"):
        assert cluster.kubectl("get", kind, release.service_account, check=False).returncode != 0, kind
    assert cluster.kubectl("get", "crd", CRD_NAME, check=False).returncode == 0, "helm never deletes crds/"
    assert remaining_claims(cluster, stack_ns) >= RETAINED_CLAIMS, "deletionPolicy Retain keeps the volumes"
    assert get(cluster, "secret", f"{STACK}-postgres", stack_ns) is not None, "Retain keeps the credentials"


def test_namespace_mode_grants_only_its_namespace(cluster: Cluster, chart: ChartInstaller, operator_as: Any) -> None:
    namespace = chart.namespace("e2e-nsmode")
    elsewhere = chart.namespace("e2e-elsewhere")
    release = chart.install(namespace, "rbac.scope=namespace")
    assert_crd_is_the_charts(cluster)

    listing = can_i_list(cluster, release, namespace)
    assert_golden("can-i-namespace.txt", listing, directory=GOLDEN)
    assert_no_wildcard_verbs(listing)
    assert "secrets" in listing  # its own namespace: the generated credentials
    outside = can_i_list(cluster, release, elsewhere)
    assert "secrets" not in outside and "tradingstacks" not in outside
    assert not can_i(cluster, release, "list", "secrets", "--all-namespaces")
    assert not can_i(cluster, release, "get", "secrets", "-n", elsewhere)
    assert not can_i(cluster, release, "list", "namespaces")
    cluster_roles = cluster.kubectl_json("get", "clusterroles", "-l", f"app.kubernetes.io/instance={release.name}")
    assert cluster_roles["items"] == []

    # The Role alone is enough to run a stack in that namespace, and to remove it again (the operator does no
    # cluster-wide scanning for exact namespace names, so nothing it is refused delays it).
    operator = operator_as(release, namespace)
    cluster.apply(load(MINIMAL, namespace), namespace=namespace)
    wait_for_condition(cluster, namespace, "minimal", "Ready", "True", READY_TIMEOUT)
    cluster.kubectl("delete", "tradingstack", "minimal", "-n", namespace, "--wait=true", "--timeout=90s", timeout=120)
    operator.stop()
    chart.uninstall(release)
    assert get(cluster, "role", release.service_account, namespace) is None
