"""Pieces every renderer shares: names, labels, owner references, Pod Security "restricted" settings.

Renderers are pure: they take the parsed stack and the owner reference explicitly and return plain dicts.
"""

from __future__ import annotations

from typing import Any

from tradingstack.api import OwnerReference, TradingStack
from tradingstack.api.spec import Resources
from tradingstack.contract import MANAGED_BY, PART_OF, Annotation, Label

Manifest = dict[str, Any]

NONROOT_UID = 10001


def child_name(stack: TradingStack, component: str) -> str:
    return f"{stack.name}-{component}"


def selector_labels(stack: TradingStack, component: str) -> dict[str, str]:
    """Labels that select one component's pods (stable: never change them for existing objects)."""
    return {
        Label.NAME: component,
        Label.INSTANCE: stack.name,
    }


def labels(stack: TradingStack, component: str) -> dict[str, str]:
    return {
        **selector_labels(stack, component),
        Label.COMPONENT: component,
        Label.PART_OF: PART_OF,
        Label.MANAGED_BY: MANAGED_BY,
        Label.STACK: stack.name,
    }


def metadata(
    stack: TradingStack,
    owner: OwnerReference,
    component: str,
    name: str | None = None,
    extra_labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name or child_name(stack, component),
        "namespace": stack.namespace,
        "labels": {**labels(stack, component), **(extra_labels or {})},
        "ownerReferences": [owner.to_dict()],
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def manifest(api_version: str, kind: str, meta: dict[str, Any], **body: Any) -> Manifest:
    return {"apiVersion": api_version, "kind": kind, "metadata": meta, **body}


def pod_security_context(uid: int = NONROOT_UID, fs_group: int | None = None) -> dict[str, Any]:
    """Pod-level settings required by Pod Security "restricted"."""
    context: dict[str, Any] = {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if fs_group is not None:
        context["fsGroup"] = fs_group
    return context


def container_security_context(read_only_root: bool = True) -> dict[str, Any]:
    """Container-level settings required by Pod Security "restricted"."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": read_only_root,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def resources(spec: Resources) -> dict[str, Any]:
    return {"requests": dict(sorted(spec.requests.items())), "limits": dict(sorted(spec.limits.items()))}


def pod_disruption_budget(
    stack: TradingStack, owner: OwnerReference, component: str, max_unavailable: int = 1
) -> Manifest:
    return manifest(
        "policy/v1",
        "PodDisruptionBudget",
        metadata(stack, owner, component),
        spec={"maxUnavailable": max_unavailable, "selector": {"matchLabels": selector_labels(stack, component)}},
    )


def spread_and_anti_affinity(stack: TradingStack, component: str) -> dict[str, Any]:
    """Prefer one pod of a component per node, so a node loss takes at most one replica."""
    return {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": selector_labels(stack, component)},
                    },
                }
            ]
        }
    }


def apply_deletion_policy(obj: Manifest, policy: str) -> Manifest:
    """Data survives the stack unless deletionPolicy is Delete.

    Objects marked retained (backup volume, generated credentials) lose their owner reference under Retain, so
    garbage collection leaves them; StatefulSets keep or delete their claims through their retention policy.
    """
    if obj["kind"] == "StatefulSet":
        retention = {"whenDeleted": "Delete" if policy == "Delete" else "Retain", "whenScaled": "Retain"}
        obj = {**obj, "spec": {**obj["spec"], "persistentVolumeClaimRetentionPolicy": retention}}
    retained = obj["metadata"].get("annotations", {}).get(Annotation.RETAIN) == "true"
    if retained and policy == "Retain":
        obj = {**obj, "metadata": {k: v for k, v in obj["metadata"].items() if k != "ownerReferences"}}
    return obj
