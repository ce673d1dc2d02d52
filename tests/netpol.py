"""A small NetworkPolicy evaluator for the tests: is a connection allowed by a set of rendered policies?

It follows the API's semantics (networking.k8s.io/v1): a pod selected by no policy of a direction is not isolated
in it; a selected pod admits a connection when any rule of any selecting policy matches the peer and the port.
A connection needs both the source's egress and the destination's ingress. Ports are numbers (the renderer names
none); an ipBlock matches an address outside the cluster, as kube-network-policies treats it for pod IPs too.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

NAMESPACE_NAME = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class Endpoint:
    """A pod (labels and namespace) or, with `namespace` None, an address outside the cluster."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    namespace: str | None = None
    ip: str | None = None

    @property
    def is_pod(self) -> bool:
        return self.namespace is not None


def pod(name: str, namespace: str, labels: Mapping[str, str], ip: str | None = None) -> Endpoint:
    return Endpoint(name, dict(labels), namespace, ip)


def address(ip: str) -> Endpoint:
    return Endpoint(ip, ip=ip)


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A label selector (matchLabels, matchExpressions); the empty selector matches everything."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        present = key in labels
        matched = {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }[operator]
        if not matched:
            return False
    return True


def _in_block(block: Mapping[str, Any], ip: str | None) -> bool:
    if ip is None:
        return False
    address_ = ipaddress.ip_address(ip)
    inside = address_ in ipaddress.ip_network(block["cidr"])
    return inside and not any(address_ in ipaddress.ip_network(c) for c in block.get("except", []))


def _peer_matches(peer: Mapping[str, Any], policy_namespace: str, other: Endpoint) -> bool:
    if "ipBlock" in peer:
        return not other.is_pod and _in_block(peer["ipBlock"], other.ip)
    if not other.is_pod:
        return False
    if "namespaceSelector" in peer:
        assert other.namespace is not None
        in_namespace = selects(peer["namespaceSelector"], {NAMESPACE_NAME: other.namespace})
    else:
        in_namespace = other.namespace == policy_namespace
    return in_namespace and selects(peer.get("podSelector", {}), other.labels)


def _port_matches(ports: Sequence[Mapping[str, Any]] | None, port: int, protocol: str) -> bool:
    if not ports:
        return True
    return any(p.get("protocol", "TCP") == protocol and p.get("port") in (None, port) for p in ports)


def _rule_matches(
    rule: Mapping[str, Any], peers_key: str, namespace: str, other: Endpoint, port: int, protocol: str
) -> bool:
    peers = rule.get(peers_key)
    peer_ok = not peers or any(_peer_matches(p, namespace, other) for p in peers)
    return peer_ok and _port_matches(rule.get("ports"), port, protocol)


def _selecting(
    policies: Iterable[Mapping[str, Any]], subject: Endpoint, policy_type: str
) -> Sequence[Mapping[str, Any]]:
    if not subject.is_pod:
        return []
    return [
        p
        for p in policies
        if p["metadata"]["namespace"] == subject.namespace
        and policy_type in p["spec"].get("policyTypes", ["Ingress"])
        and selects(p["spec"]["podSelector"], subject.labels)
    ]


def _admits(
    policies: Iterable[Mapping[str, Any]],
    subject: Endpoint,
    other: Endpoint,
    policy_type: str,
    port: int,
    protocol: str,
) -> bool:
    selecting = _selecting(policies, subject, policy_type)
    if not selecting:
        return True  # not isolated in this direction (an address outside never is)
    key, peers_key = ("ingress", "from") if policy_type == "Ingress" else ("egress", "to")
    return any(
        _rule_matches(rule, peers_key, p["metadata"]["namespace"], other, port, protocol)
        for p in selecting
        for rule in p["spec"].get(key, [])
    )


def allowed(
    policies: Sequence[Mapping[str, Any]], source: Endpoint, destination: Endpoint, port: int, protocol: str = "TCP"
) -> bool:
    """The source's egress and the destination's ingress both admit the connection."""
    return _admits(policies, source, destination, "Egress", port, protocol) and _admits(
        policies, destination, source, "Ingress", port, protocol
    )


def isolated(policies: Sequence[Mapping[str, Any]], subject: Endpoint, policy_type: str) -> bool:
    """Some policy selects the pod for the direction: what no rule allows is refused."""
    return bool(_selecting(policies, subject, policy_type))
