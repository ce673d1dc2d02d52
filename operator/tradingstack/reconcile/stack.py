"""One level-based reconcile pass of a TradingStack.

Every pass does the same thing whatever triggered it (creation, a spec edit, a child changed or deleted by
hand, the periodic resync, an operator restart): read the stack's children, render what they should be, apply
only what differs, prune what is no longer rendered, then compute and write the status if it changed. Nothing
depends on a previous pass having run, so a crash between two steps is repaired by the next pass.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from tradingstack.api import TradingStack, TradingStackStatus, describe
from tradingstack.api.status import RestartsStatus
from tradingstack.components import listed_kinds, prunable_kinds, render
from tradingstack.contract import Label
from tradingstack.errors import ApiPermanentError
from tradingstack.health.fetch import fetch_health_documents
from tradingstack.health.rollup import StackHealth, rollup, worst_document
from tradingstack.kube.client import ChildKey, Kube, Obj
from tradingstack.metrics import CHILDREN_APPLIED, CHILDREN_PRUNED, RECONCILE_DURATION
from tradingstack.reconcile.backup_health import backup_health, backup_runs
from tradingstack.reconcile.diff import needs_apply, with_applied_hash
from tradingstack.reconcile.ownership import NameConflict, blocked_by, conflict, controlled_by, user_secret_problem
from tradingstack.reconcile.redis_tracker import track_redis_master
from tradingstack.reconcile.restart_runner import advance_restarts
from tradingstack.reconcile.retention import retention_patches
from tradingstack.reconcile.status import (
    ConditionUpdate,
    Observations,
    compute_status,
    invalid_spec_status,
    serving_pod_ips,
)
from tradingstack.render.common import DEFAULT_CLUSTER_DOMAIN, child_name
from tradingstack.render.postgres import BACKUP_COMPONENT
from tradingstack.render.secrets import generated_secret_names, generated_secrets, referenced_secret_keys
from tradingstack.render.services import health_url

PRUNABLE_KINDS = prunable_kinds()
"""Kinds removed when no longer rendered (the components grant them `delete`); data and credentials never are."""

REASONS_WITH_OWN_EVENTS = frozenset({"ApplyFailed", "NameConflict", "SecretInvalid"})
"""Each child refused or in conflict has had its own Warning Event; the phase change does not post it again."""

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def parse_status(raw: Mapping[str, Any] | None) -> TradingStackStatus:
    try:
        return TradingStackStatus.model_validate(dict(raw or {}))
    except ValidationError:
        return TradingStackStatus()  # written by an older operator: recompute from scratch


def status_document(status: TradingStackStatus) -> dict[str, Any]:
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)


class StackReconciler:
    def __init__(
        self,
        kube: Kube,
        clock: Callable[[], datetime] = utc_now,
        new_password: Callable[[], str] = lambda: secrets.token_urlsafe(24),
        read_data_plane: bool = True,
        cluster_domain: str = DEFAULT_CLUSTER_DOMAIN,
    ) -> None:
        self._kube = kube
        self._domain = cluster_domain
        self._clock = clock
        self._new_password = new_password
        self._read_data_plane = read_data_plane
        """Read the services' health documents and ask the sentinels (both need the pod network)."""

    async def reconcile(self, body: Mapping[str, Any]) -> TradingStackStatus:
        started = time.perf_counter()
        try:
            return await self._reconcile(body)
        finally:
            RECONCILE_DURATION.observe(time.perf_counter() - started)

    async def _reconcile(self, body: Mapping[str, Any]) -> TradingStackStatus:
        meta = body["metadata"]
        namespace, name, generation = meta["namespace"], meta["name"], int(meta.get("generation", 0))
        previous = parse_status(body.get("status"))
        now = self._clock()
        try:
            stack = TradingStack.model_validate(body)
        except ValidationError as err:
            # Not retried: nothing changes until the user edits the spec, which wakes the stack again.
            status = invalid_spec_status(previous, describe(err), generation, now)
            await self._write_status(body, previous, status)
            return status

        if previous.observed_generation is None:
            await self._kube.post_event(body, "Normal", "Reconciling", f"Creating the children of {name}")
        children = await self._kube.list_children(namespace, {Label.STACK: name}, [u.kind for u in listed_kinds()])
        desired = [with_applied_hash(obj) for obj in render(stack, stack.owner_reference(), self._domain)]
        conflicts = await self._claim(stack, desired, children)
        await self._report_new(body, previous, "NameConflict", [str(c) for c in conflicts.values()])
        secret_problems = await self._check_user_secrets(stack)
        await self._report_new(body, previous, "SecretInvalid", list(secret_problems.values()))
        secrets = generated_secrets(stack, stack.owner_reference(), self._new_password, self._domain)
        await self._create_missing_secrets(secrets, children, conflicts)
        unusable = {name for kind, name in conflicts if kind == "Secret"} | set(secret_problems)
        apply_errors = await self._apply_desired(body, stack, previous, desired, children, conflicts, unusable)
        await self._align_retention(stack, secrets, children)
        written = previous

        async def save_restarts(restarts: RestartsStatus) -> None:
            nonlocal written
            interim = written.model_copy(update={"restarts": restarts})
            await self._write_status(body, written, interim)
            written = interim

        observed = await self._observe(body, stack, previous, children, apply_errors, now, save_restarts)
        observed = replace(
            observed, conflicts=[str(c) for c in conflicts.values()], secret_problems=list(secret_problems.values())
        )
        status = compute_status(stack, observed, previous, now)
        await self._write_status(body, written, status)
        return status

    async def _claim(
        self, stack: TradingStack, desired: list[Obj], children: dict[ChildKey, Obj]
    ) -> dict[ChildKey, NameConflict]:
        """Reads by name every rendered child the label LIST did not find, and the generated Secrets (the operator
        may not list Secrets); keeps in `children` only what is the stack's own and returns the rest."""
        wanted = [(o["kind"], o["metadata"]["name"]) for o in desired] + [
            ("Secret", secret) for secret in generated_secret_names(stack)
        ]
        unseen = [key for key in wanted if key not in children]
        found = await asyncio.gather(*(self._kube.get(kind, key, stack.namespace) for kind, key in unseen))
        children.update({key: obj for key, obj in zip(unseen, found, strict=True) if obj is not None})
        conflicts: dict[ChildKey, NameConflict] = {}
        for key in wanted:
            if (found_conflict := conflict(children.get(key), stack.name, stack.metadata.uid)) is not None:
                conflicts[key] = found_conflict
                del children[key]  # not ours: never read into the status, never pruned
        return conflicts

    async def _check_user_secrets(self, stack: TradingStack) -> dict[str, str]:
        """The Secrets the spec references (`existingSecret`) that are missing or lack keys, with why. Secrets
        are not watched: a fixed Secret is seen at the next resync."""
        problems: dict[str, str] = {}
        for name, keys in referenced_secret_keys(stack).items():
            live = await self._kube.get("Secret", name, stack.namespace)
            if (problem := user_secret_problem(name, live, keys)) is not None:
                problems[name] = problem
        return problems

    async def _report_new(
        self, body: Mapping[str, Any], previous: TradingStackStatus, reason: str, problems: list[str]
    ) -> None:
        """One Warning Event per new problem, not one per resync: the previous Degraded message lists the known."""
        reported = next((c.message for c in previous.conditions if c.type == "Degraded"), "")
        for problem in problems:
            if problem not in reported:
                await self._kube.post_event(body, "Warning", reason, problem)

    async def _apply_desired(
        self,
        body: Mapping[str, Any],
        stack: TradingStack,
        previous: TradingStackStatus,
        desired: list[Obj],
        children: dict[ChildKey, Obj],
        conflicts: Mapping[ChildKey, NameConflict],
        unusable_secrets: set[str],
    ) -> list[str]:
        """Applies what differs from `children` (updated in place), prunes what is no longer rendered; returns
        the children the API server refused, each with its reason. Conflicting names are left alone, and so is
        every child whose pods would read a foreign or unusable Secret."""
        errors: list[str] = []
        for obj in desired:
            key: ChildKey = (obj["kind"], obj["metadata"]["name"])
            if key in conflicts or not needs_apply(obj, children.get(key)):
                continue
            if (secret := blocked_by(obj, unusable_secrets)) is not None:
                errors.append(f"{key[0]}/{key[1]}: not applied, its pods would read Secret/{secret}")
                continue
            try:
                children[key] = await self._kube.apply(obj)
            except ApiPermanentError as err:
                errors.append(f"{key[0]}/{key[1]}: {err}")
                continue
            CHILDREN_APPLIED.labels(kind=key[0]).inc()
            log.info("applied %s/%s", *key)
        await self._report_new(body, previous, "ApplyFailed", errors)
        await self._prune(stack, {(o["kind"], o["metadata"]["name"]) for o in desired}, children)
        return errors

    async def _observe(
        self,
        body: Mapping[str, Any],
        stack: TradingStack,
        previous: TradingStackStatus,
        children: dict[ChildKey, Obj],
        apply_errors: list[str],
        now: datetime,
        save_restarts: Callable[[RestartsStatus], Awaitable[None]],
    ) -> Observations:
        """Everything the status is computed from; also advances the restart run and follows the Redis master."""
        degraded = any(c.type == "Degraded" and c.status == "True" for c in previous.conditions)
        restarts = await advance_restarts(
            self._kube, body, stack, previous.restarts, degraded, children, now, save_restarts
        )
        spec = stack.spec
        backup = None
        if spec.postgres.enabled and spec.postgres.backup.enabled:
            jobs, messages = backup_runs(children, child_name(stack, BACKUP_COMPONENT))
            schedule = spec.postgres.backup
            backup = backup_health(jobs, messages, schedule.schedule, schedule.time_zone, now, previous.postgres)
        pods: list[Mapping[str, Any]] = [v for k, v in children.items() if k[0] == "Pod"]
        redis = previous.redis
        if spec.redis.enabled and self._read_data_plane:
            redis = await track_redis_master(self._kube, body, stack, previous.redis, children, now, self._domain)
        return Observations(
            workloads={k: v for k, v in children.items() if k[0] in ("Deployment", "StatefulSet")},
            pods=pods,
            apply_errors=apply_errors,
            postgres=backup.postgres if backup else previous.postgres,
            backup_condition=ConditionUpdate(backup.status, backup.reason, backup.message) if backup else None,
            redis=redis,
            health=await self._service_health(stack, pods) if self._read_data_plane else None,
            restarts=restarts,
        )

    async def _service_health(self, stack: TradingStack, pods: list[Mapping[str, Any]]) -> StackHealth:
        services = [s for s in stack.spec.services if s.replicas > 0]
        urls = {(s.name, ip): health_url(s, ip) for s in services for ip in serving_pod_ips(pods, s.name)}
        documents = await fetch_health_documents(urls)
        return rollup(
            {s.name: worst_document(d for (name, _), d in documents.items() if name == s.name) for s in services}
        )

    async def _create_missing_secrets(
        self, secrets: list[Obj], children: dict[ChildKey, Obj], conflicts: Mapping[ChildKey, NameConflict]
    ) -> None:
        for secret in secrets:
            key = ("Secret", secret["metadata"]["name"])
            if key in children or key in conflicts:
                continue
            if (created := await self._kube.create(secret)) is not None:
                children[key] = created
                log.info("generated Secret %s", key[1])  # the name only: values never reach a log

    async def _align_retention(self, stack: TradingStack, desired: list[Obj], children: Mapping[ChildKey, Obj]) -> None:
        for patch in retention_patches(desired, children, stack.metadata.uid):
            await self._kube.merge_patch(patch.kind, patch.name, stack.namespace, patch.patch)
            log.info("%s/%s follows deletionPolicy %s", patch.kind, patch.name, stack.spec.deletion_policy)

    async def release(self, body: Mapping[str, Any]) -> None:
        """On deletion: the policy the stack has now decides what garbage collection removes with it, even when
        it was changed after the last pass."""
        try:
            stack = TradingStack.model_validate(body)
        except ValidationError:
            return  # nothing was ever applied for a spec the models refuse
        children = await self._kube.list_children(
            stack.namespace, {Label.STACK: stack.name}, [u.kind for u in listed_kinds()]
        )
        desired = render(stack, stack.owner_reference(), self._domain)
        await self._claim(stack, desired, children)
        secrets = generated_secrets(stack, stack.owner_reference(), self._new_password, self._domain)
        await self._align_retention(stack, desired + secrets, children)

    async def _prune(self, stack: TradingStack, desired: set[ChildKey], children: dict[ChildKey, Obj]) -> None:
        for key, obj in list(children.items()):
            if key[0] in PRUNABLE_KINDS and key not in desired and controlled_by(obj, stack.metadata.uid):
                await self._kube.delete(key[0], key[1], stack.namespace)
                del children[key]
                CHILDREN_PRUNED.labels(kind=key[0]).inc()
                log.info("pruned %s/%s", *key)

    async def _write_status(
        self, body: Mapping[str, Any], previous: TradingStackStatus, status: TradingStackStatus
    ) -> None:
        if status_document(status) == status_document(previous) and body.get("status"):
            return
        meta = body["metadata"]
        await self._kube.replace_status(meta["namespace"], meta["name"], status_document(status))
        if status.phase != previous.phase:
            await self._announce_phase(body, status)

    async def _announce_phase(self, body: Mapping[str, Any], status: TradingStackStatus) -> None:
        condition = {c.type: c for c in status.conditions}
        if status.phase == "Ready":
            await self._kube.post_event(body, "Normal", "Ready", condition["Ready"].message)
        elif status.phase in ("Degraded", "Failed") and condition["Degraded"].reason not in REASONS_WITH_OWN_EVENTS:
            await self._kube.post_event(body, "Warning", condition["Degraded"].reason, condition["Degraded"].message)
