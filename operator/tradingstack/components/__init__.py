"""The concerns of a stack, one module each, and the lists built from their declarations.

Each component module declares the kinds it owns with the verbs the code uses on them (`KindUse`) and its pure
renderer. From these: `render` (every child, in apply order), `owned_kinds` (merged per kind: what the operator
lists, watches, prunes), and the chart's RBAC (`tradingstack.components.rbac`). Adding a child kind is a change in
one component module, plus its tests and the regenerated RBAC (`make rbac`).
"""

from __future__ import annotations

from collections.abc import Iterable

from tradingstack.api import OwnerReference, TradingStack
from tradingstack.components import gateway, network, postgres, redis, services
from tradingstack.components.base import VERB_ORDER, Component, KindUse
from tradingstack.render.common import DEFAULT_CLUSTER_DOMAIN, Cluster, Manifest, apply_deletion_policy

COMPONENTS: tuple[Component, ...] = (
    services.COMPONENT,
    redis.COMPONENT,
    postgres.COMPONENT,
    gateway.COMPONENT,
    network.COMPONENT,
)


def merged(uses: Iterable[KindUse]) -> tuple[KindUse, ...]:
    """One entry per kind: the union of the verbs, every reason, the lowest apply rank; in apply order."""
    by_kind: dict[str, KindUse] = {}
    for use in uses:
        seen = by_kind.get(use.kind)
        if seen is None:
            by_kind[use.kind] = use
            continue
        if (seen.api_version, seen.plural) != (use.api_version, use.plural):
            raise ValueError(f"{use.kind} declared as {seen.api_version} and {use.api_version}")
        reasons = seen.why if use.why in seen.why else f"{seen.why}; {use.why}"
        by_kind[use.kind] = KindUse(
            use.kind, use.api_version, use.plural, seen.verbs | use.verbs, reasons, min(seen.apply_rank, use.apply_rank)
        )
    return tuple(sorted(by_kind.values(), key=lambda u: (u.apply_rank, u.kind)))


def owned_kinds() -> tuple[KindUse, ...]:
    """Every kind the stacks' components own, merged."""
    return merged(use for component in COMPONENTS for use in component.kinds)


def listed_kinds() -> tuple[KindUse, ...]:
    """Read with one LIST per kind (by the stack label) at the start of each pass."""
    return tuple(u for u in owned_kinds() if "list" in u.verbs)


def watched_kinds() -> tuple[KindUse, ...]:
    """Watched (by the stack label) so a change wakes the stack's pass at once."""
    return tuple(u for u in owned_kinds() if "watch" in u.verbs)


def prunable_kinds() -> frozenset[str]:
    """Removed when no longer rendered; kinds without `delete` (data, credentials) never are."""
    return frozenset(u.kind for u in owned_kinds() if "delete" in u.verbs)


def _apply_rank(obj: Manifest) -> tuple[int, str]:
    ranks = {u.kind: u.apply_rank for u in owned_kinds()}
    return ranks[obj["kind"]], obj["metadata"]["name"]


def render(
    stack: TradingStack, owner: OwnerReference, domain: str = DEFAULT_CLUSTER_DOMAIN, dns_cidrs: tuple[str, ...] = ()
) -> list[Manifest]:
    """Every child object of a stack in apply order (dependencies before dependants, so a one-shot
    `kubectl apply` of the output works too). `domain`: the cluster's DNS domain; `dns_cidrs`: where the cluster
    DNS answers, if not the kube-dns pods (`Cluster`)."""
    cluster = Cluster(domain, dns_cidrs)
    manifests = [
        obj
        for component in COMPONENTS
        if component.enabled(stack.spec)
        for obj in component.render(stack, owner, cluster)
    ]
    names = [(m["kind"], m["metadata"]["name"]) for m in manifests]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise ValueError(f"rendered objects with the same kind and name: {clashes}")
    undeclared = sorted({m["kind"] for m in manifests} - {u.kind for u in owned_kinds()})
    if undeclared:
        raise ValueError(f"rendered kinds no component declares: {undeclared}")
    policy = stack.spec.deletion_policy
    return sorted((apply_deletion_policy(m, policy) for m in manifests), key=_apply_rank)


__all__ = ["COMPONENTS", "VERB_ORDER", "owned_kinds", "prunable_kinds", "render", "watched_kinds"]
