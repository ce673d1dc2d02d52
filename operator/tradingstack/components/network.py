"""NetworkPolicies: only the stack's own pods (and the operator, for the sentinels) reach Redis and Postgres;
while the stack is halted, the haltable services' pods reach nothing (`render.halt`)."""

from __future__ import annotations

from tradingstack.api import OwnerReference, TradingStack
from tradingstack.components.base import APPLIED, Component, uses
from tradingstack.render.common import Manifest
from tradingstack.render.halt import render_halt_policy
from tradingstack.render.network import render_network_policies


def _render(stack: TradingStack, owner: OwnerReference, domain: str) -> list[Manifest]:
    del domain  # the policies select pods by label: they name no host
    return render_network_policies(stack, owner) + render_halt_policy(stack, owner)


COMPONENT = Component(
    name="network",
    kinds=(
        uses(
            "NetworkPolicy",
            "networking.k8s.io/v1",
            "networkpolicies",
            APPLIED,
            "store access; the halted services' egress deny",
            apply_rank=10,
        ),
    ),
    render=_render,
)
