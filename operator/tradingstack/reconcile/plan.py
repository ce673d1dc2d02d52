"""The writes of one reconcile pass, decided from what was read: pure, so every rule (what is written, what is
left alone, in which order) is data a unit test can look at. `kube.executor` carries the actions out.

A pass writes in two batches, because the second depends on what the API server answered to the first:

1. a Warning Event per new name conflict and per new unusable user Secret, then the generated Secrets that are
   missing, then an apply of every rendered child that differs from its live object;
2. a Warning Event per new refused child, the deletion of the stack's children no longer rendered, and the
   patches that make what outlives the stack follow `deletionPolicy`.

The status is written last, by `plan_status_write`, and only when it changed (with an Event when the phase did);
the restart runner plans its interim status write with the same function, before its stamp.

A child that already matches what is rendered yields no action: the resync of a healthy stack writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tradingstack.api import TradingStack, TradingStackStatus
from tradingstack.components import prunable_kinds
from tradingstack.contract import Label
from tradingstack.kube.actions import (
    Action,
    Apply,
    ChildKey,
    CreateSecret,
    Delete,
    MergePatch,
    Obj,
    PostEvent,
    WriteStatus,
    key_of,
)
from tradingstack.reconcile.diff import needs_apply
from tradingstack.reconcile.ownership import NameConflict, blocked_by, controlled_by
from tradingstack.reconcile.retention import patroni_lock_patches, retention_patches
from tradingstack.render import patroni

PRUNABLE_KINDS = prunable_kinds()
"""Kinds removed when no longer rendered (the components grant them `delete`); data and credentials never are."""

REASONS_WITH_OWN_EVENTS = frozenset({"ApplyFailed", "NameConflict", "SecretInvalid", "RolloutRolledBack"})
"""Each child refused or in conflict has had its own Warning Event; the phase change does not post it again."""


def reported_problems(previous: TradingStackStatus) -> str:
    """The previous Degraded message: it lists every problem an Event was already posted for."""
    return next((c.message for c in previous.conditions if c.type == "Degraded"), "")


def new_problem_events(reported: str, reason: str, problems: Iterable[str]) -> list[PostEvent]:
    """One Warning Event per new problem, not one per resync."""
    return [PostEvent("Warning", reason, problem) for problem in problems if problem not in reported]


@dataclass(frozen=True)
class ChildWrites:
    """The first batch, and the children it leaves unapplied because of a Secret."""

    actions: list[Action]
    blocked: dict[ChildKey, str]
    """Children whose pods would read a foreign or unusable Secret, with why they are not applied."""


def plan_child_writes(
    desired: list[Obj],
    generated_secrets: list[Obj],
    children: Mapping[ChildKey, Obj],
    conflicts: Mapping[ChildKey, NameConflict],
    secret_problems: Mapping[str, str],
    reported: str,
    held: frozenset[ChildKey] = frozenset(),
) -> ChildWrites:
    """`children`: the stack's own live children (conflicts excluded); `secret_problems`: the user Secrets
    (`existingSecret`) that cannot be used, by name; `held`: desired children kept as they live, not applied
    (a service's Deployment while its new revision bakes in a canary, `reconcile.rollout_runner`)."""
    unusable = {name for kind, name in conflicts if kind == "Secret"} | set(secret_problems)
    applies, blocked = _applies([o for o in desired if key_of(o) not in held], children, conflicts, unusable)
    creates = [CreateSecret(s) for s in generated_secrets if key_of(s) not in children and key_of(s) not in conflicts]
    events = new_problem_events(reported, "NameConflict", [str(c) for c in conflicts.values()])
    events += new_problem_events(reported, "SecretInvalid", secret_problems.values())
    return ChildWrites([*events, *creates, *applies], blocked)


def _applies(
    desired: list[Obj], children: Mapping[ChildKey, Obj], conflicts: Mapping[ChildKey, NameConflict], unusable: set[str]
) -> tuple[list[Apply], dict[ChildKey, str]]:
    """An apply of every child that differs from its live object, except a conflicting name (left alone) and a
    child whose pods would read an unusable Secret (blocked, with why)."""
    applies: list[Apply] = []
    blocked: dict[ChildKey, str] = {}
    for obj in desired:
        key = key_of(obj)
        if key in conflicts or not needs_apply(obj, children.get(key)):
            continue
        if (secret := blocked_by(obj, unusable)) is not None:
            blocked[key] = f"not applied, its pods would read Secret/{secret}"
        else:
            applies.append(Apply(obj))
    return applies, blocked


def apply_errors(desired: Iterable[Obj], blocked: Mapping[ChildKey, str], refused: Mapping[ChildKey, str]) -> list[str]:
    """Every child not applied, blocked or refused by the API server, with why; in the order rendered."""
    reasons = {**blocked, **refused}
    return [f"{kind}/{name}: {reasons[kind, name]}" for kind, name in map(key_of, desired) if (kind, name) in reasons]


def prunes(stack: TradingStack, desired: Iterable[Obj], children: Mapping[ChildKey, Obj]) -> list[Delete]:
    """The stack's own children of a prunable kind that are no longer rendered; anything else is never deleted."""
    rendered = {key_of(obj) for obj in desired}
    return [
        Delete(kind, name, stack.namespace)
        for (kind, name), obj in children.items()
        if kind in PRUNABLE_KINDS and (kind, name) not in rendered and controlled_by(obj, stack.metadata.uid)
    ]


def retention_writes(stack: TradingStack, desired: Iterable[Obj], children: Mapping[ChildKey, Obj]) -> list[MergePatch]:
    """The patches that make what outlives the stack follow its deletionPolicy (`reconcile.retention`)."""
    return [
        MergePatch(p.kind, p.name, stack.namespace, p.patch)
        for p in retention_patches(desired, children, stack.metadata.uid)
    ]


def lock_writes(stack: TradingStack, locks: Iterable[Obj]) -> list[MergePatch]:
    """The patches that make Patroni's lock ConfigMaps (`locks`: listed by `render.patroni.lock_selector`) follow
    deletionPolicy (`reconcile.retention.patroni_lock_patches`)."""
    owner = stack.owner_reference().to_dict()
    delete = stack.spec.deletion_policy == "Delete"
    patches = patroni_lock_patches(locks, patroni.lock_config_map_names(stack), owner, delete)
    return [MergePatch(p.kind, p.name, stack.namespace, p.patch) for p in patches]


@dataclass(frozen=True)
class PatroniTeardown:
    """What the deletion of a stack with deletionPolicy Delete does to its Patroni cluster before garbage
    collection, and what it waits for."""

    actions: list[Action]
    waiting_for: str | None
    """Why the deletion cannot go on yet; None when it can."""


def plan_patroni_teardown(
    stack: TradingStack, children: Mapping[ChildKey, Obj], locks: Iterable[ChildKey]
) -> PatroniTeardown:
    """With Delete, Patroni's lock ConfigMaps go with the stack; but a member still running re-creates a lock
    ConfigMap that garbage collection removed (without an owner, so it would stay). So the members stop first (the
    StatefulSet scaled to 0: each Patroni stops its server and lets go of the lock), and only once no member pod is
    left are the locks (`locks`, listed by `render.patroni.lock_selector`) deleted."""
    postgres = stack.spec.postgres
    if stack.spec.deletion_policy != "Delete" or not (postgres.enabled and postgres.patroni):
        return PatroniTeardown([], None)
    scope = patroni.scope(stack)
    statefulset = children.get(("StatefulSet", scope))
    if statefulset is not None and statefulset.get("spec", {}).get("replicas") != 0:
        scale_down = MergePatch("StatefulSet", scope, stack.namespace, {"spec": {"replicas": 0}})
        return PatroniTeardown([scale_down], f"stopping the Patroni members of {scope}")
    members = sorted(
        name
        for (kind, name), pod in children.items()
        if kind == "Pod" and pod["metadata"].get("labels", {}).get(Label.POSTGRES_CLUSTER) == scope
    )
    if members:
        return PatroniTeardown([], f"waiting for the Patroni members {', '.join(members)} to stop")
    names = set(patroni.lock_config_map_names(stack))
    return PatroniTeardown([Delete(kind, name, stack.namespace) for kind, name in locks if name in names], None)


def plan_follow_ups(
    stack: TradingStack,
    desired: list[Obj],
    generated_secrets: list[Obj],
    children: Mapping[ChildKey, Obj],
    errors: list[str],
    reported: str,
    locks: Iterable[Obj] = (),
) -> list[Action]:
    """The second batch. `children`: as the first batch left them (with what its applies and creates returned);
    `errors`: see `apply_errors`; `locks`: Patroni's lock ConfigMaps (see `lock_writes`), never pruned."""
    return [
        *new_problem_events(reported, "ApplyFailed", errors),
        *prunes(stack, desired, children),
        *retention_writes(stack, generated_secrets, children),
        *lock_writes(stack, locks),
    ]


def status_document(status: TradingStackStatus) -> dict[str, Any]:
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)


