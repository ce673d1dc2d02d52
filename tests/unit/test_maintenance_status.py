"""status.maintenance computed from spec + now, the apply-now override's Event, and zero-write resyncs."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from tests.unit.test_pass import ApiServer, example_body
from tradingstack.api import TradingStack, TradingStackStatus
from tradingstack.api.status import MaintenanceStatus, RestartsStatus
from tradingstack.contract import Annotation
from tradingstack.kube.actions import PostEvent
from tradingstack.kube.client import Kube
from tradingstack.overview import overview_text
from tradingstack.reconcile.plan import maintenance_events
from tradingstack.reconcile.stack import StackReconciler
from tradingstack.reconcile.status import maintenance_status
from tradingstack.schedule.maintenance import format_override

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
WINDOW = {"schedule": "0 22 * * *", "durationMinutes": 120, "timeZone": "Europe/Oslo"}  # 21:00-23:00 UTC in CET
FREEZE = {"start": "2026-12-03T00:00:00Z", "end": "2026-12-04T00:00:00Z", "reason": "index rebalance"}


def with_maintenance(maintenance: dict[str, Any], **annotations: str) -> dict[str, Any]:
    body = example_body(**annotations)
    body["spec"]["maintenance"] = maintenance
    return body


def status_at(body: Mapping[str, Any], now: datetime, held: datetime | None = None) -> MaintenanceStatus:
    stack = TradingStack.model_validate(body)
    return maintenance_status(stack, RestartsStatus(held=held), [], MaintenanceStatus(), now)


def test_outside_the_windows_it_is_closed_until_the_next_opening() -> None:
    status = status_at(with_maintenance({"windows": [WINDOW]}), NOW)
    assert status == MaintenanceStatus(open=False, next_window=datetime(2026, 12, 3, 21, tzinfo=UTC))
    inside = status_at(with_maintenance({"windows": [WINDOW]}), datetime(2026, 12, 3, 21, 30, tzinfo=UTC))
    assert inside == MaintenanceStatus(open=True, open_until=datetime(2026, 12, 3, 23, tzinfo=UTC))


def test_a_freeze_names_its_end_and_reason_and_a_held_run_is_pending() -> None:
    status = status_at(with_maintenance({"windows": [WINDOW], "freezes": [FREEZE]}), NOW, held=NOW - timedelta(hours=7))
    assert not status.open
    assert status.frozen_until == datetime(2026, 12, 4, tzinfo=UTC) and status.freeze_reason == "index rebalance"
    assert status.next_window == datetime(2026, 12, 4, 21, tzinfo=UTC)  # the 3rd's window is frozen
    assert status.pending == ["restart run 20261203T050000Z waits for the maintenance window"]


def test_the_status_does_not_change_while_nothing_changes() -> None:
    body = with_maintenance({"windows": [WINDOW], "freezes": [FREEZE]})
    assert status_at(body, NOW) == status_at(body, NOW + timedelta(minutes=17, seconds=3))
    assert status_at(with_maintenance({}), NOW) == MaintenanceStatus()  # default: open, nothing else


def test_a_fresh_override_opens_maintenance_and_is_recorded_a_stale_one_is_ignored() -> None:
    value = format_override(NOW - timedelta(minutes=10), "hotfix for venue outage")
    body = with_maintenance({"freezes": [FREEZE]}, **{Annotation.APPLY_NOW: value})
    status = status_at(body, NOW)
    assert status.open and status.override_reason == "hotfix for venue outage"
    assert status.override_until == status.open_until == NOW + timedelta(minutes=50)
    assert status.handled_override == value and status.freeze_reason == "index rebalance"
    stale = status_at(body, NOW + timedelta(minutes=50))
    assert not stale.open and stale.override_reason is None and stale.handled_override is None


def test_the_override_event_is_planned_once_per_value() -> None:
    value = format_override(NOW, "hotfix")
    before = TradingStackStatus()
    after = TradingStackStatus(
        maintenance=MaintenanceStatus(
            override_until=NOW + timedelta(hours=1), override_reason="hotfix", handled_override=value
        )
    )
    assert maintenance_events(before, after) == [
        PostEvent(
            "Normal", "MaintenanceOverride", "Maintenance opened by apply-now until 2026-12-03T13:00:00+00:00: hotfix"
        )
    ]
    assert maintenance_events(after, after) == []


async def reconcile(api: ApiServer, body: Mapping[str, Any], now: datetime) -> list[tuple[Any, ...]]:
    api.calls.clear()
    reconciler = StackReconciler(cast(Kube, api), clock=lambda: now, new_password=lambda: "pw", read_data_plane=False)
    await reconciler.reconcile({**body, "status": api.status} if api.status else body)
    return list(api.calls)


async def test_an_override_posts_one_event_and_resyncs_write_nothing() -> None:
    body = with_maintenance(
        {"windows": [WINDOW], "freezes": [FREEZE]}, **{Annotation.APPLY_NOW: format_override(NOW, "hotfix")}
    )
    api = ApiServer()
    first = await reconcile(api, body, NOW)
    assert ("event", "Normal", "MaintenanceOverride") in first
    api.settle()
    await reconcile(api, body, NOW + timedelta(seconds=30))
    assert api.status is not None and api.status["maintenance"]["handledOverride"] == format_override(NOW, "hotfix")
    later = [await reconcile(api, body, NOW + timedelta(seconds=30 * n)) for n in (2, 3, 4)]
    assert later == [[], [], []]  # no second Event, no status write while nothing changes


async def test_a_closed_stack_resyncs_without_writes() -> None:
    body = with_maintenance({"windows": [WINDOW], "freezes": [FREEZE]})
    api = ApiServer()
    await reconcile(api, body, NOW)
    api.settle()
    await reconcile(api, body, NOW + timedelta(seconds=30))
    assert api.status is not None and api.status["maintenance"]["open"] is False
    assert [await reconcile(api, body, NOW + timedelta(minutes=n)) for n in (1, 2, 3)] == [[], [], []]


def test_the_overview_shows_maintenance_only_when_it_has_something_to_say() -> None:
    closed = status_at(with_maintenance({"windows": [WINDOW], "freezes": [FREEZE]}), NOW, held=NOW - timedelta(hours=7))
    document = {
        "namespace": "trading",
        "name": "qt",
        "status": TradingStackStatus(maintenance=closed).model_dump(mode="json", by_alias=True, exclude_none=True),
        "warnings": [],
    }
    text = overview_text(document, NOW)
    section = text[text.index("Maintenance") : text.index("Recent warnings")].splitlines()
    assert section == [
        "Maintenance",
        "  open: no",
        "  frozen until 2026-12-04 00:00:00Z (in 12h): index rebalance",
        "  next window: 2026-12-04 21:00:00Z (in 33h)",
        "  pending: restart run 20261203T050000Z waits for the maintenance window",
        "",
    ]
    document["status"] = TradingStackStatus().model_dump(mode="json", by_alias=True, exclude_none=True)
    assert "Maintenance" not in overview_text(document, NOW)
