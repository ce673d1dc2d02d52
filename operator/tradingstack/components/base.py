"""What a component declares: the kinds it owns, with the verbs the operator's code uses on them and why.

One list built from these declarations (`tradingstack.components.owned_kinds`) drives the operator's watches,
its reads, the prune set, the apply order and the chart's RBAC rules (`tradingstack.components.rbac`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from tradingstack.api import OwnerReference, TradingStack, TradingStackSpec
from tradingstack.render.common import Cluster, Manifest

Verb = Literal["get", "list", "watch", "create", "update", "patch", "delete"]
VERB_ORDER: tuple[Verb, ...] = ("get", "list", "watch", "create", "update", "patch", "delete")


@dataclass(frozen=True)
class KindUse:
    """How the operator uses one kind, and why (the RBAC rule's comment and docs/architecture.md)."""

    kind: str
    api_version: str
    plural: str
    verbs: frozenset[Verb]
    why: str
    apply_rank: int = 100
    """Apply order, dependencies before dependants (lower first); it only matters for kinds that are rendered."""

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]


def uses(kind: str, api_version: str, plural: str, verbs: str, why: str, apply_rank: int = 100) -> KindUse:
    """`verbs`: space-separated, e.g. "list watch create patch delete"."""
    chosen = frozenset(verbs.split())
    unknown = chosen - set(VERB_ORDER)
    if unknown:
        raise ValueError(f"{kind}: unknown verbs {sorted(unknown)}")
    return KindUse(kind, api_version, plural, chosen, why, apply_rank)  # type: ignore[arg-type]


APPLIED = "get list watch create patch delete"
"""Rendered children: listed and watched by the stack label, read by name when the list did not find them (so an
object of that name that is not the stack's is never taken over), server-side applied (create on first apply),
deleted when no longer rendered."""

GENERATED_SECRETS = uses(
    "Secret",
    "v1",
    "secrets",
    "get create patch",
    "generated credentials: created once, read back by name; patched in their owner references, which follow"
    " deletionPolicy, and in their data only to renew the TLS certificates <stack>-postgres-tls, <stack>-redis-tls"
    " and <stack>-pgbackrest-tls (never listed, watched, or deleted)",
    apply_rank=1,
)
"""The Secrets the operator generates once per stack (Redis password, Postgres credentials)."""

Renderer = Callable[[TradingStack, OwnerReference, Cluster], list[Manifest]]


@dataclass(frozen=True)
class Component:
    """One concern of a stack: the kinds it owns and its pure renderer (`render(stack, owner, cluster settings)`)."""

    name: str
    kinds: tuple[KindUse, ...]
    render: Renderer
    enabled: Callable[[TradingStackSpec], bool] = lambda spec: True
