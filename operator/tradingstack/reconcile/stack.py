"""One level-based reconcile pass of a TradingStack.

Every pass does the same thing whatever triggered it (creation, a spec edit, a child changed or deleted by
hand, the periodic resync, an operator restart): read the stack's children and, once each, the Secrets it
generates or references (`_read_secrets`), render what they should be, carry out the kill switch
(`reconcile.halt`) before anything else can fail, apply only what differs, prune what is no longer rendered,
observe the rest (the Deployments for the restart run, the sentinels, the services' health, the
Patroni members), then compute and write the status if it changed. Nothing depends on a previous pass having run,
so a crash between two steps is repaired by the next pass. Every write is planned by pure code (`reconcile.halt`,
`reconcile.plan`, `reconcile.restart_runner`, `reconcile.redis_master`, `reconcile.patroni_status`) as typed
actions (`kube.actions`) from what was read, and carried out by `kube.executor` in the planned order; the one
request of a pass to Patroni's REST API (a member's restart or a switchover, decided by `reconcile.restarts` and
`reconcile.patroni_status`) goes through `patroniclient` after the status that records it is written: this
module only reads and sequences.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError

from tradingstack.api import TradingStack, TradingStackStatus, describe
from tradingstack.api.status import PostgresStatus
from tradingstack.components import listed_kinds, render
from tradingstack.components.assess import ConditionUpdate
from tradingstack.components.observe import ChildrenState, PodState, observe
from tradingstack.components.postgres import backup_runs, pitr_runs
from tradingstack.contract import Annotation, Label
from tradingstack.errors import ApiPermanentError, ApiTemporaryError, DeletionPendingError
from tradingstack.health.fetch import fetch_health_documents
from tradingstack.health.rollup import StackHealth, rollup, worst_document
from tradingstack.kube.actions import Action, Apply, CreateSecret, Delete, MergePatch, PostEvent, key_of
from tradingstack.kube.client import ChildKey, Kube, Obj
from tradingstack.kube.executor import Outcome, execute
from tradingstack.metrics import CHILDREN_APPLIED, CHILDREN_PRUNED, RECONCILE_DURATION
from tradingstack.patroniclient import Answer, read_cluster
from tradingstack.patroniclient import restart as patroni_restart
from tradingstack.patroniclient import switchover as patroni_switchover
from tradingstack.reconcile.backup_health import backup_health
from tradingstack.reconcile.diff import with_applied_hash
from tradingstack.reconcile.halt import plan_halt_writes
from tradingstack.reconcile.maintenance_gate import hold_statefulset_templates, maintenance_closed
from tradingstack.reconcile.ownership import NameConflict, conflict, user_secret_problem
from tradingstack.reconcile.pass_error import describe_error, plan_error_report
from tradingstack.reconcile.patroni_fence import fence_actions, lock_holder, stale_leader_suspects
from tradingstack.reconcile.patroni_status import (
    PatroniMembersRead,
    PatroniObservation,
    member_ips,
    observe_patroni,
    outdated_members,
    plan_requested_switchover,
    plan_template_rollout,
    planned_switchover,
    switchover_failed,
)
from tradingstack.reconcile.pitr_health import pitr_health, with_pitr
from tradingstack.reconcile.plan import (
    apply_errors,
    lock_writes,
    maintenance_events,
    plan_child_writes,
    plan_follow_ups,
    plan_patroni_teardown,
    plan_status_write,
    reported_problems,
    retention_writes,
)
from tradingstack.reconcile.redis_tracker import track_redis_master
from tradingstack.reconcile.restart_runner import RestartPlan, created_at, plan_restarts
from tradingstack.reconcile.restarts import PostgresMembers, RestartPostgresMember, SwitchoverPostgres
from tradingstack.reconcile.rollout_runner import (
    RolloutObjects,
    RolloutPlan,
    canary_pod_ips,
    interim_status,
    plan_rollouts,
    rollout_objects,
    with_live_revisions,
)
from tradingstack.reconcile.status import (
    Observations,
    compute_status,
    invalid_spec_status,
    serving_pod_ips,
)
from tradingstack.reconcile.tls import (
    CertificatePlan,
    PgBackRestTlsPlan,
    plan_certificates,
    plan_pgbackrest_tls,
    with_certificate_revisions,
    with_pgbackrest_revision,
)
from tradingstack.render import patroni, pitr, tls
from tradingstack.render.common import DEFAULT_CLUSTER_DOMAIN, PATRONI_PORT
from tradingstack.render.halt import halted_services
from tradingstack.render.patroni import rest_url
from tradingstack.render.pgbackrest_tls import TlsKeys
from tradingstack.render.secrets import (
    generated_secret_names,
    generated_secrets,
    generates_pgbackrest_tls,
    referenced_secret_keys,
)
from tradingstack.render.services import health_url

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def parse_status(raw: Mapping[str, Any] | None) -> TradingStackStatus:
    try:
        return TradingStackStatus.model_validate(dict(raw or {}))
    except ValidationError:
        return TradingStackStatus()  # written by an older operator: recompute from scratch


def record_writes(outcome: Outcome, deletion_policy: str) -> None:
    """The log lines and metrics of what the executor wrote (a refused apply or an existing Secret wrote nothing)."""
    for action in outcome.done:
        match action:
            case CreateSecret() if action.key in outcome.live:
                log.info("generated Secret %s", action.key[1])  # the name only: values never reach a log
            case Apply() if action.key in outcome.live and action.field_manager is None:  # not the restart stamp
                CHILDREN_APPLIED.labels(kind=action.key[0]).inc()
                log.info("applied %s/%s", *action.key)
            case Delete():
                CHILDREN_PRUNED.labels(kind=action.kind).inc()
                log.info("pruned %s/%s", *action.key)
            case MergePatch():
                log.info("%s/%s follows deletionPolicy %s", action.kind, action.name, deletion_policy)


def new_tls_keys() -> TlsKeys:
    """Fresh EC P-256 keys from the system's randomness for the pgBackRest certificates (`spec.postgres.pitr`)."""
    return TlsKeys(*(ec.generate_private_key(ec.SECP256R1()) for _ in range(3)))


