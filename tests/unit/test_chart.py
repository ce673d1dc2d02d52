"""The Helm chart charts/tradingstack-operator: lint, render, Pod Security, RBAC, values schema, CRD drift, golden.

These tests run the real `helm` binary (found on PATH or under ~/.cache/tradingstack/*/bin/helm, where
`hack/cluster.sh build` puts it). Without it they fail with instructions instead of skipping: a chart that was
never rendered is not a tested chart.

Regenerate the golden file with `UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_chart.py`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.dashboard import POSTGRES_ROW, REDIS_ROW, exporter_metrics
from tests.psa import pod_specs, restricted_violations
from tradingstack.api import TradingStack
from tradingstack.api.crd import render_crd_yaml
from tradingstack.api.spec import TradingStackSpec
from tradingstack.cli import build_parser
from tradingstack.components import render as render_stack
from tradingstack.components.rbac import render_rbac_template
from tradingstack.contract import Exporter, OperatorEnv
from tradingstack.render.common import METRICS_PORT_NAME
from tradingstack.render.network import DEFAULT_DNS_PEER, OPERATOR_POD_LABELS
from tradingstack.render.postgres import BACKUP_IMAGE

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "tradingstack-operator"
GOLDEN = Path(__file__).parent / "golden" / "chart-default.yaml"
CACHE = Path(os.environ.get("TRADINGSTACK_CACHE", str(Path.home() / ".cache" / "tradingstack")))

RELEASE = "tradingstack-operator"
NAMESPACE = "tradingstack-system"
SA_NAME = RELEASE  # the release name contains the chart name, so fullname == release name

APPLIED = {"get", "list", "watch", "create", "patch", "delete"}
# (apiGroup, resource) -> verbs the operator needs on namespaced objects, in either RBAC mode: only what the code
# uses (server-side apply is a patch that creates a missing object; nothing is ever updated with PUT).
NAMESPACED_PERMISSIONS: dict[tuple[str, str], set[str]] = {
    ("trading.quantumtrader.dev", "tradingstacks"): {"get", "list", "watch", "patch"},
    ("trading.quantumtrader.dev", "tradingstacks/status"): {"patch"},
    ("apps", "deployments"): APPLIED,
    ("apps", "statefulsets"): APPLIED,
    ("", "services"): APPLIED,
    ("", "configmaps"): APPLIED,
    # Generated credentials: created once and read back by name; patched in their owner references (which follow
    # deletionPolicy) and, for the TLS server certificate only, in their data (renewal); never listed, watched or
    # deleted.
    ("", "secrets"): {"get", "create", "patch"},
    ("", "persistentvolumeclaims"): {"get", "list", "watch", "create", "patch"},
    # Listed for the backup pods' results, patched for the Redis master label, deleted to roll a Patroni member
    # onto a new template; watched only because the operator grants that to the Patroni pods' Role (a Role grants
    # only what its creator holds).
    ("", "pods"): {"list", "watch", "patch", "delete"},
    # The Patroni pods' ServiceAccount, Role and RoleBinding (spec.postgres.instances > 1).
    ("", "serviceaccounts"): APPLIED,
    ("rbac.authorization.k8s.io", "roles"): APPLIED,
    ("rbac.authorization.k8s.io", "rolebindings"): APPLIED,
    ("batch", "cronjobs"): APPLIED,
    ("batch", "jobs"): {"get", "list", "watch", "create", "patch"},
    ("policy", "poddisruptionbudgets"): APPLIED,
    ("networking.k8s.io", "networkpolicies"): APPLIED,
    ("", "events"): {"create"},
}
# Leader election: the Lease in the release namespace, read, created once and replaced (PUT) to renew it.
LEADER_ELECTION_PERMISSIONS: dict[tuple[str, str], set[str]] = {
    ("coordination.k8s.io", "leases"): {"get", "create", "update"},
}
LEADER_ELECTION_ROLE = f"{RELEASE}-leader-election"
OBSERVATION_PERMISSIONS: dict[tuple[str, str], set[str]] = {
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"get", "list", "watch"},
    ("", "namespaces"): {"list", "watch"},
}

STACK_SPEC: dict[str, Any] = {
    "services": [
        {"name": "ai-engine", "image": "registry.example/ai-engine:1.4.2", "port": 8001, "uses": ["redis"]},
    ],
    "deletionPolicy": "Retain",
}


def _find_helm() -> str | None:
    on_path = shutil.which("helm")
    if on_path:
        return on_path
    cached = sorted(CACHE.glob("*/bin/helm"), reverse=True)
    return str(cached[0]) if cached else None


@pytest.fixture(scope="module")
def helm() -> str:
    path = _find_helm()
    if path is None:
        pytest.fail(
            "the chart tests need the `helm` binary: none on PATH and none under "
            f"{CACHE}/*/bin/helm. Build the cached binaries with `hack/cluster.sh build` (or `make prereqs`), "
            "or put helm on PATH.",
            pytrace=False,
        )
    return path


def run_helm(helm: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "HELM_CACHE_HOME": "/tmp/tradingstack-helm/cache",
        "HELM_CONFIG_HOME": "/tmp/tradingstack-helm",
    }
    result = subprocess.run([helm, *args], capture_output=True, text=True, env=env, timeout=120, check=False)
    if check and result.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def template_text(helm: str, *sets: str, values: dict[str, Any] | None = None, tmp: Path | None = None) -> str:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    for item in sets:
        args += ["--set", item]
    if values is not None:
        assert tmp is not None
        file = tmp / "values.yaml"
        file.write_text(yaml.safe_dump(values))
        args += ["--values", str(file)]
    return run_helm(helm, *args).stdout


def render(
    helm: str, *sets: str, values: dict[str, Any] | None = None, tmp: Path | None = None
) -> list[dict[str, Any]]:
    docs = yaml.safe_load_all(template_text(helm, *sets, values=values, tmp=tmp))
    return [d for d in docs if d]


def of_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of_kind(objs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def permissions(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


# Renderings every structural test runs over: defaults, namespace mode, and everything optional switched on.
VARIANTS: dict[str, list[str]] = {
    "default": [],
    "namespace": ["rbac.scope=namespace", "watchNamespaces={team-a,team-b}"],
    "namespace-default-ns": ["rbac.scope=namespace"],
    "everything": [
        "serviceMonitor.enabled=true",
        "grafanaDashboard.enabled=true",
        "prometheusRule.enabled=true",
        "stack.enabled=true",
        "rbac.scope=namespace",
    ],
}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def rendered(request: pytest.FixtureRequest, helm: str) -> Iterator[list[dict[str, Any]]]:
    yield render(helm, *VARIANTS[request.param])


# ---------------------------------------------------------------------------------------------------------------
# lint and render


@pytest.mark.parametrize("scope", ["cluster", "namespace"])
def test_helm_lint_passes(helm: str, scope: str) -> None:
    result = run_helm(helm, "lint", str(CHART), "--strict", "--namespace", NAMESPACE, "--set", f"rbac.scope={scope}")
    assert "0 chart(s) failed" in result.stdout


def test_default_render_has_the_expected_objects(helm: str) -> None:
    objs = render(helm)
    kinds = sorted(o["kind"] for o in objs)
    expected = ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Deployment", "Service",
                "NetworkPolicy", "PodDisruptionBudget"]  # fmt: skip
    assert kinds == sorted([*expected, "Pod"]), kinds
    for obj in objs:
        if obj["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]


def test_the_budget_lets_a_drain_take_one_of_several_operator_pods(helm: str) -> None:
    budget = one(render(helm), "PodDisruptionBudget")
    deployment = one(render(helm), "Deployment")
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    # One pod gets none: a budget on it would block every node drain.
    assert of_kind(render(helm, "replicaCount=1", "leaderElection.enabled=false"), "PodDisruptionBudget") == []


def test_deployment_runs_the_operator(helm: str) -> None:
    deployment = one(render(helm), "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == SA_NAME
    (container,) = pod["containers"]
    assert container["image"] == "ghcr.io/quantumtrader/tradingstack-operator:0.1.0"  # tag = appVersion
    assert container["args"] == [
        "run",
        "--all-namespaces",
        "--health-port",
        "8080",
        "--metrics-port",
        "9102",
        "--log-level",
        "INFO",
        "--resync-seconds",
        "30",
        "--leader-election",
    ]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"health": 8080, "metrics": 9102}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PYTHONUNBUFFERED"] == "1"
    downward = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"] if "valueFrom" in e}
    assert downward == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}  # Lease identity, place
    assert set(spec["selector"]["matchLabels"].items()) <= set(spec["template"]["metadata"]["labels"].items())


def test_the_operators_network_policy_admits_its_two_ports_and_lets_it_reach_what_it_calls(helm: str) -> None:
    objs = render(helm)
    spec = one(objs, "NetworkPolicy")["spec"]
    pod_labels = one(objs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert set(spec["podSelector"]["matchLabels"].items()) <= set(pod_labels.items())
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"] == [{"ports": [{"protocol": "TCP", "port": 8080}, {"protocol": "TCP", "port": 9102}]}]
    api, dns, sentinels, services = spec["egress"]
    assert api == {
        "to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
        "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}],
    }
    assert dns == {
        "to": [DEFAULT_DNS_PEER],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }
    assert sentinels["ports"] == [{"protocol": "TCP", "port": 26379}]
    assert sentinels["to"][0]["namespaceSelector"] == {} == services["to"][0]["namespaceSelector"]
    assert services["ports"] == [{"protocol": "TCP", "port": 1024, "endPort": 65535}]
    # The stacks' pods carry the labels it selects (render.common.labels).
    stack = TradingStack.model_validate({"metadata": {"name": "s", "namespace": "n", "uid": "u"}, "spec": {}})
    sentinel = next(
        o
        for o in render_stack(stack, stack.owner_reference())
        if o["metadata"]["name"] == "s-redis-sentinel" and o["kind"] == "StatefulSet"
    )
    labels = sentinel["spec"]["template"]["metadata"]["labels"]
    for peer in (sentinels, services):
        assert set(peer["to"][0]["podSelector"]["matchLabels"].items()) <= set(labels.items())
    assert "TRADINGSTACK_DNS_CIDRS" not in {
        e["name"] for e in one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    }


def test_dns_networks_replace_the_kube_dns_pods_for_the_operator_and_its_stacks(helm: str) -> None:
    objs = render(helm, "networkPolicy.dns.cidrs={10.244.0.1/32,10.96.0.10/32}", "networkPolicy.apiServer.ports={6443}")
    api, dns, *_ = one(objs, "NetworkPolicy")["spec"]["egress"]
    assert dns["to"] == [{"ipBlock": {"cidr": "10.244.0.1/32"}}, {"ipBlock": {"cidr": "10.96.0.10/32"}}]
    assert api["ports"] == [{"protocol": "TCP", "port": 6443}]
    env = {
        e["name"]: e.get("value") for e in one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env[OperatorEnv.DNS_CIDRS] == "10.244.0.1/32,10.96.0.10/32"


def test_the_operator_reads_the_dns_networks_the_chart_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(OperatorEnv.DNS_CIDRS, "10.244.0.1/32,10.96.0.10/32")
    assert build_parser().parse_args(["run", "-A"]).dns_cidrs == ("10.244.0.1/32", "10.96.0.10/32")
    monkeypatch.delenv(OperatorEnv.DNS_CIDRS)
    assert build_parser().parse_args(["run", "-A"]).dns_cidrs == ()
    for bad in ("10.0.0.1", "10.0.0.1/24", "kube-dns"):  # no prefix, host bits set, no address
        with pytest.raises(SystemExit):
            build_parser().parse_args(["run", "-A", "--dns-cidrs", bad])


def test_without_data_plane_reads_the_operator_reaches_no_stack_and_the_policy_can_be_off(helm: str) -> None:
    egress = one(render(helm, "operator.readDataPlane=false"), "NetworkPolicy")["spec"]["egress"]
    assert len(egress) == 2  # the API server and the DNS
    assert of_kind(render(helm, "networkPolicy.enabled=false"), "NetworkPolicy") == []


def test_without_leader_election_one_replica_is_recreated(helm: str) -> None:
    objs = render(helm, "leaderElection.enabled=false", "replicaCount=1")
    spec = one(objs, "Deployment")["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    assert "--leader-election" not in operator_args(objs)
    assert not of_kind(objs, "Role")


@pytest.mark.parametrize("scope", ["cluster", "namespace"])
def test_leader_election_may_use_leases_in_the_release_namespace_only(helm: str, scope: str) -> None:
    objs = render(helm, f"rbac.scope={scope}", "watchNamespaces={team-a}")
    roles = {r["metadata"]["name"]: r for r in of_kind(objs, "Role")}
    role = roles[LEADER_ELECTION_ROLE]
    assert role["metadata"]["namespace"] == NAMESPACE
    assert permissions(role) == LEADER_ELECTION_PERMISSIONS
    (binding,) = [b for b in of_kind(objs, "RoleBinding") if b["metadata"]["name"] == LEADER_ELECTION_ROLE]
    assert binding["metadata"]["namespace"] == NAMESPACE
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": LEADER_ELECTION_ROLE}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": SA_NAME, "namespace": NAMESPACE}]
    others = [r for name, r in roles.items() if name != LEADER_ELECTION_ROLE] + of_kind(objs, "ClusterRole")
    assert all(("coordination.k8s.io", "leases") not in permissions(r) for r in others)


def operator_args(objs: list[dict[str, Any]]) -> list[str]:
    args: list[str] = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    return args


@pytest.mark.parametrize("sets", [[], *VARIANTS.values(), ["operator.readDataPlane=false", "operator.logLevel=debug"]])
def test_the_operator_cli_accepts_the_rendered_args(helm: str, sets: list[str]) -> None:
    args = build_parser().parse_args(operator_args(render(helm, *sets)))
    assert args.command == "run"
    assert args.health_port == 8080
    assert args.metrics_port == 9102
    if "rbac.scope=namespace" in sets:
        assert args.namespace and not args.all_namespaces
    else:
        assert args.all_namespaces and not args.namespace
    assert args.read_data_plane == ("operator.readDataPlane=false" not in sets)
    assert args.leader_election


def test_operator_pods_carry_the_label_the_network_policies_admit(helm: str) -> None:
    for sets in ([], ["fullnameOverride=ops"]):
        labels = one(render(helm, *sets), "Deployment")["spec"]["template"]["metadata"]["labels"]
        assert OPERATOR_POD_LABELS.items() <= labels.items()


def test_namespace_mode_watches_only_its_namespaces(helm: str) -> None:
    objs = render(helm, "rbac.scope=namespace", "watchNamespaces={team-a,team-b}")
    assert operator_args(objs)[:5] == ["run", "--namespace", "team-a", "--namespace", "team-b"]
    assert "--all-namespaces" not in operator_args(objs)
    assert not of_kind(objs, "ClusterRole")
    assert not of_kind(objs, "ClusterRoleBinding")
    roles = {r["metadata"]["namespace"]: r for r in of_kind(objs, "Role") if r["metadata"]["name"] == RELEASE}
    bindings = {b["metadata"]["namespace"]: b for b in of_kind(objs, "RoleBinding") if b["metadata"]["name"] == RELEASE}
    assert set(roles) == set(bindings) == {"team-a", "team-b"}
    for ns, role in roles.items():
        assert permissions(role) == NAMESPACED_PERMISSIONS
        binding = bindings[ns]
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": role["metadata"]["name"],
        }
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": SA_NAME, "namespace": NAMESPACE}]


def test_namespace_mode_defaults_to_the_release_namespace(helm: str) -> None:
    objs = render(helm, "rbac.scope=namespace")
    assert [r["metadata"]["namespace"] for r in of_kind(objs, "Role") if r["metadata"]["name"] == RELEASE] == [
        NAMESPACE
    ]
    assert operator_args(objs)[:3] == ["run", "--namespace", NAMESPACE]
    assert operator_args(objs)[3] == "--health-port"


def test_cluster_mode_grants_exactly_what_the_operator_needs(helm: str) -> None:
    objs = render(helm)
    role = one(objs, "ClusterRole")
    assert permissions(role) == {**NAMESPACED_PERMISSIONS, **OBSERVATION_PERMISSIONS}
    binding = one(objs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": SA_NAME, "namespace": NAMESPACE}]
    assert one(objs, "ServiceAccount")["metadata"]["name"] == SA_NAME


def test_the_rbac_template_is_generated_from_the_components() -> None:
    assert (CHART / "templates" / "rbac.yaml").read_text() == render_rbac_template(), "run `make rbac`"


def test_no_cluster_role_grants_secrets_in_namespace_mode(helm: str) -> None:
    assert of_kind(render(helm, "rbac.scope=namespace"), "ClusterRole") == []


def test_no_wildcards_in_any_role(rendered: list[dict[str, Any]]) -> None:
    roles = of_kind(rendered, "Role") + of_kind(rendered, "ClusterRole")
    assert roles
    for role in roles:
        for rule in role["rules"]:
            for key in ("verbs", "resources", "apiGroups", "resourceNames", "nonResourceURLs"):
                assert not any("*" in item for item in rule.get(key, [])), (role["metadata"]["name"], rule)
        assert "escalate" not in {v for r in role["rules"] for v in r["verbs"]}
        assert "bind" not in {v for r in role["rules"] for v in r["verbs"]}


# ---------------------------------------------------------------------------------------------------------------
# Pod Security "restricted"


def test_every_pod_is_psa_restricted(rendered: list[dict[str, Any]]) -> None:
    pods = {f"{obj['kind']}/{obj['metadata']['name']}": pod for obj in rendered for pod in pod_specs(obj)}
    assert len(pods) >= 2  # the operator and the helm test pod
    problems = {name: restricted_violations(pod) for name, pod in pods.items()}
    assert not {name: p for name, p in problems.items() if p}


def test_the_checker_catches_a_privileged_pod() -> None:
    pod = {"containers": [{"name": "c", "securityContext": {"privileged": True}}], "hostNetwork": True}
    assert len(restricted_violations(pod)) >= 6


# ---------------------------------------------------------------------------------------------------------------
# the helm test hook, metrics, dashboard, stack


def test_helm_test_pod_checks_health_through_the_service(helm: str) -> None:
    objs = render(helm, "tests.image.repository=registry.local/curl", "tests.image.tag=8")
    pod = one(objs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "registry.local/curl:8"
    service = one(objs, "Service")
    url = f"http://{service['metadata']['name']}.{NAMESPACE}.svc:8080/healthz"
    assert url in container["args"]
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {"metrics": 9102, "health": 8080}
    deployment = one(objs, "Deployment")
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_service_monitor_scrapes_the_metrics_port(helm: str) -> None:
    objs = render(helm, "serviceMonitor.enabled=true", "serviceMonitor.labels.release=prom")
    monitor = one(objs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= one(objs, "Service")["metadata"]["labels"].items()
    assert not of_kind(render(helm), "ServiceMonitor")


@pytest.mark.parametrize(
    ("sets", "namespaces"),
    [([], {"any": True}), (["rbac.scope=namespace", "watchNamespaces={a,b}"], {"matchNames": ["a", "b"]})],
)
def test_the_data_store_monitor_scrapes_the_exporters_of_the_rendered_services(
    helm: str, sets: list[str], namespaces: dict[str, Any]
) -> None:
    monitor = one(render(helm, "dataStoreMonitor.enabled=true", "dataStoreMonitor.labels.release=prom", *sets),
                  "ServiceMonitor")  # fmt: skip
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["namespaceSelector"] == namespaces
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == (METRICS_PORT_NAME, Exporter.METRICS_PATH)
    stack = TradingStack.model_validate({"metadata": {"name": "t", "namespace": "a"}, "spec": {
        "redis": {"metrics": {"enabled": True}}, "postgres": {"metrics": {"enabled": True}}}})  # fmt: skip
    selector = monitor["spec"]["selector"]
    (expression,) = selector["matchExpressions"]
    selected = {
        o["metadata"]["name"]
        for o in render_stack(stack, stack.owner_reference())
        if o["kind"] == "Service"
        and selector["matchLabels"].items() <= o["metadata"]["labels"].items()
        and o["metadata"]["labels"][expression["key"]] in expression["values"]
        and METRICS_PORT_NAME in {p["name"] for p in o["spec"]["ports"]}
    }
    assert selected == {"t-redis", "t-postgres"}
    assert not of_kind(render(helm), "ServiceMonitor")


def test_prometheus_rule_carries_the_tested_alerts(helm: str) -> None:
    objs = render(helm, "prometheusRule.enabled=true", "prometheusRule.labels.release=prom")
    rule = one(objs, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "prom"
    shipped = yaml.safe_load((CHART / "alerts" / "tradingstack.rules.yaml").read_text())
    assert rule["spec"] == shipped  # the file promtool tests, unchanged (Prometheus templates kept as text)
    assert not of_kind(render(helm), "PrometheusRule")


def test_grafana_dashboard_uses_the_operator_metrics(helm: str) -> None:
    objs = render(helm, "grafanaDashboard.enabled=true")
    cm = [c for c in of_kind(objs, "ConfigMap") if c["metadata"]["name"].endswith("-dashboard")]
    assert len(cm) == 1
    assert cm[0]["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(cm[0]["data"]["tradingstack-operator.json"])
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p.get("targets", []))
    for metric in (
        "tradingstack_reconcile_duration_seconds_bucket",
        "tradingstack_reconcile_errors_total",
        "tradingstack_children_applied_total",
        "tradingstack_stacks",
    ):
        assert metric in exprs
    assert not [c for c in of_kind(render(helm), "ConfigMap")]


def test_stack_is_created_with_the_release_when_enabled(helm: str, tmp_path: Path) -> None:
    objs = render(helm, values={"stack": {"enabled": True, "name": "demo", "spec": STACK_SPEC}}, tmp=tmp_path)
    stack = one(objs, "TradingStack")
    assert stack["apiVersion"] == "trading.quantumtrader.dev/v1alpha1"
    assert stack["metadata"] == {**stack["metadata"], "name": "demo", "namespace": NAMESPACE}
    assert stack["spec"] == STACK_SPEC
    TradingStackSpec.model_validate(stack["spec"])
    assert not of_kind(render(helm), "TradingStack")


# ---------------------------------------------------------------------------------------------------------------
# values.schema.json


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["rbac.scope=galaxy"], "scope"),
        (["--set-string", "replicaCount=two"], "replicaCount"),
        (["replicaCount=2,leaderElection.enabled=false"], "replicaCount"),
        (["replicaCount=4"], "replicaCount"),
        (["leaderElection.enabled=sometimes"], "enabled"),
        (["image.pullPolicy=Sometimes"], "pullPolicy"),
        (["operator.metricsPort=80"], "metricsPort"),
        (["serviceMonitor.enabled=maybe"], "enabled"),
        (["watchNamespaces={Not_A_Namespace}"], "watchNamespaces"),
        (["noSuchValue=1"], "noSuchValue"),
    ],
)
def test_schema_rejects_bad_values(helm: str, sets: list[str], message: str) -> None:
    args = sets if sets[0].startswith("--") else ["--set", sets[0]]
    for command in (["template", RELEASE, str(CHART)], ["lint", str(CHART)]):
        result = run_helm(helm, *command, *args, check=False)
        assert result.returncode != 0, f"helm {command[0]} accepted {sets}"
        output = result.stdout + result.stderr
        assert "schema" in output.lower(), output
        assert message in output, output


def test_schema_accepts_every_documented_value(helm: str) -> None:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert set(defaults) <= set(schema["properties"])
    run_helm(helm, "template", RELEASE, str(CHART), "--values", str(CHART / "values.yaml"))


# ---------------------------------------------------------------------------------------------------------------
# CRD and golden file


def test_chart_crd_is_the_generated_crd() -> None:
    files = sorted(p.name for p in (CHART / "crds").iterdir())
    assert files == ["tradingstack.yaml"]
    assert (CHART / "crds" / "tradingstack.yaml").read_text() == render_crd_yaml(), (
        "charts/tradingstack-operator/crds/tradingstack.yaml is stale: run `make crds`"
    )


def test_golden_default_render(helm: str) -> None:
    text = template_text(helm)
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(text)
    assert GOLDEN.exists(), f"{GOLDEN} is missing: run with UPDATE_GOLDEN=1"
    assert text == GOLDEN.read_text(), "helm template output changed: review, then regenerate with UPDATE_GOLDEN=1"


# ---------------------------------------------------------------------------------------------------------------
# images


def image_references() -> list[str]:
    """What hack/images.sh builds (`list`): one reference per Dockerfile in images/."""
    result = subprocess.run(
        [str(REPO / "hack" / "images.sh"), "list"], capture_output=True, text=True, timeout=60, check=True
    )
    return result.stdout.split()


def test_every_image_the_project_defaults_to_is_built_here(helm: str) -> None:
    """The references the spec defaults, the renderers, the chart and the examples name are the ones
    hack/images.sh tags, so pods start from `make images` without a registry."""
    built = set(image_references())
    defaults = TradingStackSpec.model_validate({"services": []})
    named = {defaults.redis.image, defaults.postgres.image, defaults.gateway.image, BACKUP_IMAGE}
    deployment = next(d for d in yaml.safe_load_all(template_text(helm)) if d and d["kind"] == "Deployment")
    named.add(deployment["spec"]["template"]["spec"]["containers"][0]["image"])
    for example in sorted((REPO / "examples").glob("*.yaml")):
        named |= {s["image"] for s in yaml.safe_load(example.read_text())["spec"]["services"]}
    assert named <= built, f"named but never built: {sorted(named - built)}"
    dockerfiles = sorted(p.parent.name for p in (REPO / "images").glob("*/Dockerfile"))
    assert len(built) == len(dockerfiles), (built, dockerfiles)


FAKE_TOOL = """#!/bin/sh
echo "$(basename "$0") $*" >> "$CALLS"
exit 0
"""


def test_images_script_builds_with_docker_where_an_engine_answers(tmp_path: Path) -> None:
    """With a (recording) docker whose `info` succeeds, every Dockerfile is built with docker from the repo root,
    each image on its upstream base; `load` with CLUSTER=kind loads each into kind."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("docker", "kind"):
        (bin_dir / tool).write_text(FAKE_TOOL)
        (bin_dir / tool).chmod(0o755)
    calls = tmp_path / "calls"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls), "TAG": "9.9.9"}
    script = str(REPO / "hack" / "images.sh")
    for command, extra in (("build", {}), ("load", {"CLUSTER": "kind"})):
        result = subprocess.run(
            [script, command], capture_output=True, text=True, env={**env, **extra}, timeout=60, check=False
        )
        assert result.returncode == 0, result.stderr
    lines = calls.read_text().splitlines()
    builds = [line for line in lines if line.startswith("docker build")]
    assert len(builds) == len(list((REPO / "images").glob("*/Dockerfile")))
    assert all(line.endswith(f" {REPO}") and "BASE_IMAGE=" not in line for line in builds)
    assert any("--tag ghcr.io/quantumtrader/tradingstack-operator:9.9.9" in line for line in builds)
    backup = next(line for line in builds if "images/backup/Dockerfile" in line)
    assert "POSTGRES_IMAGE=ghcr.io/quantumtrader/tradingstack-postgres:9.9.9-pg15" in backup
    loads = [line.rsplit(" ", 1)[-1] for line in lines if line.startswith("kind load docker-image --name tradingstack")]
    assert loads == [ref.replace("0.1.0", "9.9.9") for ref in image_references()]


@pytest.mark.parametrize(
    ("row", "metrics"),
    [
        (REDIS_ROW, {"redis_up", "redis_memory_used_bytes", "redis_connected_clients", "redis_connected_slaves",
                     "redis_commands_processed_total"}),
        (POSTGRES_ROW, {"pg_up", "pg_stat_database_xact_commit", "pg_database_size_bytes",
                        "pg_stat_database_numbackends"}),
    ],
)  # fmt: skip
def test_the_dashboard_has_a_row_per_data_store_exporter(row: str, metrics: set[str]) -> None:
    # tests/component/metrics check that the exporters serve these names; the e2e that Prometheus answers them.
    assert metrics <= exporter_metrics(row)
