"""The kill switch (`spec.halt`) in a reconcile pass: pure.

The render already carries the halt (`render.halt`: the haltable services' Deployments at zero replicas, the
NetworkPolicy `<stack>-halt` denying their egress). What this module adds is the order: `plan_halt_writes` is
the first batch of a pass, carried out right after the children are read and claimed and before anything that
can fail or block for another reason (a user Secret that is missing, a child the API server refuses), so a halt
takes effect even while the rest of the reconcile is failing. The main batch then finds these children already
matching and writes them no more.

The stack's NetworkPolicies add up, so the halt's deny only cuts the pods off while no policy allows them out:
a halted stack renders no egress allow of the haltable services (`render.network`), and this batch also deletes
those allows that are still live (`halt_deletions`), before the deny is applied. On resume they are rendered
again and the main batch applies them.

The policy goes first: once the network plugin enforces it, the pods' new connections are refused before their
replicas go, also while they spend their grace period cancelling orders (over connections they already hold:
kube-network-policies judges new connections only, see the README's limits).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from tradingstack.api import TradingStack
from tradingstack.api.status import HaltStatus
from tradingstack.components.assess import ConditionUpdate
from tradingstack.kube.actions import Action, Apply, ChildKey, Delete, Obj, PostEvent, key_of
from tradingstack.reconcile.diff import needs_apply
from tradingstack.reconcile.ownership import NameConflict
from tradingstack.render.common import child_name
from tradingstack.render.halt import halt_policy_name, halted_services
from tradingstack.render.network import egress_policy_name


def halt_keys(stack: TradingStack) -> list[ChildKey]:
    """The children that carry out the halt, in the order they are written: the policy, then the Deployments."""
    services = halted_services(stack)
    if not services:
        return []
    return [("NetworkPolicy", halt_policy_name(stack))] + [("Deployment", child_name(stack, s)) for s in services]


def halt_deletions(stack: TradingStack, children: Mapping[ChildKey, Obj]) -> list[Delete]:
    """The halted services' egress allows still live (`children`: the stack's own): deleted before the deny, which
    they would otherwise undo."""
    keys = [("NetworkPolicy", egress_policy_name(stack, s)) for s in halted_services(stack)]
    return [Delete(kind, name, stack.namespace) for kind, name in keys if (kind, name) in children]


def _stopped(services: Iterable[str]) -> str:
    return ", ".join(services) or "none (no service is haltable)"


def plan_halt_writes(
    stack: TradingStack,
    desired: Iterable[Obj],
    children: Mapping[ChildKey, Obj],
    conflicts: Mapping[ChildKey, NameConflict],
    previous: HaltStatus | None,
) -> list[Action]:
    """The first batch of a pass: the deletion of the halted services' live egress allows (`halt_deletions`), an
    apply of each halt child (`halt_keys`) that differs from its live object (a name held by someone else is left
    alone, as in the main batch), then the Halted Event when the halt is new
    (`previous`: status.halt as last written) or the Resumed Event when it has just been lifted. `desired`: the
    rendered children (with their applied hash), `children`: the stack's own live ones."""
    rendered = {key_of(obj): obj for obj in desired}
    actions: list[Action] = [*halt_deletions(stack, children)]
    actions += [
        Apply(rendered[key])
        for key in halt_keys(stack)
        if key in rendered and key not in conflicts and needs_apply(rendered[key], children.get(key))
    ]
    halt = stack.spec.halt
    if halt is not None and previous is None:
        by = halt.requested_by or "unknown"
        stopped = _stopped(halted_services(stack))
        actions.append(PostEvent("Warning", "Halted", f"Halted by {by}: {halt.reason}; stopped: {stopped}"))
    elif halt is None and previous is not None:
        restored = ", ".join(previous.services) or "no service"
        actions.append(PostEvent("Normal", "Resumed", f"Halt lifted; restoring {restored}"))
    return actions


def halt_status(stack: TradingStack, previous: HaltStatus | None, now: datetime) -> HaltStatus | None:
    """status.halt: set while halted; `since` is when it was first seen, kept across passes."""
    halt = stack.spec.halt
    if halt is None:
        return None
    since = previous.since if previous is not None else now
    return HaltStatus(since=since, by=halt.requested_by, reason=halt.reason, services=halted_services(stack))


def halted_condition(status: HaltStatus | None) -> ConditionUpdate:
    """The Halted condition: True while halted (naming the services stopped and why), else False."""
    if status is None:
        return ConditionUpdate("False", "NotHalted", "")
    by = f" by {status.by}" if status.by else ""
    return ConditionUpdate("True", "Halted", f"halted{by}: {status.reason}; stopped: {_stopped(status.services)}")
