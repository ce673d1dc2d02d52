"""Helpers of the e2e suite: the chart installed with helm into PSA-restricted namespaces, cluster detection."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from tests.fixtures.cluster import REPO, Cluster, wait_for

CHART = REPO / "charts" / "tradingstack-operator"
CRD_NAME = "tradingstacks.trading.quantumtrader.dev"
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
    "tradingstack.test/namespace": "true",
}
STRANGER_IMAGE = "ghcr.io/quantumtrader/demo-service:0.1.0"
"""Test pods that are not the stack's run the demo-service image for its Python (they carry their own labels)."""


def real_nodes(cluster: Cluster) -> list[str]:
    """Ready nodes whose kubelet runs containers (containerd), as opposed to kwok's fake nodes."""
    names = []
    for node in cluster.kubectl_json("get", "nodes")["items"]:
        runtime = node["status"].get("nodeInfo", {}).get("containerRuntimeVersion", "")
        ready = {c["type"]: c["status"] for c in node["status"].get("conditions", [])}.get("Ready")
        if runtime.startswith("containerd://") and ready == "True":
            names.append(node["metadata"]["name"])
    return names


def create_restricted_namespace(cluster: Cluster, prefix: str) -> str:
    """A fresh namespace enforcing Pod Security 'restricted', with its default ServiceAccount ready."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    cluster.apply(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": RESTRICTED}},
    )
    wait_for(
        lambda: cluster.kubectl("-n", name, "get", "serviceaccount", "default", check=False).returncode == 0,
        timeout=60,
        what=f"serviceaccount default in {name}",
    )
    return name


@dataclass
class Release:
    name: str
    namespace: str
    watched: list[str]
    installed: bool = True

    @property
    def service_account(self) -> str:
        """The chart's fullname rule: <release>-tradingstack-operator unless the release name contains it."""
        return self.name if "tradingstack-operator" in self.name else f"{self.name}-tradingstack-operator"

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


@dataclass
class ChartInstaller:
    cluster: Cluster
    releases: list[Release] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)

    def namespace(self, prefix: str) -> str:
        name = create_restricted_namespace(self.cluster, prefix)
        self.namespaces.append(name)
        return name

    def install(self, namespace: str, *sets: str, watched: list[str] | None = None) -> Release:
        release = Release(name=f"e2e-{uuid.uuid4().hex[:6]}", namespace=namespace, watched=watched or [namespace])
        self.releases.append(release)
        args = [f"--set={s}" for s in sets]
        # --wait: the operator Deployment becomes available: its pod was admitted under PSA restricted, started
        # from the image and passes its own readiness probe.
        self.cluster.helm(
            "install", release.name, str(CHART), "-n", namespace, "--wait", "--timeout=180s", *args, timeout=240
        )
        return release

    def operator_pods(self, release: Release) -> list[dict[str, Any]]:
        """The release's operator pods: the chart's two replicas (one leads, one stands by)."""
        pods = self.cluster.kubectl_json(
            "get", "pods", "-n", release.namespace, "-l", f"app.kubernetes.io/instance={release.name}"
        )["items"]
        assert len(pods) == 2, [p["metadata"]["name"] for p in pods]
        return [dict(pod) for pod in pods]

    def uninstall(self, release: Release) -> None:
        self.cluster.helm("uninstall", release.name, "-n", release.namespace, "--wait", "--timeout=120s")
        release.installed = False

    def cleanup(self) -> None:
        for release in self.releases:
            for ns in release.watched:
                self._drop_stacks(ns)
            if release.installed:
                self.cluster.helm("uninstall", release.name, "-n", release.namespace, check=False)
        for ns in self.namespaces:
            self.cluster.kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)
        # Real pods hold the node's CPU until they are gone: the next test starts on an idle node.
        for ns in self.namespaces:
            self.cluster.kubectl("wait", "--for=delete", f"namespace/{ns}", "--timeout=240s", check=False, timeout=260)

    def _drop_stacks(self, namespace: str) -> None:
        # Teardown after a failed test: the operator is going, so release kopf's finalizer by hand. Deleted first:
        # once the deletion timestamp is set a finalizer can only be removed, while a live operator would add its
        # finalizer back to a stack that is not being deleted yet (the stack, and so its namespace, then stayed
        # Terminating and every teardown waited out its 240 s).
        result = self.cluster.kubectl("get", "tradingstacks", "-n", namespace, "-o", "json", check=False)
        if result.returncode != 0:
            return
        for item in json.loads(result.stdout)["items"]:
            name = item["metadata"]["name"]
            self.cluster.kubectl("delete", "tradingstack", name, "-n", namespace, "--wait=false", check=False)
            self.cluster.kubectl(
                "patch", "tradingstack", name, "-n", namespace, "--type=merge",
                "-p", '{"metadata":{"finalizers":null}}', check=False,
            )  # fmt: skip
