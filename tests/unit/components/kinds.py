"""The check every component's test file makes of its declaration: what it renders, it declares (with the verbs an
applied child needs), and what it declares but does not render is said explicitly."""

from __future__ import annotations

from collections.abc import Set

from tradingstack.api import TradingStack
from tradingstack.components.base import Component
from tradingstack.render.common import Cluster

APPLY_VERBS = frozenset({"get", "list", "watch", "create", "patch"})
"""Listed and watched by the stack label, read by name, server-side applied."""


def assert_declares_what_it_renders(component: Component, stack: TradingStack, not_rendered: Set[str]) -> None:
    """`not_rendered`: the kinds the component declares for another use (pods it reads, Secrets it generates)."""
    assert component.enabled(stack.spec)
    rendered = {obj["kind"] for obj in component.render(stack, stack.owner_reference(), Cluster())}
    declared = {use.kind: use for use in component.kinds}
    assert rendered <= set(declared), f"rendered but not declared: {sorted(rendered - set(declared))}"
    assert set(declared) - rendered == set(not_rendered)
    for kind in rendered:
        assert declared[kind].verbs >= APPLY_VERBS, f"{kind} is rendered but lacks {APPLY_VERBS - declared[kind].verbs}"