def plan_status_write(
    namespace: str, name: str, written: TradingStackStatus, status: TradingStackStatus, *, has_status: bool
) -> list[Action]:
    """Writes `status` unless it is what was last `written` and the stack has a status at all (`has_status`: a
    stack never written gets its first status even when it equals the default); then announces a new phase."""
    if status_document(status) == status_document(written) and has_status:
        return []
    return [WriteStatus(namespace, name, status_document(status)), *phase_events(written, status)]


def phase_events(written: TradingStackStatus, status: TradingStackStatus) -> list[PostEvent]:
    """An Event when the phase changes to Ready, Degraded or Failed; none for a reason whose problems each had
    their own Event already."""
    if status.phase == written.phase:
        return []
    condition = {c.type: c for c in status.conditions}
    if status.phase == "Ready":
        return [PostEvent("Normal", "Ready", condition["Ready"].message)]
    if status.phase in ("Degraded", "Failed") and condition["Degraded"].reason not in REASONS_WITH_OWN_EVENTS:
        return [PostEvent("Warning", condition["Degraded"].reason, condition["Degraded"].message)]
    return []


def maintenance_events(written: TradingStackStatus, status: TradingStackStatus) -> list[PostEvent]:
    """One Normal MaintenanceOverride Event the first time a pass sees a fresh apply-now override (its value
    becomes status.maintenance.handledOverride): planned before the status write that records it, so a lost
    write posts it again rather than never."""
    current, before = status.maintenance, written.maintenance
    if current.handled_override == before.handled_override or current.override_reason is None:
        return []
    until = current.override_until.isoformat() if current.override_until else "?"
    message = f"Maintenance opened by apply-now until {until}: {current.override_reason}"
    return [PostEvent("Normal", "MaintenanceOverride", message)]