def new_private_key() -> ec.EllipticCurvePrivateKey:
    """A fresh EC P-256 key from the system's randomness (the stack's CA and server certificates, `spec.tls`)."""
    return ec.generate_private_key(ec.SECP256R1())


def user_secret_problems(stack: TradingStack, observed_secrets: Mapping[str, Obj | None]) -> dict[str, str]:
    """The Secrets the spec references (`existingSecret`) that are missing or lack keys, with why, from
    `StackReconciler._read_secrets`. Secrets are not watched: a fixed Secret is seen at the next resync."""
    return {
        name: problem
        for name, keys in referenced_secret_keys(stack).items()
        if (problem := user_secret_problem(name, observed_secrets[name], keys)) is not None
    }


class StackReconciler:
    def __init__(
        self,
        kube: Kube,
        clock: Callable[[], datetime] = utc_now,
        new_password: Callable[[], str] = lambda: secrets.token_urlsafe(24),
        new_tls_keys: Callable[[], TlsKeys] = new_tls_keys,
        read_data_plane: bool = True,
        new_key: Callable[[], ec.EllipticCurvePrivateKey] = new_private_key,
        cluster_domain: str = DEFAULT_CLUSTER_DOMAIN,
        dns_cidrs: tuple[str, ...] = (),
        patroni_port: int = PATRONI_PORT.number,
    ) -> None:
        self._kube = kube
        self._domain = cluster_domain
        self._dns_cidrs = dns_cidrs
        self._clock = clock
        self._new_password = new_password
        self._new_tls_keys = new_tls_keys
        self._new_key = new_key
        self._read_data_plane = read_data_plane
        """Read the services' health documents, ask the sentinels and Patroni's REST API (all need the pod
        network)."""
        self._patroni_port = patroni_port
        """Where the Patroni members' REST API answers on their pod IPs (tests run it elsewhere)."""

    def _render(self, stack: TradingStack) -> list[Obj]:
        return render(stack, stack.owner_reference(), self._domain, self._dns_cidrs)

    def _generated_secrets(self, stack: TradingStack) -> list[Obj]:
        return generated_secrets(
            stack, stack.owner_reference(), self._new_password, self._domain, self._new_tls_keys, self._clock()
        )

    async def reconcile(self, body: Mapping[str, Any]) -> TradingStackStatus:
        started = time.perf_counter()
        try:
            return await self._reconcile(body)
        except (ApiTemporaryError, ApiPermanentError):
            raise
        except Exception as err:  # a bug: shown in the stack's status, then raised for the daemon to retry
            await self._report_error(body, err)
            raise
        finally:
            RECONCILE_DURATION.observe(time.perf_counter() - started)

    async def _report_error(self, body: Mapping[str, Any], error: Exception) -> None:
        """Degraded ReconcileError and a Warning Event (`reconcile.pass_error`), planned from the live status
        rather than the pass's body: the pass may have written an interim status (a restart run's step, a
        rollout's) before it failed, which must not be rolled back. Never raises: a failure here is logged and
        the daemon retries the pass all the same."""
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        try:
            live = await self._kube.get_stack(namespace, name)
            if live is None:
                return  # deleted meanwhile
            previous = parse_status(live.get("status"))
            generation = int(meta.get("generation") or 0)
            report = plan_error_report(namespace, name, previous, describe_error(error), generation, self._clock())
            await execute(self._kube, body, report)
        except Exception as err:  # the pass's own error is the one that matters
            log.warning("could not report the failed pass in the status of %s: %s", name, describe_error(err))

    async def _reconcile(self, body: Mapping[str, Any]) -> TradingStackStatus:
        meta = body["metadata"]
        previous = parse_status(body.get("status"))
        has_status = bool(body.get("status"))
        now = self._clock()
        try:
            stack = TradingStack.model_validate(body)
        except ValidationError as err:
            # Not retried: nothing changes until the user edits the spec, which wakes the stack again.
            status = invalid_spec_status(previous, describe(err), int(meta.get("generation", 0)), now)
            invalid = plan_status_write(meta["namespace"], meta["name"], previous, status, has_status=has_status)
            await execute(self._kube, body, invalid)
            return status

        if previous.observed_generation is None:
            first = PostEvent("Normal", "Reconciling", f"Creating the children of {stack.name}")
            await self._execute(body, stack, [first])
        children = await self._kube.list_children(
            stack.namespace, {Label.STACK: stack.name}, [u.kind for u in listed_kinds()]
        )
        locks = await self._patroni_locks(stack)
        observed_secrets = await self._read_secrets(stack)
        certificates = self._plan_certificates(stack, observed_secrets, now)
        generated = self._generated_secrets(stack)
        pgbackrest_tls = self._plan_pgbackrest_tls(stack, observed_secrets, generated, now)
        stamped = with_certificate_revisions(self._render(stack), stack, certificates.revisions)
        stamped = with_pgbackrest_revision(stamped, stack, pgbackrest_tls.revision)
        rendered = [with_applied_hash(obj) for obj in stamped]
        rollouts, objects = await self._plan_rollouts(stack, rendered, children, previous, now)
        if (interim := interim_status(previous, rollouts)) is not None:
            await self._execute(
                body, stack, plan_status_write(stack.namespace, stack.name, previous, interim, has_status=has_status)
            )
            previous, has_status = interim, True
        desired = objects.desired
        conflicts = await self._claim(stack, desired, children, observed_secrets)
        # The kill switch first, before anything else can fail or block (`reconcile.halt`).
        halt = await self._execute(body, stack, plan_halt_writes(stack, desired, children, conflicts, previous.halt))
        children.update(halt.live)
        for action in halt.done:
            if isinstance(action, Delete):
                children.pop(action.key, None)  # gone: the main batch must not prune it a second time
        secret_problems = user_secret_problems(stack, observed_secrets)
        secrets = generated + certificates.secrets
        await self._renew_certificates(body, stack, certificates, pgbackrest_tls)
        templates = hold_statefulset_templates(desired, children, maintenance_closed(stack, now))
        apply_errors = await self._write_children(
            body, stack, reported_problems(previous), desired, secrets, children, conflicts, secret_problems,
            held=objects.held | templates.held, locks=locks.values(),
        )  # fmt: skip
        await self._execute(body, stack, rollouts.events)
        rollouts = with_live_revisions(rollouts, stack, children)
        observed, written = await self._observe(
            body, stack, previous, has_status, children, apply_errors, now, locks.values(), certificates.client_ca
        )
        observed = replace(
            observed,
            conflicts=[str(c) for c in conflicts.values()],
            secret_problems=list(secret_problems.values()),
            rollouts=rollouts.rollouts,
            held_templates=templates.pending,
        )
        status = compute_status(stack, observed, previous, now)
        writes = plan_status_write(stack.namespace, stack.name, written, status, has_status=has_status)
        await self._execute(body, stack, [*maintenance_events(written, status), *writes])
        return status

    async def _read_secrets(self, stack: TradingStack) -> dict[str, Obj | None]:
        """By name, the Secrets the stack generates and those its spec references, each read once (the operator
        may not list Secrets); None for one that does not exist. The certificates' plans, `_claim` and
        `user_secret_problems` all take this one read, so a pass never sees two versions of a Secret."""
        names = list(dict.fromkeys([*generated_secret_names(stack), *referenced_secret_keys(stack)]))
        found = await asyncio.gather(*(self._kube.get("Secret", name, stack.namespace) for name in names))
        return dict(zip(names, found, strict=True))

    async def _claim(
        self,
        stack: TradingStack,
        desired: list[Obj],
        children: dict[ChildKey, Obj],
        observed_secrets: Mapping[str, Obj | None],
    ) -> dict[ChildKey, NameConflict]:
        """Adds to `children` the generated Secrets as `_read_secrets` read them and reads by name every rendered
        child the label LIST did not find; keeps in `children` only what is the stack's own and returns the rest."""
        generated = {("Secret", name): observed_secrets[name] for name in generated_secret_names(stack)}
        children.update({key: secret for key, secret in generated.items() if secret is not None})
        rendered = [key_of(o) for o in desired]
        unseen = [key for key in rendered if key not in children]
        found = await asyncio.gather(*(self._kube.get(kind, key, stack.namespace) for kind, key in unseen))
        children.update({key: obj for key, obj in zip(unseen, found, strict=True) if obj is not None})
        conflicts: dict[ChildKey, NameConflict] = {}
        for key in [*rendered, *generated]:
            if (found_conflict := conflict(children.get(key), stack.name, stack.metadata.uid)) is not None:
                conflicts[key] = found_conflict
                del children[key]  # not ours: never read into the status, never pruned
        return conflicts

    def _plan_certificates(
        self, stack: TradingStack, observed_secrets: Mapping[str, Obj | None], now: datetime
    ) -> CertificatePlan:
        """What to create or issue anew (`reconcile.tls`) from the stack's TLS Secrets (`spec.tls`) as read."""
        if not tls.enabled(stack):
            return CertificatePlan()
        live_ca = observed_secrets[tls.ca_secret_name(stack)] if tls.generated(stack) else None
        live_servers = {kind: observed_secrets[tls.secret_name(stack, kind)] for kind in tls.served_kinds(stack)}
        return plan_certificates(stack, live_ca, live_servers, now, self._new_key, self._domain)

    def _plan_pgbackrest_tls(
        self, stack: TradingStack, observed_secrets: Mapping[str, Obj | None], generated: list[Obj], now: datetime
    ) -> PgBackRestTlsPlan:
        """Whether to issue the certificates of the pgBackRest TLS Secret (pitr) anew, from that Secret as read."""
        if not generates_pgbackrest_tls(stack):
            return PgBackRestTlsPlan()
        name = pitr.tls_secret_name(stack)
        live = observed_secrets[name]
        created = next((s for s in generated if s["metadata"]["name"] == name), None)
        return plan_pgbackrest_tls(stack, live, created, now, self._new_tls_keys, self._domain)

    async def _renew_certificates(
        self, body: Mapping[str, Any], stack: TradingStack, certificates: CertificatePlan, pgbackrest: PgBackRestTlsPlan
    ) -> None:
        """Writes the certificates issued anew (`reconcile.tls`), each with a Normal `CertificateRenewed` Event."""
        reasons = {tls.secret_name(stack, kind): reason for kind, reason in certificates.reasons.items()}
        if pgbackrest.reason is not None:
            reasons[pitr.tls_secret_name(stack)] = pgbackrest.reason
        if not reasons:
            return
        events = []
        for name, reason in reasons.items():
            log.info("issuing the TLS certificate %s of %s anew: %s", name, stack.name, reason)
            events.append(PostEvent("Normal", "CertificateRenewed", f"TLS certificate {name} issued anew: {reason}"))
        await self._execute(body, stack, [*certificates.renewals, *pgbackrest.renewals, *events])

    async def _plan_rollouts(
        self,
        stack: TradingStack,
        rendered: list[Obj],
        children: Mapping[ChildKey, Obj],
        previous: TradingStackStatus,
        now: datetime,
    ) -> tuple[RolloutPlan, RolloutObjects]:
        """The services' rollout steps (`reconcile.rollout`) from the listed children and the canaries' health
        documents, and the objects the pass applies (each wanted canary added, each held Deployment marked)."""
        state = observe(children)
        health = await self._canary_health(stack, state) if self._read_data_plane else None
        plan = plan_rollouts(stack, rendered, state, health, previous, now)
        return plan, rollout_objects(stack, rendered, plan.decisions)

    async def _canary_health(self, stack: TradingStack, state: ChildrenState) -> dict[str, str]:
        services = {s.name: s for s in stack.spec.services}
        urls = {name: health_url(services[name], ip) for name, ip in canary_pod_ips(stack, state).items()}
        documents = await fetch_health_documents(urls)
        return {name: document.status.value for name, document in documents.items() if document is not None}

    async def _write_children(
        self,
        body: Mapping[str, Any],
        stack: TradingStack,
        reported: str,
        desired: list[Obj],
        secrets: list[Obj],
        children: dict[ChildKey, Obj],
        conflicts: Mapping[ChildKey, NameConflict],
        secret_problems: Mapping[str, str],
        held: frozenset[ChildKey] = frozenset(),
        locks: Iterable[Obj] = (),
    ) -> list[str]:
        """Plans and carries out both batches of writes (`reconcile.plan`), leaving in `children` what is live
        after them; returns the children not applied, each with why. `held`: see `plan_child_writes`; `locks`:
        Patroni's lock ConfigMaps (`_patroni_locks`)."""
        child_writes = plan_child_writes(desired, secrets, children, conflicts, secret_problems, reported, held)
        outcome = await self._execute(body, stack, child_writes.actions)
        children.update(outcome.live)
        errors = apply_errors(desired, child_writes.blocked, outcome.refused)
        follow_ups = plan_follow_ups(stack, desired, secrets, children, errors, reported, locks)
        await self._execute(body, stack, follow_ups)
        for action in follow_ups:
            if isinstance(action, Delete):
                del children[action.key]
        return errors

    async def _patroni_locks(self, stack: TradingStack) -> dict[ChildKey, Obj]:
        """Patroni's lock ConfigMaps (they carry its labels, not the stack's); none is looked for without
        Postgres."""
        if not stack.spec.postgres.enabled:
            return {}
        return await self._kube.list_children(stack.namespace, patroni.lock_selector(stack), ["ConfigMap"])

    async def _execute(self, body: Mapping[str, Any], stack: TradingStack, actions: Sequence[Action]) -> Outcome:
        outcome = Outcome()
        try:
            return await execute(self._kube, body, actions, outcome)
        finally:
            record_writes(outcome, stack.spec.deletion_policy)  # after an error too: those writes did happen

    async def _observe(
        self,
        body: Mapping[str, Any],
        stack: TradingStack,
        previous: TradingStackStatus,
        has_status: bool,
        children: dict[ChildKey, Obj],
        apply_errors: list[str],
        now: datetime,
        locks: Iterable[Obj] = (),
        client_ca: str | None = None,
    ) -> tuple[Observations, TradingStackStatus]:
        """Everything the status is computed from, and the status as written so far. Observes the Patroni
        members (taking a stale leader label off a lost member's pod: `_fence_stale_leaders`, with `locks`, the
        lock ConfigMaps read after `children`), the sentinels and the services' health, then carries out in one
        batch the restart run's step
        (interim status, stamp, Event) and the Redis master's labels and Event, in that order; then the Patroni
        cluster's (`_patroni`)."""
        degraded = any(c.type == "Degraded" and c.status == "True" for c in previous.conditions)
        state = observe(children)
        created = created_at(body)
        spec = stack.spec
        members: PostgresMembers | None = None
        urls: dict[str, str] = {}
        if spec.postgres.enabled and spec.postgres.patroni and self._read_data_plane:
            urls = {name: rest_url(ip, self._patroni_port) for name, ip in member_ips(stack, state.pods).items()}
            members = PostgresMembers(await read_cluster(list(urls.values())))
            await self._fence_stale_leaders(body, stack, state.pods, locks, urls)
        restarts = plan_restarts(
            stack, created, previous, has_status=has_status, degraded=degraded, workloads=state.workloads, now=now,
            postgres=members,
        )  # fmt: skip
        backup = None
        if spec.postgres.enabled and spec.postgres.backup.enabled:
            schedule = spec.postgres.backup
            runs = backup_runs(stack, state)
            backup = backup_health(runs, schedule.schedule, schedule.time_zone, now, previous.postgres)
        if spec.postgres.enabled and spec.postgres.pitr.enabled:
            backups, archive = pitr_runs(stack, state)
            threshold = spec.postgres.pitr.archive_lag_threshold_seconds
            pitr = pitr_health(backups, archive, threshold, previous.postgres.pitr)
            backup = with_pitr(backup, pitr, previous.postgres)
        redis = previous.redis
        redis_writes: list[Action] = []
        if spec.redis.enabled and self._read_data_plane:
            redis, redis_writes = await track_redis_master(
                stack, previous.redis, children, state.pods, now, self._domain, client_ca
            )
        health = await self._service_health(stack, state.pods) if self._read_data_plane else None
        outcome = await self._execute(body, stack, [*restarts.actions, *redis_writes])
        children.update(outcome.live)  # the stamped Deployment
        postgres = backup.postgres if backup else previous.postgres
        written, patroni = restarts.written, None
        if members is not None:
            cluster = PatroniMembersRead(urls, members.cluster, outdated_members(stack, state))
            written, patroni = await self._patroni(body, stack, written, has_status, postgres, cluster, restarts, now)
            postgres = patroni.postgres
        observations = Observations(
            workloads=state.with_objects(outcome.live).workloads,
            pods=state.pods,
            apply_errors=apply_errors,
            postgres=postgres,
            backup_condition=ConditionUpdate(backup.status, backup.reason, backup.message) if backup else None,
            postgres_condition=patroni.condition if patroni else None,
            redis=redis,
            health=health,
            restarts=restarts.restarts,
        )
        return observations, written

    async def _fence_stale_leaders(
        self,
        body: Mapping[str, Any],
        stack: TradingStack,
        pods: Sequence[PodState],
        locks: Iterable[Obj],
        urls: Mapping[str, str],
    ) -> None:
        """`reconcile.patroni_fence`: the role label off each member pod labelled leader that does not hold the
        leader lock and whose Patroni does not answer (asked once more, alone)."""
        holder = lock_holder(stack, locks)
        suspects = stale_leader_suspects(stack, pods, holder)
        if holder is None or not suspects:
            return
        unanswered = [pod for pod in suspects if pod not in urls or await read_cluster([urls[pod]]) is None]
        await self._execute(body, stack, fence_actions(stack.namespace, unanswered, holder))

    async def _patroni(
        self,
        body: Mapping[str, Any],
        stack: TradingStack,
        written: TradingStackStatus,
        has_status: bool,
        postgres: PostgresStatus,
        members: PatroniMembersRead,
        restarts: RestartPlan,
        now: datetime,
    ) -> tuple[TradingStackStatus, PatroniObservation]:
        """The restart run's step on the Patroni cluster (`restarts.postgres`: a member's restart, or the leader's
        switchover) or a switchover asked for with the stack's annotation: a switchover is recorded in the status
        before Patroni is asked for it; then the members are read again. Returns the status as written and the
        observation (its Events carried out)."""
        urls, cluster = members.urls, members.cluster
        events: list[PostEvent] = []
        step = restarts.postgres
        if isinstance(step, RestartPostgresMember):
            answer = await patroni_restart(urls[step.member]) if step.member in urls else Answer(None, "no pod IP")
            if not answer.ok:
                message = f"Restart run {step.run_id}: Patroni did not restart {step.member}: {answer.describe()}"
                events.append(PostEvent("Warning", "PostgresRestartFailed", message))
            cluster = await read_cluster(list(urls.values()))
        trigger = stack.metadata.annotations.get(Annotation.SWITCHOVER)
        request = plan_requested_switchover(trigger, postgres, cluster, now)
        if request.switchover is None and isinstance(step, SwitchoverPostgres):
            request = planned_switchover(request, step.leader, step.candidate, now, f"restart run {step.run_id}")
        if step is None:  # a restart run's step first, a new pod template on a later pass
            rollout = plan_template_rollout(request, members, stack.spec.postgres.instances, now)
            request = rollout.request
            if rollout.delete is not None:
                await self._execute(body, stack, [Delete("Pod", rollout.delete, stack.namespace)])
                cluster = await read_cluster(list(urls.values()))
        events += request.events
        if (switchover := request.switchover) is not None:
            interim = written.model_copy(update={"postgres": request.postgres})
            await self._execute(
                body, stack, plan_status_write(stack.namespace, stack.name, written, interim, has_status=has_status)
            )
            written = interim
            url = urls.get(switchover.leader) or next(iter(urls.values()), None)
            answer = Answer(None, "no member has a pod IP")
            if url is not None:
                answer = await patroni_switchover(url, switchover.leader, switchover.candidate)
            if not answer.ok:
                request = switchover_failed(request.postgres, switchover, answer.describe())
                events += request.events
            cluster = await read_cluster(list(urls.values()))
        observation = observe_patroni(request.postgres, cluster, now)
        await self._execute(body, stack, [*events, *observation.events])
        return written, observation

    async def _service_health(self, stack: TradingStack, pods: Sequence[PodState]) -> StackHealth:
        halted = set(halted_services(stack))
        services = [s for s in stack.spec.services if s.replicas > 0 and s.name not in halted]
        urls = {(s.name, ip): health_url(s, ip) for s in services for ip in serving_pod_ips(pods, s.name)}
        documents = await fetch_health_documents(urls)
        return rollup(
            {s.name: worst_document(d for (name, _), d in documents.items() if name == s.name) for s in services}
        )

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
        desired = self._render(stack)
        observed_secrets = await self._read_secrets(stack)
        await self._claim(stack, desired, children, observed_secrets)
        certificates = self._plan_certificates(stack, observed_secrets, self._clock())
        secrets = self._generated_secrets(stack) + certificates.secrets
        locks = await self._patroni_locks(stack)
        teardown = plan_patroni_teardown(stack, children, locks)
        writes = [
            *retention_writes(stack, desired + secrets, children),
            *lock_writes(stack, locks.values()),
            *teardown.actions,
        ]
        await self._execute(body, stack, writes)
        if teardown.waiting_for is not None:
            raise DeletionPendingError(teardown.waiting_for)
