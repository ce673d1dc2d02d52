"""Kubernetes Events about a stack, posted through kopf's event queue (batched, never blocking a reconcile)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import kopf

EventType = Literal["Normal", "Warning"]


def emit(stack_body: Mapping[str, Any], event_type: EventType, reason: str, message: str) -> None:
    # kopf wants a Body-like mapping; it reads apiVersion, kind, metadata (name, namespace, uid) from it.
    kopf.event(dict(stack_body), type=event_type, reason=reason, message=message[:1024])  # type: ignore[arg-type]
