"""deletionPolicy decides, at deletion time, what outlives the stack: the patches that make the live objects say so.

What garbage collection removes with the stack is decided by owner references and StatefulSet claim retention.
Server-side apply keeps both in step with the spec for the applied children, but the generated Secrets are
created once and never applied, so a later change of `deletionPolicy` must reach them by a patch; and a stack
deleted right after such a change must not wait for a pass that will never run. Pure: the reconciler patches.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tradingstack.contract import Annotation

Obj = Mapping[str, Any]


@dataclass(frozen=True)
class RetentionPatch:
    kind: str
    name: str
    patch: dict[str, Any]
    """A JSON merge patch."""


def _owner_uids(obj: Obj) -> set[str]:
    return {str(ref.get("uid")) for ref in obj.get("metadata", {}).get("ownerReferences") or []}


def _owner_references(desired: Obj, live: Obj, stack_uid: str) -> RetentionPatch | None:
    """A retained object carries the stack's owner reference exactly when `desired` (rendered for the current
    policy) does; owner references of anyone else are kept."""
    if desired["metadata"].get("annotations", {}).get(Annotation.RETAIN) != "true":
        return None
    wanted = [ref for ref in desired["metadata"].get("ownerReferences") or [] if ref.get("uid") == stack_uid]
    others = [ref for ref in live["metadata"].get("ownerReferences") or [] if ref.get("uid") != stack_uid]
    target = others + wanted
    if {str(ref.get("uid")) for ref in target} == _owner_uids(live):
        return None
    return RetentionPatch(desired["kind"], desired["metadata"]["name"], {"metadata": {"ownerReferences": target}})


def _claim_retention(desired: Obj, live: Obj) -> RetentionPatch | None:
    if desired["kind"] != "StatefulSet":
        return None
    wanted = desired["spec"].get("persistentVolumeClaimRetentionPolicy")
    if wanted is None or live.get("spec", {}).get("persistentVolumeClaimRetentionPolicy") == wanted:
        return None
    patch = {"spec": {"persistentVolumeClaimRetentionPolicy": wanted}}
    return RetentionPatch("StatefulSet", desired["metadata"]["name"], patch)


def patroni_lock_patches(
    locks: Iterable[Obj], names: Iterable[str], owner: Mapping[str, Any], delete: bool
) -> list[RetentionPatch]:
    """The patches that make Patroni's lock ConfigMaps (`render.patroni.lock_config_map_names`: `names`) follow
    deletionPolicy: with Delete they carry the stack's owner reference (not as controller: Patroni writes them),
    so garbage collection removes them with the stack; with Retain they carry none, so they stay with the retained
    data volumes, and a stack re-created under the same name over that data finds its cluster's system identifier
    and leader history in them. An owner reference of an earlier stack of the same name is dropped (it is this
    stack's now); anyone else's is kept."""
    wanted_names = set(names)
    reference = {**owner, "controller": False, "blockOwnerDeletion": False}
    patches: list[RetentionPatch] = []
    for live in locks:
        name = live["metadata"]["name"]
        if name not in wanted_names:
            continue
        refs = live["metadata"].get("ownerReferences") or []
        others = [r for r in refs if (r.get("kind"), r.get("name")) != (owner["kind"], owner["name"])]
        target = others + ([reference] if delete else [])
        if refs != target:
            patches.append(RetentionPatch("ConfigMap", name, {"metadata": {"ownerReferences": target}}))
    return patches


def retention_patches(
    desired: Iterable[Obj], children: Mapping[tuple[str, str], Obj], stack_uid: str
) -> list[RetentionPatch]:
    """The patches that make the live children's deletion behaviour what the rendered ones say."""
    patches: list[RetentionPatch] = []
    for obj in desired:
        live = children.get((obj["kind"], obj["metadata"]["name"]))
        if live is None:
            continue
        patches += [p for p in (_owner_references(obj, live, stack_uid), _claim_retention(obj, live)) if p]
    return patches
