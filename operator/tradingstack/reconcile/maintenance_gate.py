"""The maintenance gate of the data stores: a changed pod template of a StatefulSet (Redis, sentinels, Postgres)
restarts its pods, so it is applied only while maintenance is open (`spec.maintenance`, `schedule.maintenance`).

Pure. The rendered StatefulSet's revision (`render.common.template_revision`, its `Annotation.REVISION`) is
compared with the live one's: a different revision is held while maintenance is closed (the live StatefulSet is
neither applied nor pruned) and listed in status.maintenance.pending. A change that keeps the template (replicas,
for example) is not disruptive and is applied at once, as is a first deploy or a StatefulSet that records no
revision (applied by an older operator).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from tradingstack.api import TradingStack
from tradingstack.contract import Annotation
from tradingstack.kube.actions import ChildKey, Obj, key_of
from tradingstack.schedule.maintenance import closed_reason, parse_override


def maintenance_closed(stack: TradingStack, now: datetime) -> str | None:
    """Why disruptive changes may not start at `now` (closed windows, a freeze), None while maintenance is open or
    the apply-now annotation overrides it."""
    override = parse_override(stack.metadata.annotations.get(Annotation.APPLY_NOW))
    return closed_reason(stack.spec.maintenance, now, override)


@dataclass(frozen=True)
class HeldTemplates:
    held: frozenset[ChildKey] = frozenset()
    """StatefulSets kept as they are: neither applied nor pruned."""
    pending: list[str] = field(default_factory=list)
    """One line per held StatefulSet for status.maintenance.pending."""


def _revision(obj: Obj) -> str | None:
    return (obj.get("metadata", {}).get("annotations") or {}).get(Annotation.REVISION)


def hold_statefulset_templates(
    desired: Iterable[Obj], children: Mapping[ChildKey, Obj], closed: str | None
) -> HeldTemplates:
    """The rendered StatefulSets whose pod template differs from their live one's, while `closed` (see
    `maintenance_closed`) says maintenance is closed; nothing is held while it is open."""
    if closed is None:
        return HeldTemplates()
    held: list[ChildKey] = []
    pending: list[str] = []
    for obj in desired:
        key = key_of(obj)
        live = children.get(key)
        if key[0] != "StatefulSet" or live is None or _revision(live) is None:
            continue
        if (revision := _revision(obj)) != _revision(live):
            held.append(key)
            pending.append(f"StatefulSet {key[1]} (revision {revision}) waits for the maintenance window")
    return HeldTemplates(frozenset(held), pending)
