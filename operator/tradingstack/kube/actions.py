"""The writes a reconcile pass decides, as data: planned by pure code, carried out in order by `kube.executor`.

No client library here: the pure planners (`tradingstack.reconcile.plan`) build these values, so this module
must stay importable without lightkube (the import-linter "pure layers" contract allows only this module of kube/).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

FIELD_MANAGER = "tradingstack-operator"
"""The field manager of the operator's server-side applies (and the source of its Events)."""
RESTART_FIELD_MANAGER = "tradingstack-restarts"
"""Owns only the restart stamp (a pod-template annotation), so the operator's own applies never remove it."""

Obj = dict[str, Any]
ChildKey = tuple[str, str]
"""(kind, name) of a child in the stack's namespace."""
EventType = Literal["Normal", "Warning"]


def key_of(obj: Obj) -> ChildKey:
    return obj["kind"], obj["metadata"]["name"]


@dataclass(frozen=True)
class PostEvent:
    """An Event about the stack being reconciled."""

    event_type: EventType
    reason: str
    message: str


@dataclass(frozen=True)
class _WholeObject:
    """A write that sends a whole object; the outcome keeps what the API server returned, by `key`."""

    obj: Obj

    @property
    def key(self) -> ChildKey:
        return key_of(self.obj)


@dataclass(frozen=True)
class CreateSecret(_WholeObject):
    """Creates a generated Secret once; one that already exists is left as it is (never updated)."""


@dataclass(frozen=True)
class Apply(_WholeObject):
    """Server-side apply of a rendered child; the API server may refuse it, which the outcome records.

    With a `field_manager` (the restart stamp: a partial object applied by `RESTART_FIELD_MANAGER`) it is not a
    child the status reports on: a refusal is an error like any other and ends the batch."""

    field_manager: str | None = None
    """None: the operator's own (`FIELD_MANAGER`)."""


@dataclass(frozen=True)
class Delete:
    kind: str
    name: str
    namespace: str

    @property
    def key(self) -> ChildKey:
        return self.kind, self.name


@dataclass(frozen=True)
class MergePatch:
    """A JSON merge patch of fields the operator does not apply (owner references, claim retention)."""

    kind: str
    name: str
    namespace: str
    patch: dict[str, Any]


@dataclass(frozen=True)
class PatchLabels:
    """Sets labels of an object (None removes one), e.g. the Redis master label that moves between pods."""

    kind: str
    name: str
    namespace: str
    labels: Mapping[str, str | None]


@dataclass(frozen=True)
class WriteStatus:
    """Replaces the whole status of the stack `namespace`/`name` with `document`."""

    namespace: str
    name: str
    document: dict[str, Any]


Action = PostEvent | CreateSecret | Apply | Delete | MergePatch | PatchLabels | WriteStatus
