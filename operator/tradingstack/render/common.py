"""Pieces every renderer shares: names, DNS names, ports, labels, owner references, Services, claims, config
hashes and Pod Security "restricted" settings.

Renderers are pure: they take the parsed stack and the owner reference explicitly and return plain dicts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tradingstack.api import OwnerReference, TradingStack
from tradingstack.api.spec import Resources, StorageSpec
from tradingstack.contract import MANAGED_BY, PART_OF, Annotation, Exporter, Label

Manifest = dict[str, Any]

NONROOT_UID = 10001

DEFAULT_CLUSTER_DOMAIN = "cluster.local"
"""The cluster's DNS domain unless the operator is told otherwise (`tradingstack run --cluster-domain`)."""


@dataclass(frozen=True)
class Cluster:
    """What the renderers know of the cluster they render for (operator settings, not stack spec)."""

    domain: str = DEFAULT_CLUSTER_DOMAIN
    dns_cidrs: tuple[str, ...] = ()
    """Where the cluster DNS answers, when it is not pods (e.g. CoreDNS as a host process): the NetworkPolicies
    then allow port 53 to these networks instead of to the `k8s-app: kube-dns` pods of kube-system."""


@dataclass(frozen=True)
class Port:
    """A named TCP port: containers declare it, Services target it by name."""

    name: str
    number: int

    def container_port(self) -> dict[str, Any]:
        return {"name": self.name, "containerPort": self.number, "protocol": "TCP"}

    def service_port(self) -> dict[str, Any]:
        return {"name": self.name, "port": self.number, "targetPort": self.name, "protocol": "TCP"}


REDIS_PORT = Port("redis", 6379)
SENTINEL_PORT = Port("sentinel", 26379)
POSTGRES_PORT = Port("postgres", 5432)
PGBACKREST_PORT = Port("pgbackrest", 8432)
"""The pgBackRest TLS server of the PostgreSQL pod (`spec.postgres.pitr`): the backup Jobs reach pg_data there."""
PATRONI_PORT = Port("patroni", 8008)
"""Patroni's REST API in a database pod of a Patroni cluster: probes, and the members ask each other's state."""
API_SERVER_PORTS = (Port("https", 443), Port("https-alt", 6443))
"""Where the Kubernetes API server answers after the `kubernetes` Service's translation (the chart's operator policy
defaults to the same, `networkPolicy.apiServer.ports`)."""
API_SERVER_CIDR = "0.0.0.0/0"
"""The control plane's addresses are the cluster's to know: anywhere, as the chart's operator policy by default."""
METRICS_PORT_NAME = "metrics"
"""The exporters' port, in the pods and on the Services (what a ServiceMonitor's `port` names)."""
REDIS_METRICS_PORT = Port(METRICS_PORT_NAME, 9121)
"""redis_exporter's port in a Redis server pod (`spec.redis.metrics`)."""
POSTGRES_METRICS_PORT = Port(METRICS_PORT_NAME, 9187)
"""postgres_exporter's port in the PostgreSQL pod (`spec.postgres.metrics`)."""
METRICS_CONTAINER = "metrics"
"""Name of the exporter sidecar in the data stores' pods."""


def http_port(number: int) -> Port:
    """The port of a trading service or the gateway: its number comes from the spec."""
    return Port("http", number)


def child_name(stack: TradingStack, component: str) -> str:
    return f"{stack.name}-{component}"


def service_host(stack: TradingStack, component: str, domain: str, pod: str | None = None) -> str:
    """Fully qualified DNS name of a child Service, or with `pod` of one StatefulSet pod behind its headless
    Service (named like the StatefulSet)."""
    host = f"{child_name(stack, component)}.{stack.namespace}.svc.{domain}"
    return f"{pod}.{host}" if pod else host


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


def child_service(
    stack: TradingStack,
    owner: OwnerReference,
    component: str,
    port: Port,
    name: str | None = None,
    headless: bool = False,
    extra_selector: Mapping[str, str] | None = None,
    extra_ports: Sequence[Port] = (),
) -> Manifest:
    """The Service in front of a component's pods; `extra_ports` after `port` (e.g. an exporter's)."""
    spec: dict[str, Any] = {
        "type": "ClusterIP",
        "selector": {**selector_labels(stack, component), **(extra_selector or {})},
        "ports": [p.service_port() for p in (port, *extra_ports)],
    }
    if headless:
        # Stable per-pod DNS names, published before readiness: peers need them while the pods still start.
        spec |= {"clusterIP": "None", "publishNotReadyAddresses": True}
    return manifest("v1", "Service", metadata(stack, owner, component, name=name), spec=spec)


