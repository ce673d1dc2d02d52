"""The local control plane behaves like a real cluster: real API server, controllers, scheduler,
Pod Security Admission and helm. No mocks; every wait polls with a generous timeout."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.cluster import REPO, Cluster, CommandError, wait_for

pytestmark = pytest.mark.cluster

IMAGE = "registry.k8s.io/pause:3.10"


def restricted_pod_spec(restart_policy: str = "Always") -> dict[str, Any]:
    """A pod spec that passes Pod Security Admission at level restricted."""
    return {
        "restartPolicy": restart_policy,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "main",
                "image": IMAGE,
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                },
            }
        ],
    }


def get(cluster: Cluster, namespace: str, *args: str) -> Any:
    return cluster.kubectl_json("-n", namespace, "get", *args)


def test_server_reports_the_release_built(cluster: Cluster) -> None:
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == cluster.version
    assert version["clientVersion"]["gitVersion"] == cluster.version
    assert version["serverVersion"]["major"] == "1"


def test_admin_reads_apiserver_metrics(cluster: Cluster) -> None:
    metrics = cluster.kubectl("get", "--raw", "/metrics").stdout
    assert "apiserver_request_total" in metrics


def test_nodes_are_ready_with_room_for_a_stack(cluster: Cluster) -> None:
    nodes = cluster.kubectl_json("get", "nodes")["items"]
    ready = [
        n
        for n in nodes
        if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", []))
    ]
    assert len(ready) >= 3
    for node in ready:
        assert int(node["status"]["allocatable"]["pods"]) >= 110


def test_deployment_becomes_available_and_rolls_a_new_replicaset(cluster: Cluster, namespace: str) -> None:
    labels = {"app": "web"}
    cluster.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": restricted_pod_spec()},
            },
        },
        namespace,
    )

    def available() -> bool:
        status = get(cluster, namespace, "deployment", "web")["status"]
        return bool(status.get("availableReplicas") == 2 and status.get("readyReplicas") == 2)

    wait_for(available, timeout=180, what="deployment web available")
    first_rs = get(cluster, namespace, "replicasets", "-l", "app=web")["items"]
    assert len(first_rs) == 1

    patch = {"spec": {"template": {"metadata": {"annotations": {"tradingstack.test/restarted-at": "now"}}}}}
    cluster.kubectl("-n", namespace, "patch", "deployment", "web", "--type=merge", "-p", json.dumps(patch))

    def rolled() -> bool:
        items = get(cluster, namespace, "replicasets", "-l", "app=web")["items"]
        if len(items) != 2:
            return False
        by_rev = sorted(items, key=lambda rs: int(rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]))
        old, new = by_rev
        return bool(
            old["metadata"]["uid"] == first_rs[0]["metadata"]["uid"]
            and new["spec"]["replicas"] == 2
            and new["status"].get("availableReplicas") == 2
            and old["spec"]["replicas"] == 0
        )

    wait_for(rolled, timeout=180, what="a new replicaset with all replicas")
    wait_for(available, timeout=180, what="deployment web available after the rollout")


def test_cronjob_spawns_a_job(cluster: Cluster, namespace: str) -> None:
    cluster.apply(
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "tick"},
            "spec": {
                "schedule": "* * * * *",
                "jobTemplate": {"spec": {"template": {"spec": restricted_pod_spec("Never")}}},
            },
        },
        namespace,
    )

    def jobs() -> list[Any]:
        return [
            j
            for j in get(cluster, namespace, "jobs")["items"]
            if any(o["kind"] == "CronJob" and o["name"] == "tick" for o in j["metadata"].get("ownerReferences", []))
        ]

    # the schedule fires at the next minute boundary: at most 60 s plus controller latency
    spawned = wait_for(jobs, timeout=150, interval=2, what="a job spawned by cronjob tick")
    assert spawned[0]["metadata"]["name"].startswith("tick-")


def test_statefulset_gets_its_volume_claims(cluster: Cluster, namespace: str) -> None:
    labels = {"app": "db"}
    cluster.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "db"},
            "spec": {
                "serviceName": "db",
                "replicas": 2,
                "podManagementPolicy": "Parallel",
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": restricted_pod_spec()},
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "data"},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": "1Gi"}},
                        },
                    }
                ],
            },
        },
        namespace,
    )

    def claims() -> set[str]:
        names = {p["metadata"]["name"] for p in get(cluster, namespace, "pvc")["items"]}
        return names if {"data-db-0", "data-db-1"} <= names else set()

    wait_for(claims, timeout=120, what="PVCs data-db-0 and data-db-1")
    # local-path provisions them (on kwok's fake nodes its helper pods complete like any Job's), so the pods get
    # scheduled and become ready
    wait_for(
        lambda: get(cluster, namespace, "statefulset", "db")["status"].get("readyReplicas") == 2,
        timeout=180,
        what="statefulset db ready",
    )


def test_garbage_collector_deletes_dependents(cluster: Cluster, namespace: str) -> None:
    cluster.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}}, namespace)
    owner_uid = get(cluster, namespace, "configmap", "owner")["metadata"]["uid"]
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "dependent",
                "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid}],
            },
            "data": {"k": "v"},
        },
        namespace,
    )
    cluster.kubectl("-n", namespace, "delete", "configmap", "owner")

    def gone() -> bool:
        proc = cluster.kubectl("-n", namespace, "get", "configmap", "dependent", check=False)
        return proc.returncode != 0 and "NotFound" in proc.stderr

    wait_for(gone, timeout=120, what="the garbage collector to delete configmap dependent")


def test_pod_security_admission_enforces_restricted(cluster: Cluster, namespace: str) -> None:
    privileged = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bad"},
        "spec": {"containers": [{"name": "main", "image": IMAGE, "securityContext": {"privileged": True}}]},
    }
    with pytest.raises(CommandError) as rejected:
        cluster.apply(privileged, namespace)
    assert "violates PodSecurity" in str(rejected.value)
    assert "restricted" in str(rejected.value)

    cluster.apply(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "good"}, "spec": restricted_pod_spec()}, namespace
    )

    def ready() -> bool:
        pod = get(cluster, namespace, "pod", "good")
        return pod["status"].get("phase") == "Running" and any(
            c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", [])
        )

    wait_for(ready, timeout=120, what="pod good running and ready")


def test_helm_installs_and_uninstalls_a_chart(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    chart = tmp_path / "hello"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: hello\nversion: 0.1.0\nappVersion: '1.0'\n")
    (chart / "values.yaml").write_text("greeting: hi\n")
    (chart / "templates" / "configmap.yaml").write_text(
        textwrap.dedent(
            """\
            apiVersion: v1
            kind: ConfigMap
            metadata:
              name: {{ .Release.Name }}-greeting
            data:
              greeting: {{ .Values.greeting | quote }}
            """
        )
    )
    # keep helm's config/cache out of $HOME
    env = {var: str(tmp_path / var.lower()) for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME")}

    cluster.helm("install", "greet", str(chart), "-n", namespace, "--set", "greeting=hello", "--wait", env=env)
    cm = get(cluster, namespace, "configmap", "greet-greeting")
    assert cm["data"] == {"greeting": "hello"}
    assert "greet" in cluster.helm("list", "-n", namespace, "-q", env=env).stdout.split()

    cluster.helm("uninstall", "greet", "-n", namespace, "--wait", env=env)
    wait_for(
        lambda: cluster.kubectl("-n", namespace, "get", "configmap", "greet-greeting", check=False).returncode != 0,
        timeout=60,
        what="configmap greet-greeting removed",
    )
    assert cluster.helm("list", "-n", namespace, "-q", env=env).stdout.strip() == ""


NODE_SH = REPO / "hack" / "node.sh"


def route_device(address: str) -> str:
    out = subprocess.run(["ip", "-o", "route", "get", address], capture_output=True, text=True, check=True).stdout
    return out.split(" dev ", 1)[1].split()[0]


def guard_drops() -> dict[str, int]:
    out = subprocess.run([str(NODE_SH), "guard"], capture_output=True, text=True, check=True).stdout
    return {key: int(value) for key, value in (item.split("=") for item in out.split())}


def test_the_real_node_runs_containerd_beside_tainted_fake_nodes(cluster: Cluster) -> None:
    nodes = {n["metadata"]["name"]: n for n in cluster.kubectl_json("get", "nodes")["items"]}
    real = nodes["real-0"]
    assert real["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://2.")
    assert {c["type"]: c["status"] for c in real["status"]["conditions"]}["Ready"] == "True"
    assert not real["spec"].get("taints")
    fake = [n for n in nodes.values() if n["metadata"].get("labels", {}).get("type") == "kwok"]
    assert len(fake) >= 3
    for node in fake:
        assert {t["key"] for t in node["spec"].get("taints", [])} == {"kwok.x-k8s.io/node"}


def test_pod_and_service_addresses_never_leave_this_machine(cluster: Cluster) -> None:
    """Every Service IP and every pod address (real or kwok's fake ones) routes to a local bridge, and the guard
    table that drops what would leave through the uplink exists and has dropped nothing so far."""
    services = cluster.kubectl_json("get", "services", "-A")["items"]
    service_ips = [s["spec"]["clusterIP"] for s in services if s["spec"].get("clusterIP") not in (None, "None")]
    pods = cluster.kubectl_json("get", "pods", "-A")["items"]
    pod_ips = [p["status"]["podIP"] for p in pods if p["status"].get("podIP")]
    for address in [*service_ips, *pod_ips, "10.96.255.254", "10.244.200.7"]:
        assert route_device(address).startswith("ts-"), address
    assert guard_drops() == {"forward": 0, "output": 0}
