"""NetworkPolicies: a default deny of the stack's pods and an allow per flow of `render.flows`; while the stack is
halted, the haltable services' pods reach nothing (`render.halt`)."""

from __future__ import annotations

from tradingstack.api import OwnerReference, TradingStack
from tradingstack.components.base import APPLIED, Component, uses
from tradingstack.render.common import Cluster, Manifest
from tradingstack.render.halt import render_halt_policy
from tradingstack.render.network import render_network_policies


def _render(stack: TradingStack, owner: OwnerReference, cluster: Cluster) -> list[Manifest]:
    return render_network_policies(stack, owner, cluster) + render_halt_policy(stack, owner)


COMPONENT = Component(
    name="network",
    kinds=(
        uses(
            "NetworkPolicy",
            "networking.k8s.io/v1",
            "networkpolicies",
            APPLIED,
            "the default deny, the allows of the flow table; the halted services' egress deny",
            apply_rank=10,
        ),
    ),
    render=_render,
)