def config_hash(files: Mapping[str, str]) -> str:
    """Hash of the configuration files a pod runs, for `Annotation.CONFIG_HASH` on its template: a changed file
    changes the template, so exactly the pods that use it roll."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(f"{name}\0{files[name]}\0".encode())
    return digest.hexdigest()[:16]


def pod_template_metadata(
    stack: TradingStack,
    component: str,
    config: Mapping[str, str] | None = None,
    extra_labels: Mapping[str, str] | None = None,
) -> Any:
    """Labels of a component's pods (`extra_labels` after the component's), and the hash of the `config` files
    they run, if any."""
    template: dict[str, Any] = {"labels": {**labels(stack, component), **(extra_labels or {})}}
    if config is not None:
        template["annotations"] = {Annotation.CONFIG_HASH: config_hash(config)}
    return template


def claim_spec(storage: StorageSpec) -> dict[str, Any]:
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": storage.size}}}
    if storage.storage_class_name is not None:
        spec["storageClassName"] = storage.storage_class_name
    return spec


def retained_annotations() -> dict[str, str]:
    """On objects that hold data: see `apply_deletion_policy`."""
    return {Annotation.RETAIN: "true"}


def data_claim_template(stack: TradingStack, component: str, storage: StorageSpec) -> dict[str, Any]:
    """The `data` volume claim of a StatefulSet's pods."""
    return {
        "metadata": {"name": "data", "labels": labels(stack, component), "annotations": retained_annotations()},
        "spec": claim_spec(storage),
    }


def claim_retention(stack: TradingStack) -> dict[str, str]:
    """The one rule for a StatefulSet's claims: deleted with the stack only under deletionPolicy Delete, never
    when scaled down (scaling back up finds the data again)."""
    return {"whenDeleted": "Delete" if stack.spec.deletion_policy == "Delete" else "Retain", "whenScaled": "Retain"}


def template_revision(template: dict[str, Any]) -> str:
    """The revision of a pod template: a short stable hash of it, without the restart stamp (owned by the restart
    field manager, so a daily restart is not a new revision). Put on Deployments and StatefulSets as
    `Annotation.REVISION`: what the rollouts and the maintenance gate compare with the live object."""
    annotations = {
        k: v for k, v in template.get("metadata", {}).get("annotations", {}).items() if k != Annotation.RESTARTED_AT
    }
    meta = {k: v for k, v in template.get("metadata", {}).items() if k != "annotations"}
    if annotations:
        meta["annotations"] = annotations
    canonical = json.dumps({**template, "metadata": meta}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:10]


def statefulset(
    stack: TradingStack,
    owner: OwnerReference,
    component: str,
    replicas: int,
    pod_spec: dict[str, Any],
    config: Mapping[str, str] | None = None,
    data: StorageSpec | None = None,
    pod_labels: Mapping[str, str] | None = None,
    **extra: Any,
) -> Manifest:
    """A StatefulSet of one component behind its (headless) Service of the same name; `data` adds the `data`
    claim of each pod, kept or deleted by `claim_retention`; `pod_labels` label the pods beyond the component's."""
    template = {"metadata": pod_template_metadata(stack, component, config, pod_labels), "spec": pod_spec}
    spec: dict[str, Any] = {
        "serviceName": child_name(stack, component),
        "replicas": replicas,
        **extra,
        "selector": {"matchLabels": selector_labels(stack, component)},
        "template": template,
    }
    if data is not None:
        spec["volumeClaimTemplates"] = [data_claim_template(stack, component, data)]
        spec["persistentVolumeClaimRetentionPolicy"] = claim_retention(stack)
    revision = {Annotation.REVISION: template_revision(template)}
    return manifest("apps/v1", "StatefulSet", metadata(stack, owner, component, annotations=revision), spec=spec)


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


def exporter_container(
    image: str, command: str, port: Port, env: list[dict[str, Any]], spec: Resources
) -> dict[str, Any]:
    """A Prometheus exporter sidecar of a data store, configured by `env` alone. Ready once it serves its landing
    page, which asks the store nothing: a store that is down is reported as `*_up 0`, not by taking its pod out
    of the Services."""
    return {
        "name": METRICS_CONTAINER,
        "image": image,
        "command": [command],
        "ports": [port.container_port()],
        "env": env,
        "readinessProbe": {
            "httpGet": {"path": Exporter.LANDING_PATH, "port": port.name},
            "periodSeconds": 10,
            "failureThreshold": 3,
            "timeoutSeconds": 3,
        },
        "resources": resources(spec),
        "securityContext": container_security_context(),
    }


def pod_disruption_budget(
    stack: TradingStack, owner: OwnerReference, component: str, max_unavailable: int = 1
) -> Manifest:
    return manifest(
        "policy/v1",
        "PodDisruptionBudget",
        metadata(stack, owner, component),
        spec={
            "maxUnavailable": max_unavailable,
            "selector": {"matchLabels": selector_labels(stack, component)},
            # A pod that is not ready protects nothing: let a node drain evict it instead of blocking.
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    )


def scratch_volume(name: str, size_limit: str) -> dict[str, Any]:
    """An emptyDir with a size limit: a runaway writer is evicted instead of filling the node's disk."""
    return {"name": name, "emptyDir": {"sizeLimit": size_limit}}


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
    garbage collection leaves them; StatefulSets keep or delete their claims through `claim_retention`.
    """
    retained = obj["metadata"].get("annotations", {}).get(Annotation.RETAIN) == "true"
    if retained and policy == "Retain":
        obj = {**obj, "metadata": {k: v for k, v in obj["metadata"].items() if k != "ownerReferences"}}
    return obj
