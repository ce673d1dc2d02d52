"""Which live objects a stack may write: the operator never modifies or owns an object it did not create.

Server-side apply with force would take over any object that has a child's name (a user's ConfigMap, another
stack's Service when two stacks' names collide). So before a child is applied, its live object, if any, must be
the stack's own: controlled by the stack (its owner reference carries the stack's uid), or data left behind by
an earlier stack of the same name under `deletionPolicy: Retain` (no controller, the operator's labels and the
retain annotation). Anything else is a conflict: the child is not applied and nothing of the live object changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tradingstack.contract import MANAGED_BY, Annotation, Label

Obj = Mapping[str, Any]


def _controller(obj: Obj) -> Mapping[str, Any] | None:
    refs = obj.get("metadata", {}).get("ownerReferences") or []
    return next((ref for ref in refs if ref.get("controller")), None)


def controlled_by(live: Obj, stack_uid: str) -> bool:
    """The stack's own child, which it may also delete when no longer rendered."""
    controller = _controller(live)
    return controller is not None and controller.get("uid") == stack_uid


def is_ours(live: Obj, stack_name: str, stack_uid: str) -> bool:
    if _controller(live) is not None:
        return controlled_by(live, stack_uid)
    meta = live.get("metadata", {})
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    return (
        labels.get(Label.STACK) == stack_name
        and labels.get(Label.MANAGED_BY) == MANAGED_BY
        and annotations.get(Annotation.RETAIN) == "true"
    )


@dataclass(frozen=True)
class NameConflict:
    """A child the stack renders whose name is taken by an object the stack does not own."""

    kind: str
    name: str
    holder: str
    """Who holds the name, for the condition and the Event."""

    def __str__(self) -> str:
        return f"{self.kind}/{self.name} exists and is {self.holder}"


def conflict(live: Obj | None, stack_name: str, stack_uid: str) -> NameConflict | None:
    if live is None or is_ours(live, stack_name, stack_uid):
        return None
    controller = _controller(live)
    holder = (
        f"controlled by {controller.get('kind')}/{controller.get('name')}"
        if controller is not None
        else "not created by this stack"
    )
    return NameConflict(str(live.get("kind")), str(live["metadata"]["name"]), holder)


def referenced_secrets(obj: Any) -> set[str]:
    """Names of the Secrets an object's pods would read (env `secretKeyRef`, `secret` volumes)."""
    found: set[str] = set()
    if isinstance(obj, Mapping):
        ref = obj.get("secretKeyRef")
        if isinstance(ref, Mapping) and isinstance(ref.get("name"), str):
            found.add(ref["name"])
        volume = obj.get("secret")
        if isinstance(volume, Mapping) and isinstance(volume.get("secretName"), str):
            found.add(volume["secretName"])
        for value in obj.values():
            found |= referenced_secrets(value)
    elif isinstance(obj, list):
        for value in obj:
            found |= referenced_secrets(value)
    return found


def blocked_by(obj: Obj, unusable_secrets: Iterable[str]) -> str | None:
    """A child whose pods would read a foreign or an unusable Secret is not applied either."""
    return next(iter(sorted(referenced_secrets(obj) & set(unusable_secrets))), None)


def user_secret_problem(name: str, live: Obj | None, keys: Iterable[str]) -> str | None:
    """Why a Secret the spec references (`existingSecret`) cannot be used, if it cannot."""
    if live is None:
        return f"Secret/{name} (existingSecret) does not exist"
    missing = [key for key in keys if key not in (live.get("data") or {})]
    return f"Secret/{name} (existingSecret) lacks the key(s) {', '.join(missing)}" if missing else None
