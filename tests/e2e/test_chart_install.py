"""e2e: the operator chart installed with helm; the operator runs as the chart's own pod, from the image that
hack/images.sh builds, with exactly the chart's RBAC, and its stacks run on the real node.

Both RBAC modes install, run a stack to Ready and uninstall. The operator in cluster mode watches every
namespace (the chart's `--all-namespaces`), as in production; the scenarios that exercise a full stack on real
containers are in test_real_containers.py.
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

pytestmark = [pytest.mark.cluster, pytest.mark.real_containers]

GOLDEN = Path(__file__).parent / "golden"
EXAMPLE = REPO / "examples" / "quantum-trader.yaml"
MINIMAL = REPO / "examples" / "minimal.yaml"
STACK = "quantum-trader"
READY_TIMEOUT = 240
RESTART_NOW = "trading.quantumtrader.dev/restart-now"
RESTARTED_AT = "trading.quantumtrader.dev/restartedAt"
CHART_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
# Data the stack keeps on deletion with deletionPolicy Retain (the default).
RETAINED_CLAIMS = {
    "data-quantum-trader-postgres-0",
    "quantum-trader-postgres-backups",
    "data-quantum-trader-redis-0",
    "data-quantum-trader-redis-1",
    "data-quantum-trader-redis-2",
}
MINIMAL_CLAIMS = {"data-minimal-postgres-0", "minimal-postgres-backups", "data-minimal-redis-0"}


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


def remaining_claims(cluster: Cluster, namespace: str) -> set[str]:
    items = cluster.kubectl_json("get", "pvc", "-n", namespace)["items"]
    return {c["metadata"]["name"] for c in items if not c["metadata"].get("deletionTimestamp")}


def assert_operator_pod_runs_from_its_image(chart: ChartInstaller, release: Release, real_node: list[str]) -> None:
    for pod in chart.operator_pods(release):  # the standby too: its /healthz answers while it waits
        container = pod["spec"]["containers"][0]
        assert container["image"] == f"ghcr.io/quantumtrader/tradingstack-operator:{CHART_VERSION}"
        assert pod["spec"]["nodeName"] in real_node and pod["status"]["phase"] == "Running"
        status = pod["status"]["containerStatuses"][0]
        assert status["ready"] is True and status["restartCount"] == 0, status
        assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_cluster_mode_install_operate_uninstall(cluster: Cluster, chart: ChartInstaller, real_node: list[str]) -> None:
    system = chart.namespace("e2e-system")
    stack_ns = chart.namespace(f"e2e-stack-{uuid.uuid4().hex[:4]}")
    release = chart.install(system, "rbac.scope=cluster", watched=[stack_ns])
    assert_crd_is_the_charts(cluster)
    assert_operator_pod_runs_from_its_image(chart, release, real_node)

    # RBAC as installed: what the ServiceAccount may do in a namespace it has no Role in.
    listing = can_i_list(cluster, release, stack_ns)
    assert_golden("can-i-cluster.txt", listing, directory=GOLDEN)
    assert_no_wildcard_verbs(listing)
    assert not can_i(cluster, release, "list", "secrets", "--all-namespaces")  # get+create by name only
    assert not can_i(cluster, release, "create", "clusterrolebindings")

    cluster.apply(load(MINIMAL, stack_ns), namespace=stack_ns)
    ready = wait_for_condition(cluster, stack_ns, "minimal", "Ready", "True", READY_TIMEOUT)
    assert ready["status"]["readySummary"] == "1/1"
    assert remaining_claims(cluster, stack_ns) >= MINIMAL_CLAIMS

    # Delete the stack while the operator runs (its finalizer), then uninstall the operator.
    cluster.kubectl("delete", "tradingstack", "minimal", "-n", stack_ns, "--wait=true", "--timeout=90s", timeout=120)
    wait_for(
        lambda: not cluster.kubectl_json("get", "deployments,statefulsets,cronjobs", "-n", stack_ns)["items"],
        timeout=90,
        what="the stack's workloads garbage-collected",
    )
    chart.uninstall(release)

    assert get(cluster, "serviceaccount", release.service_account, system) is None
    assert get(cluster, "deployment", release.service_account, system) is None
    for kind in ("clusterrole", "clusterrolebinding"):
        assert cluster.kubectl("get", kind, release.service_account, check=False).returncode != 0, kind
    assert cluster.kubectl("get", "crd", CRD_NAME, check=False).returncode == 0, "helm never deletes crds/"
    assert remaining_claims(cluster, stack_ns) >= MINIMAL_CLAIMS, "deletionPolicy Retain keeps the volumes"
    assert get(cluster, "secret", "minimal-postgres", stack_ns) is not None, "Retain keeps the credentials"


def test_namespace_mode_grants_only_its_namespace(
    cluster: Cluster, chart: ChartInstaller, real_node: list[str]
) -> None:
    namespace = chart.namespace("e2e-nsmode")
    elsewhere = chart.namespace("e2e-elsewhere")
    release = chart.install(namespace, "rbac.scope=namespace")
    assert_crd_is_the_charts(cluster)
    assert_operator_pod_runs_from_its_image(chart, release, real_node)

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
    cluster.apply(load(MINIMAL, namespace), namespace=namespace)
    wait_for_condition(cluster, namespace, "minimal", "Ready", "True", READY_TIMEOUT)
    cluster.kubectl("delete", "tradingstack", "minimal", "-n", namespace, "--wait=true", "--timeout=90s", timeout=120)
    chart.uninstall(release)
    assert get(cluster, "role", release.service_account, namespace) is None
