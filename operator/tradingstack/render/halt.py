"""The kill switch in the rendered objects (`spec.halt`): while a stack is halted, every haltable service's
Deployment renders `replicas: 0` (`render.services`) and this module's NetworkPolicy `<stack>-halt` denies all
egress of their pods.

The policy selects the pods by the service-name and instance labels only, not by the pod-template hash, so a pod
of an older ReplicaSet, or one stuck terminating, is cut off as well. NetworkPolicies are additive (a pod's
traffic is allowed when any policy selecting it allows it): this deny works because a halted stack renders no
egress allow of these pods (`render.network` leaves out their `<stack>-<service>-egress`, and `reconcile.halt`
deletes it first). The stack's default deny selects these pods too; this policy is the halt's own, applied first
and by name, and lists the services it stops.
"""

from __future__ import annotations

from tradingstack.api import OwnerReference, TradingStack
from tradingstack.contract import Label
from tradingstack.render.common import Manifest, child_name, manifest, metadata

HALT_COMPONENT = "halt"
"""Component label and name suffix of the halt NetworkPolicy."""


def halted_services(stack: TradingStack) -> list[str]:
    """The services stopped now: the haltable ones while the stack is halted, else none; in spec order."""
    if stack.spec.halt is None:
        return []
    return [s.name for s in stack.spec.services if s.haltable]


def halt_policy_name(stack: TradingStack) -> str:
    return child_name(stack, HALT_COMPONENT)


def render_halt_policy(stack: TradingStack, owner: OwnerReference) -> list[Manifest]:
    """The egress deny of the halted services' pods; nothing when none is halted (so a resume prunes it)."""
    services = halted_services(stack)
    if not services:
        return []
    return [
        manifest(
            "networking.k8s.io/v1",
            "NetworkPolicy",
            metadata(stack, owner, HALT_COMPONENT, name=halt_policy_name(stack)),
            spec={
                "podSelector": {
                    "matchLabels": {Label.INSTANCE: stack.name},
                    "matchExpressions": [{"key": Label.NAME, "operator": "In", "values": services}],
                },
                "policyTypes": ["Egress"],  # and no egress rule: nothing is allowed out
            },
        )
    ]
