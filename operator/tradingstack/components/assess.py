"""What a component's observed state means for the stack's conditions: the values each component's `assess`
returns and `reconcile.status` composes.

Pure. A component assesses only its own children: its own conditions (RedisReady, PostgresReady,
BackupHealthy), what the stack's Ready condition waits for, and what degrades the stack. The stack-wide
conditions (Ready, Progressing, Degraded) and what belongs to no component (name conflicts, apply errors,
failing pods) stay in `reconcile.status`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from tradingstack.api.status import ConditionType
from tradingstack.components.observe import WorkloadState

ConditionStatus = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class ConditionUpdate:
    status: ConditionStatus
    reason: str
    message: str = ""


@dataclass(frozen=True)
class Assessment:
    conditions: Mapping[ConditionType, ConditionUpdate] = field(default_factory=dict)
    """The component's own conditions."""
    waiting: tuple[str, ...] = ()
    """What the stack waits for (as the Ready and Progressing messages name it); empty: the component is ready."""
    degraded: tuple[tuple[str, str], ...] = ()
    """(reason, message) of what keeps the component from working as specified, most actionable first."""


def store_condition(state: WorkloadState | None, name: str) -> ConditionUpdate:
    """A data store's StatefulSet as its Ready condition (RedisReady, PostgresReady)."""
    if state is None:
        return ConditionUpdate("False", "NotCreated", f"{name} does not exist yet")
    if state.rollout_failure:
        return ConditionUpdate("False", "RolloutFailed", state.rollout_failure)
    if not state.rolled_out:
        return ConditionUpdate("False", "NotReady", f"{state.ready}/{state.desired} pods ready")
    return ConditionUpdate("True", "Ready", f"{state.ready}/{state.desired} pods ready")


def store_assessment(kind: ConditionType, update: ConditionUpdate, name: str) -> Assessment:
    return Assessment({kind: update}, waiting=() if update.status == "True" else (name,))
