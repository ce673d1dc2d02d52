"""Carries out planned writes (`kube.actions`) one after the other, in the order given: the order is the plan's.

Only a refused apply of a child is an expected outcome (the API server's admission said no to one child; the
others must still be written and the refusal reported in the status). Every other error ends the batch and the
pass, as a direct call would: the next pass plans again from what is live.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, assert_never

from tradingstack.errors import ApiPermanentError
from tradingstack.kube.actions import (
    Action,
    Apply,
    ChildKey,
    CreateSecret,
    Delete,
    EventType,
    MergePatch,
    Obj,
    PatchLabels,
    PostEvent,
    WriteStatus,
)


class Writer(Protocol):
    """The methods of `kube.client.Kube` the executor calls."""

    async def post_event(self, about: Mapping[str, Any], event_type: EventType, reason: str, message: str) -> None: ...
    async def create(self, obj: Obj) -> Obj | None: ...
    async def apply(self, obj: Obj, field_manager: str = ...) -> Obj: ...
    async def delete(self, kind: str, name: str, namespace: str) -> None: ...
    async def merge_patch(self, kind: str, name: str, namespace: str, patch: Mapping[str, Any]) -> None: ...
    async def patch_labels(self, kind: str, name: str, namespace: str, labels: Mapping[str, str | None]) -> None: ...
    async def replace_status(self, namespace: str, name: str, status: Obj) -> None: ...


@dataclass(frozen=True)
class Outcome:
    """What a batch wrote and what the API server answered, by child; filled by `execute` as it goes."""

    done: list[Action] = field(default_factory=list)
    """The actions carried out, in order (a refused apply included)."""
    live: dict[ChildKey, Obj] = field(default_factory=dict)
    """The objects the applies and creates returned; a Secret that already existed returns none."""
    refused: dict[ChildKey, str] = field(default_factory=dict)
    """The applies the API server refused, with its message."""


async def execute(
    kube: Writer, event_target: Mapping[str, Any], actions: Iterable[Action], outcome: Outcome | None = None
) -> Outcome:
    """`event_target`: the object (the stack's body) the Events are about. A caller that passes its own
    `outcome` still has it when an error ends the batch, so what was written is logged and counted all the same."""
    outcome = Outcome() if outcome is None else outcome
    for action in actions:
        await _carry_out(kube, event_target, action, outcome)
        outcome.done.append(action)
    return outcome


async def _carry_out(kube: Writer, event_target: Mapping[str, Any], action: Action, outcome: Outcome) -> None:
    match action:
        case PostEvent():
            await kube.post_event(event_target, action.event_type, action.reason, action.message)
        case CreateSecret():
            if (created := await kube.create(action.obj)) is not None:
                outcome.live[action.key] = created
        case Apply() if action.field_manager is not None:
            outcome.live[action.key] = await kube.apply(action.obj, action.field_manager)  # a refusal ends the batch
        case Apply():
            try:
                outcome.live[action.key] = await kube.apply(action.obj)
            except ApiPermanentError as err:
                outcome.refused[action.key] = str(err)
        case Delete():
            await kube.delete(action.kind, action.name, action.namespace)
        case MergePatch():
            await kube.merge_patch(action.kind, action.name, action.namespace, action.patch)
        case PatchLabels():
            await kube.patch_labels(action.kind, action.name, action.namespace, action.labels)
        case WriteStatus():
            await kube.replace_status(action.namespace, action.name, action.document)
        case _:
            assert_never(action)
