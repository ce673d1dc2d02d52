"""The stack's daemon (`handlers.run_stack`) around whole passes against the in-memory API server of test_pass:
an unexpected exception in a pass is counted, logged with its traceback once, backed off and retried, and the
daemon keeps running; cancellation is never swallowed. The waits between passes are recorded, not slept."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import kopf
import pytest
from prometheus_client import REGISTRY

from tests.unit.test_pass import NOW, ApiServer, condition, example_body, ready_stack, render_failing
from tradingstack import handlers
from tradingstack.contract import Label, Patroni
from tradingstack.errors import ApiTemporaryError, DeletionPendingError
from tradingstack.kube.actions import Obj
from tradingstack.kube.client import Kube
from tradingstack.reconcile.stack import StackReconciler

KEY = ("trading", "quantum-trader")


class WatchedApiServer(ApiServer):
    """Also delivers each status written into the daemon's body, as kopf's watch does."""

    def __init__(self, api: ApiServer, body: dict[str, Any]) -> None:
        super().__init__(api.objects)
        self.status, self.body = api.status, body

    async def replace_status(self, namespace: str, name: str, status: Obj) -> None:
        await super().replace_status(namespace, name, status)
        self.body["status"] = self.status


class Stopped:
    """kopf's DaemonStopped: false until the test says the daemon is to stop."""

    def __init__(self) -> None:
        self.flag = False

    def __bool__(self) -> bool:
        return self.flag


def internal_errors() -> float:
    return REGISTRY.get_sample_value("tradingstack_reconcile_errors_total", {"reason": "InternalError"}) or 0.0


async def run_daemon(
    monkeypatch: pytest.MonkeyPatch, reconciler: Any, body: dict[str, Any], passes: int
) -> tuple[list[float], kopf.Memo]:
    """Runs `passes` passes of the daemon; returns the wait after each (what it would have slept) and its memo."""
    delays: list[float] = []
    stopped = Stopped()

    async def wait(wake: asyncio.Event, delay: float, memo: kopf.Memo, key: handlers.StackKey, hold: bool) -> None:
        assert hold == (delay != memo.resync_seconds)  # held only while a bug backs off
        delays.append(delay)
        stopped.flag = len(delays) >= passes

    monkeypatch.setattr(handlers, "_wait", wait)
    memo = kopf.Memo(reconciler=reconciler, resync_seconds=30.0, wakers={}, generations={}, urgent=set(), phases={})
    await run_stack(stopped, body, memo)
    return delays, memo


async def run_stack(stopped: Stopped, body: dict[str, Any], memo: kopf.Memo) -> None:
    """The daemon as kopf calls it (its decorator types it for kopf's own arguments)."""
    daemon = cast(Any, handlers.run_stack)
    await daemon(stopped=cast(kopf.DaemonStopped, stopped), body=kopf.Body(cast(Any, body)), memo=memo)


async def daemon_over(
    monkeypatch: pytest.MonkeyPatch, api: ApiServer, passes: int
) -> tuple[WatchedApiServer, list[float]]:
    body = {**example_body(), "status": api.status}
    watched = WatchedApiServer(api, body)
    reconciler = StackReconciler(
        cast(Kube, watched), clock=lambda: NOW, new_password=lambda: "pw", read_data_plane=False
    )
    watched.calls.clear()
    delays, memo = await run_daemon(monkeypatch, reconciler, body, passes)
    assert KEY not in memo.wakers and KEY not in memo.phases  # cleaned up when it stopped
    return watched, delays


