"""kopf wiring only: settings, one reconcile daemon per stack, and watches that wake it.

Design (drift repair): each TradingStack gets a daemon that runs the level-based reconcile of
`tradingstack.reconcile.stack`, then sleeps until woken or until the resync interval passes. Watches on the
stack and on every child kind (filtered by the stack label) wake the stack's daemon, so a child deleted or
edited by hand is restored within about a second, and the resync repairs anything a missed event hid. The
daemon never chains on `status.phase`: every pass recomputes everything from what it reads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any

import kopf

from tradingstack import API_GROUP, API_VERSION, PLURAL
from tradingstack.components import watched_kinds
from tradingstack.contract import Label
from tradingstack.errors import ApiTemporaryError, DeletionPendingError
from tradingstack.kube.client import Kube
from tradingstack.logs import log_context
from tradingstack.metrics import RECONCILE_ERRORS, STACK_METRICS, STACKS
from tradingstack.reconcile.pass_error import Retry, after_error, describe_error
from tradingstack.reconcile.stack import StackReconciler
from tradingstack.reconcile.status import rolling_out
from tradingstack.render.common import DEFAULT_CLUSTER_DOMAIN

StackKey = tuple[str, str]
MISSING_ROLE = "<not seen>"
"""A member pod not seen yet: its first event records its role (and wakes its stack once)."""
DEBOUNCE_SECONDS = 1.0
"""Coalesces a burst of child events (a rollout sends dozens) into one pass; a spec edit skips it."""
MAX_BACKOFF_SECONDS = 300.0
ROLLOUT_POLL_SECONDS = 5.0
"""The pass interval while a service's canary bakes or its Deployment is promoted: a canary's health document
changes without a watch event, and its bake ends at a time no event marks."""

log = logging.getLogger(__name__)
registry = kopf.OperatorRegistry()
"""This module's handlers only, so importing it in tests does not pollute kopf's default registry."""

ERROR_BACKOFFS = (1, 2, 4, 8, 16, 30)
"""Seconds between retries of a failing pass (kopf's error_backoffs), spread instead of kopf's fixed delays."""


def _plain(value: Any) -> Any:
    """kopf hands out live mapping views; pydantic and JSON want plain dicts and lists."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@dataclasses.dataclass(frozen=True, kw_only=True)
class _IdentifiedConnection(kopf.ConnectionInfo):
    """kopf's connection with our User-Agent (kopf sets its own only when the session has none), so the audit
    log tells apart the writes of two operators running side by side."""

    user_agent: str

    def as_http_headers(self) -> dict[str, str]:
        return {**super().as_http_headers(), "User-Agent": self.user_agent}


@kopf.on.login(registry=registry)
def login(memo: kopf.Memo, **kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a pod: the ServiceAccount; elsewhere: the kubeconfig (KUBECONFIG or ~/.kube/config)."""
    info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
    user_agent = memo.get("user_agent")
    if info is None or not user_agent:
        return info
    fields = {f.name: getattr(info, f.name) for f in dataclasses.fields(info)}
    return _IdentifiedConnection(**fields, user_agent=user_agent)


@kopf.on.startup(registry=registry)
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = f"{API_GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=API_GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=API_GROUP)
    # Ask the server to end each watch after 5 minutes and give up client-side shortly after, so a connection
    # that died silently (NAT, LB idle timeout) is replaced instead of leaving the operator deaf.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    settings.scanning.disabled = not memo.get("scanning", True)
    # Our own events are explicit; kopf's INFO handler logs would otherwise become Events (writes) every pass.
    settings.posting.level = logging.WARNING
    settings.networking.error_backoffs = list(ERROR_BACKOFFS)
    # With leader election, every write of a reconcile pass first checks that this operator still leads.
    memo.kube = Kube.from_kubeconfig(user_agent=memo.get("user_agent"), may_write=memo.get("may_write"))
    memo.reconciler = StackReconciler(
        memo.kube,
        read_data_plane=memo.get("read_data_plane", True),
        cluster_domain=memo.get("cluster_domain", DEFAULT_CLUSTER_DOMAIN),
        dns_cidrs=memo.get("dns_cidrs", ()),
    )
    memo.wakers = {}
    memo.generations = {}  # the metadata.generation each stack's latest pass started from
    memo.urgent = set()  # stacks whose spec changed since: their next pass starts without the debounce
    memo.phases = {}
    memo.member_roles = {}  # by pod uid, the role label last seen on each Patroni member (member_role_changed)
    memo.setdefault("resync_seconds", 30.0)


@kopf.on.cleanup(registry=registry)
async def close(memo: kopf.Memo, **_: Any) -> None:
    await memo.kube.close()


def _publish_phases(phases: dict[StackKey, str]) -> None:
    counts = Counter(phases.values())
    for phase in ("Pending", "Progressing", "Ready", "Degraded", "Failed"):
        STACKS.labels(phase=phase).set(counts.get(phase, 0))


async def _wait(wake: asyncio.Event, delay: float, memo: kopf.Memo, key: StackKey, *, hold: bool = False) -> None:
    """Until the stack is woken (then the debounce, unless its spec changed) or `delay` seconds pass. With `hold`
    (a pass that failed with a bug, backing off) only a spec edit ends the wait early: the failed pass's own
    status write and the children's events would otherwise retry it about every second."""
    deadline = asyncio.get_running_loop().time() + delay
    while (remaining := deadline - asyncio.get_running_loop().time()) > 0:
        try:
            await asyncio.wait_for(wake.wait(), timeout=remaining)
        except TimeoutError:
            return
        if key in memo.urgent:
            return
        if not hold:
            await asyncio.sleep(DEBOUNCE_SECONDS)
            return
        wake.clear()


def _log_failure(error: Exception, retry: Retry, logged: str | None) -> str | None:
    """Logs a failed pass; returns the unexpected error last logged with its traceback. A bug is logged with its
    traceback the first time it is seen (until a pass succeeds), then as one line per retry: no log storm."""
    if not retry.internal:
        if retry.delay is None:
            log.error("reconcile failed: %s", error)
        else:
            log.warning("reconcile will be retried: %s", error)
        return logged
    described = describe_error(error)
    if described != logged:
        log.error("reconcile failed with an unexpected error, retried in %.0f s: %s", retry.delay, described,
                  exc_info=error)  # fmt: skip
    else:
        log.warning("reconcile failed again (traceback logged before), retried in %.0f s: %s", retry.delay, described)
    return described


@kopf.daemon(API_GROUP, API_VERSION, PLURAL, cancellation_timeout=10.0, registry=registry)
async def run_stack(stopped: kopf.DaemonStopped, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Passes until kopf stops the daemon. No exception of a pass escapes (kopf would restart the daemon after a
    fixed 60 s): each is counted, logged and retried (`reconcile.pass_error.after_error`); cancellation is not
    an `Exception` and ends the loop."""
    key: StackKey = (body.metadata.namespace or "", body.metadata.name or "")
    wake = memo.wakers.setdefault(key, asyncio.Event())
    backoff = 1.0
    logged: str | None = None  # the unexpected error last logged with its traceback
    try:
        while not stopped:
            delay, hold = float(memo.resync_seconds), False
            memo.generations[key] = body.metadata.get("generation")
            with log_context(stack=key[1], namespace=key[0]):
                try:
                    status = await memo.reconciler.reconcile(_plain(body))
                    memo.phases[key] = status.phase
                    if rolling_out(status.rollouts):
                        delay = min(delay, ROLLOUT_POLL_SECONDS)
                    STACK_METRICS.update(key, status)
                    backoff, logged = 1.0, None
                except Exception as err:  # every error of a pass; the reconciler reported a bug in the status
                    retry = after_error(err, backoff, MAX_BACKOFF_SECONDS)
                    RECONCILE_ERRORS.labels(reason=retry.reason).inc()
                    logged = _log_failure(err, retry, logged)
                    delay = delay if retry.delay is None else retry.delay
                    backoff, hold = retry.backoff, retry.internal
            _publish_phases(memo.phases)
            await _wait(wake, delay, memo, key, hold=hold)
            wake.clear()
            memo.urgent.discard(key)
    finally:
        memo.wakers.pop(key, None)
        memo.generations.pop(key, None)
        memo.urgent.discard(key)
        memo.phases.pop(key, None)
        STACK_METRICS.forget(key)
        _publish_phases(memo.phases)


@kopf.on.delete(API_GROUP, API_VERSION, PLURAL, registry=registry)
async def release_stack(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Before garbage collection: what outlives the stack follows the deletionPolicy it has now. The finalizer stays
    while the release waits (a Patroni cluster stopping) or the API server cannot answer, and kopf tries again."""
    with log_context(stack=body.metadata.name, namespace=body.metadata.namespace):
        try:
            await memo.reconciler.release(_plain(body))
        except (DeletionPendingError, ApiTemporaryError) as err:
            raise kopf.TemporaryError(str(err), delay=err.delay) from err


def _wake(memo: kopf.Memo, namespace: str | None, stack: str | None) -> None:
    waker = memo.wakers.get((namespace or "", stack or ""))
    if waker is not None:
        waker.set()


@kopf.on.event(API_GROUP, API_VERSION, PLURAL, registry=registry)
async def stack_changed(meta: kopf.Meta, memo: kopf.Memo, **_: Any) -> None:
    key = (meta.namespace or "", meta.name or "")
    # A spec edit (a halt above all) is a person waiting; status writes and child events are not.
    if meta.get("generation") != memo.generations.get(key, meta.get("generation")):
        memo.urgent.add(key)
    _wake(memo, meta.namespace, meta.name)


def _register_child_watches() -> None:
    for use in watched_kinds():

        async def child_changed(meta: kopf.Meta, memo: kopf.Memo, **_: Any) -> None:
            _wake(memo, meta.namespace, meta.labels.get(Label.STACK))

        kopf.on.event(
            use.group, use.version, use.plural, labels={Label.STACK: kopf.PRESENT}, id=f"child-{use.plural}",
            registry=registry,
        )(child_changed)  # fmt: skip


_register_child_watches()


@kopf.on.event("", "v1", "pods", labels={Label.POSTGRES_CLUSTER: kopf.PRESENT, Label.STACK: kopf.PRESENT},
               registry=registry)  # fmt: skip
async def member_role_changed(meta: kopf.Meta, memo: kopf.Memo, event: kopf.RawEvent, **_: Any) -> None:
    """A Patroni member's role label changed (a failover, a switchover): its stack's pass runs now rather than at
    the resync, so the status, the Events and a lost leader's stale label (`reconcile.patroni_fence`) follow within
    seconds. Patroni's rewrites of its pod's annotations, every loop, wake nothing."""
    roles: dict[str, str | None] = memo.member_roles
    uid = meta.uid or ""
    if event.get("type") == "DELETED":
        roles.pop(uid, None)
        return
    role = meta.labels.get(Label.POSTGRES_ROLE)
    if roles.get(uid, MISSING_ROLE) != role:
        roles[uid] = role
        _wake(memo, meta.namespace, meta.labels.get(Label.STACK))
