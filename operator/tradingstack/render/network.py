"""NetworkPolicies: a default deny of every pod of the stack, and one allow per flow of the table (`render.flows`).

`<stack>-default-deny` selects every pod of the stack (`Label.INSTANCE`) for ingress and egress with no rule,
so a pod is isolated even if no flow names it. Each pod group then gets `<stack>-<group>-ingress` with a rule per
flow that ends at it and `<stack>-<group>-egress` with a rule per flow that starts from it (none when it has no
such flow). NetworkPolicies add up, so the allows open exactly the table.

The kill switch (`render.halt`) relies on this split: a halted stack does not render the haltable services'
egress policies, so nothing allows their pods out, and `reconcile.halt` deletes those policies in the first
batch of the pass.

The DNS peer is the operator's setting (`Cluster.dns_cidrs`): networks where the cluster DNS answers, or by
default the `k8s-app: kube-dns` pods of kube-system.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tradingstack.api import OwnerReference, TradingStack
from tradingstack.contract import OPERATOR_APP_NAME, Label
from tradingstack.render.common import Cluster, Manifest, child_name, manifest, metadata
from tradingstack.render.flows import AnySource, ClusterDns, Flow, Network, OperatorPods, Peer, Pods, stack_flows
from tradingstack.render.halt import halted_services

OPERATOR_POD_LABELS = {Label.NAME: OPERATOR_APP_NAME}
DEFAULT_DNS_PEER = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
}
"""Where the cluster DNS answers unless the operator is told its networks (`OperatorEnv.DNS_CIDRS`)."""
DEFAULT_DENY_COMPONENT = "default-deny"


def ingress_policy_name(stack: TradingStack, group: str) -> str:
    return child_name(stack, f"{group}-ingress")


def egress_policy_name(stack: TradingStack, group: str) -> str:
    return child_name(stack, f"{group}-egress")


def _pod_selector(stack: TradingStack, pods: Pods) -> dict[str, Any]:
    return {
        "matchLabels": {Label.INSTANCE: stack.name},
        "matchExpressions": [{"key": Label.NAME, "operator": "In", "values": list(pods.names)}],
    }


def _peers(stack: TradingStack, peer: Peer, cluster: Cluster) -> list[dict[str, Any]] | None:
    """The `from`/`to` list of a rule; None for any peer (a rule without `from`)."""
    match peer:
        case AnySource():
            return None
        case Pods():
            return [{"podSelector": _pod_selector(stack, peer)}]
        case OperatorPods():
            return [{"namespaceSelector": {}, "podSelector": {"matchLabels": OPERATOR_POD_LABELS}}]
        case ClusterDns():
            if cluster.dns_cidrs:
                return [{"ipBlock": {"cidr": cidr}} for cidr in cluster.dns_cidrs]
            return [DEFAULT_DNS_PEER]
        case Network():
            block: dict[str, Any] = {"cidr": peer.cidr}
            if peer.except_:
                block["except"] = list(peer.except_)
            return [{"ipBlock": block}]


def _rule(direction: str, peers: list[dict[str, Any]] | None, flow: Flow) -> dict[str, Any]:
    rule: dict[str, Any] = {} if peers is None else {direction: peers}
    return rule | {"ports": [{"protocol": t.protocol, "port": t.port} for t in flow.targets]}


def _policy(
    stack: TradingStack, owner: OwnerReference, name: str, component: str, selector: dict[str, Any], **rules: Any
) -> Manifest:
    types = [t for t, key in (("Ingress", "ingress"), ("Egress", "egress")) if key in rules]
    # A direction without rules denies by its policyType alone; the API server drops an empty rule list, so
    # rendering one would make the live object differ from the rendered one at every resync.
    return manifest(
        "networking.k8s.io/v1",
        "NetworkPolicy",
        metadata(stack, owner, component, name=name),
        spec={"podSelector": selector, "policyTypes": types, **{key: list_ for key, list_ in rules.items() if list_}},
    )


def _default_deny(stack: TradingStack, owner: OwnerReference) -> Manifest:
    selector = {"matchLabels": {Label.INSTANCE: stack.name}}
    name = child_name(stack, DEFAULT_DENY_COMPONENT)
    return _policy(stack, owner, name, DEFAULT_DENY_COMPONENT, selector, ingress=[], egress=[])


def _groups(flows: Iterable[Flow]) -> list[Pods]:
    """Every pod group some flow starts or ends at, in first-seen order."""
    seen: dict[str, Pods] = {}
    for flow in flows:
        for end in (flow.source, flow.destination):
            if isinstance(end, Pods):
                seen.setdefault(end.group, end)
    return list(seen.values())


def _group_policies(stack: TradingStack, owner: OwnerReference, cluster: Cluster, flows: list[Flow]) -> list[Manifest]:
    halted = set(halted_services(stack))
    policies: list[Manifest] = []
    for group in _groups(flows):
        selector = _pod_selector(stack, group)
        ingress = [_rule("from", _peers(stack, f.source, cluster), f) for f in flows if f.destination == group]
        egress = [_rule("to", _peers(stack, f.destination, cluster), f) for f in flows if f.source == group]
        if ingress:
            name = ingress_policy_name(stack, group.group)
            policies.append(_policy(stack, owner, name, group.group, selector, ingress=ingress))
        # A halted service's pods must have no egress allow: the halt's deny is only a deny while none adds up.
        if egress and group.group not in halted:
            name = egress_policy_name(stack, group.group)
            policies.append(_policy(stack, owner, name, group.group, selector, egress=egress))
    return policies


def render_network_policies(stack: TradingStack, owner: OwnerReference, cluster: Cluster) -> list[Manifest]:
    return [_default_deny(stack, owner), *_group_policies(stack, owner, cluster, stack_flows(stack))]