async def test_a_bug_in_a_pass_is_shown_backed_off_and_retried_then_the_stack_is_ready(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    api = await ready_stack()
    render_failing(monkeypatch, ValueError("Attribute's length must be >= 1 and <= 64, but it was 70"))
    errors = internal_errors()
    with caplog.at_level(logging.WARNING, logger=handlers.__name__):
        watched, delays = await daemon_over(monkeypatch, api, passes=3)
    assert delays == [1.0, 30.0, 30.0]  # retried after the first backoff, not kopf's 60 s; then the resync
    assert internal_errors() == errors + 1
    assert watched.calls == [
        ("status",), ("event", "Warning", "ReconcileError"),  # the failed pass
        ("status",), ("event", "Normal", "Ready"),  # the retry
    ]  # fmt: skip
    first, second = watched.statuses
    assert first["phase"] == "Degraded" and condition(first, "Degraded")["reason"] == "ReconcileError"
    assert second["phase"] == "Ready" and condition(second, "Degraded")["reason"] == "AsExpected"
    [record] = caplog.records
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert "ValueError: Attribute's length" in record.getMessage()


async def test_the_same_bug_again_and_again_is_logged_once_and_backs_off_up_to_the_cap(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    api = await ready_stack()
    bug = KeyError("tls.crt")
    render_failing(monkeypatch, *[bug] * 11)
    errors = internal_errors()
    with caplog.at_level(logging.WARNING, logger=handlers.__name__):
        watched, delays = await daemon_over(monkeypatch, api, passes=12)
    assert delays == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 30]
    assert internal_errors() == errors + 11
    assert [call for call in watched.calls if call[0] == "event"] == [
        ("event", "Warning", "ReconcileError"),
        ("event", "Normal", "Ready"),
    ]
    assert len(watched.statuses) == 2  # the error once, then the good pass's status
    assert [r.exc_info is not None for r in caplog.records] == [True] + [False] * 10  # one traceback


async def test_another_bug_is_shown_and_logged_anew(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    api = await ready_stack()
    render_failing(monkeypatch, KeyError("tls.crt"), ValueError("boom"))
    with caplog.at_level(logging.WARNING, logger=handlers.__name__):
        watched, delays = await daemon_over(monkeypatch, api, passes=3)
    assert delays == [1.0, 2.0, 30.0]
    assert [call[2] for call in watched.calls if call[0] == "event"] == ["ReconcileError", "ReconcileError", "Ready"]
    assert [r.exc_info is not None for r in caplog.records] == [True, True]


class Cancelled:
    """A pass cancelled by kopf stopping the daemon (after its cancellation timeout)."""

    async def reconcile(self, body: Any) -> Any:
        raise asyncio.CancelledError


async def test_cancellation_is_never_swallowed() -> None:
    memo = kopf.Memo(reconciler=Cancelled(), resync_seconds=30.0, wakers={}, generations={}, urgent=set(), phases={})
    with pytest.raises(asyncio.CancelledError):
        await run_stack(Stopped(), example_body(), memo)
    assert KEY not in memo.wakers and KEY not in memo.generations  # cleaned up all the same


async def test_while_a_bug_backs_off_only_a_spec_edit_ends_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handlers, "DEBOUNCE_SECONDS", 0.0)
    memo = kopf.Memo(urgent=set())
    wake = asyncio.Event()
    waiting = asyncio.create_task(handlers._wait(wake, 30.0, memo, KEY, hold=True))
    wake.set()  # the failed pass's status write, a child's event
    await asyncio.sleep(0.05)
    assert not waiting.done()
    memo.urgent.add(KEY)  # the user edits the spec
    wake.set()
    await asyncio.wait_for(waiting, timeout=1.0)
    memo.urgent.clear()
    wake.clear()
    waiting = asyncio.create_task(handlers._wait(wake, 30.0, memo, KEY))
    wake.set()  # not held: any event wakes the stack
    await asyncio.wait_for(waiting, timeout=1.0)
    await asyncio.wait_for(handlers._wait(asyncio.Event(), 0.01, memo, KEY, hold=True), timeout=1.0)  # the backoff


class Waiting:
    """A release that must wait (a Patroni cluster stopping), then one the API server cannot answer."""

    def __init__(self) -> None:
        self.errors: list[Exception] = [DeletionPendingError("stopping the members", delay=3.0),
                                        ApiTemporaryError("connection refused", delay=5.0)]  # fmt: skip

    async def release(self, body: Any) -> None:
        raise self.errors.pop(0)


async def test_a_release_that_must_wait_keeps_the_finalizer_and_is_retried_after_its_delay() -> None:
    memo = kopf.Memo(reconciler=Waiting())
    release = cast(Any, handlers.release_stack)  # kopf's decorator types it as a handler of every cause
    for message, delay in (("stopping the members", 3.0), ("connection refused", 5.0)):
        with pytest.raises(kopf.TemporaryError, match=message) as raised:
            await release(body=kopf.Body(cast(Any, example_body())), memo=memo)
        assert raised.value.delay == delay


async def test_a_member_role_change_wakes_its_stack_and_annotation_rewrites_do_not() -> None:
    """`handlers.member_role_changed`: the first sight of a member pod and each change of its role label wake the
    stack's daemon; events that leave the label as it was (Patroni rewrites its annotations every loop) do not."""
    memo = kopf.Memo(wakers={("trading", "quant"): asyncio.Event()}, member_roles={})
    wake: asyncio.Event = memo.wakers[("trading", "quant")]

    async def deliver(role: str | None, event_type: str | None = "MODIFIED", uid: str = "uid-0") -> bool:
        labels = {Label.STACK: "quant", Label.POSTGRES_CLUSTER: "quant-postgres"}
        if role is not None:
            labels[Label.POSTGRES_ROLE] = role
        meta = {"name": "quant-postgres-0", "namespace": "trading", "uid": uid, "labels": labels}
        wake.clear()
        event = cast(kopf.RawEvent, {"type": event_type, "object": {"metadata": meta}})
        handler = cast(Any, handlers.member_role_changed)  # kopf's decorator types it as its callback protocol
        await handler(meta=kopf.Body(cast(kopf.RawBody, {"metadata": meta})).meta, memo=memo, event=event)
        return wake.is_set()

    seen = [
        await deliver(Patroni.LEADER_ROLE, None),  # the initial listing
        await deliver(Patroni.LEADER_ROLE),  # its annotations rewritten
        await deliver(None),  # the label removed (a lost leader's, by the operator)
        await deliver(None),
        await deliver(Patroni.REPLICA_ROLE),  # back as a replica
        await deliver(Patroni.REPLICA_ROLE, "DELETED"),
    ]
    assert seen == [True, False, True, False, True, False]
    assert memo.member_roles == {}
