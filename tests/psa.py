"""Checks a pod spec against Pod Security "restricted", plus the project's own rules: a read-only root
filesystem, cpu and memory requests, and a memory limit on every container (a CPU limit stays the user's choice:
it throttles rather than protects).

Used by the unit tests on every rendered pod; the cluster tests prove the same with the real admission plugin.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

ALLOWED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def pod_specs(obj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The pod specs a workload object will create."""
    kind, spec = obj["kind"], obj.get("spec", {})
    if kind == "Pod":
        yield spec
    elif kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        yield spec["template"]["spec"]
    elif kind == "CronJob":
        yield spec["jobTemplate"]["spec"]["template"]["spec"]


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    pod_ctx = pod.get("securityContext", {})
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            problems.append(f"{flag} is set")
    for volume in pod.get("volumes", []):
        types = set(volume) - {"name"}
        if not types <= ALLOWED_VOLUME_TYPES:
            problems.append(f"volume {volume['name']} has a forbidden type {sorted(types)}")
    containers = pod.get("initContainers", []) + pod.get("containers", [])
    if not pod.get("containers"):
        problems.append("no containers")
    for container in containers:
        name = container["name"]
        ctx = container.get("securityContext", {})
        if ctx.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation must be false")
        if "ALL" not in ctx.get("capabilities", {}).get("drop", []):
            problems.append(f"{name}: capabilities must drop ALL")
        if set(ctx.get("capabilities", {}).get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds capabilities")
        if ctx.get("privileged"):
            problems.append(f"{name}: privileged")
        if ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is not True:
            problems.append(f"{name}: runAsNonRoot must be true")
        if ctx.get("runAsUser", pod_ctx.get("runAsUser")) == 0:
            problems.append(f"{name}: runs as uid 0")
        seccomp = ctx.get("seccompProfile", pod_ctx.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile must be RuntimeDefault")
        if ctx.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: root filesystem is writable")
        for port in container.get("ports", []):
            if port.get("hostPort"):
                problems.append(f"{name}: hostPort")
        resources = container.get("resources", {})
        if not {"cpu", "memory"} <= set(resources.get("requests", {})):
            problems.append(f"{name}: requests lack cpu/memory")
        if "memory" not in resources.get("limits", {}):
            problems.append(f"{name}: no memory limit")
    return problems
