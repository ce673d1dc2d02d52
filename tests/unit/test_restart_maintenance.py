"""The daily restarts gated by spec.maintenance, tick by tick with an injected clock (issue 19 item 2)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.unit.test_restart_planner import RUN, SCHEDULED, TICK, Cluster, stamps
from tradingstack.api.spec import DEFAULT_RESTART_ORDER, TradingStackSpec
from tradingstack.api.status import RestartsStatus
from tradingstack.reconcile.restarts import (
    Finish,
    Hold,
    Idle,
    RestartStep,
    Skip,
    Stamp,
    manual_run_id,
    plan_restart_step,
)
from tradingstack.schedule.maintenance import Override

YESTERDAY = RestartsStatus(last_run=SCHEDULED - timedelta(days=1))


def gated(maintenance: dict[str, Any], **restarts: Any) -> TradingStackSpec:
    services = [
        {"name": name, "image": f"example/{name}:1", "port": 8000, "replicas": 2} for name in DEFAULT_RESTART_ORDER
    ]
    return TradingStackSpec.model_validate(
        {"services": services, "restarts": {"schedule": "30 4 * * *", **restarts}, "maintenance": maintenance}
    )


def freeze(start: datetime, end: datetime, reason: str = "year-end close") -> dict[str, Any]:
    return {"start": start.isoformat(), "end": end.isoformat(), "reason": reason}


class Ticker:
    """The wiring of test_restart_planner.Operator, with the override and degraded flag as inputs."""

    def __init__(self, spec: TradingStackSpec, status: RestartsStatus = YESTERDAY) -> None:
        self.spec, self.status, self.cluster = spec, status, Cluster.settled()
        self.trigger: str | None = None
        self.override: Override | None = None

    def tick(self, now: datetime) -> RestartStep:
        step = plan_restart_step(
            self.spec,
            self.status,
            degraded=False,
            trigger=self.trigger,
            deployments=self.cluster.deployments.values(),
            now=now,
            override=self.override,
        )
        self.status = step.status
        if isinstance(step.decision, Stamp):
            self.cluster.stamp(step.decision.service, step.decision.run_id)
        self.cluster.roll()
        return step

    def ticks(self, start: datetime, end: datetime) -> list[RestartStep]:
        steps, now = [], start
        while now < end:
            steps.append(self.tick(now))
            now += TICK
        return steps


def test_a_restart_schedule_inside_a_freeze_does_not_run() -> None:
    ticker = Ticker(gated({"freezes": [freeze(SCHEDULED - timedelta(hours=1), SCHEDULED + timedelta(hours=3))]}))
    steps = ticker.ticks(SCHEDULED - timedelta(minutes=1), SCHEDULED + timedelta(hours=2))
    assert stamps(steps) == []
    assert all(d.restarted_at == "20261125T043000Z" for d in ticker.cluster.deployments.values())
    held = [step.decision for step in steps if isinstance(step.decision, Hold)]
    assert held and all(h.run_id == RUN for h in held)
    assert held[0].reason == "frozen until 2026-11-26T07:30:00+00:00 (year-end close)"
    assert held[0].event is not None and held[0].event.reason == "RestartHeld"
    assert all(h.event is None for h in held[1:])  # one Event, not one per tick
    # An hour after the scheduled time (windowMinutes 60) the run is skipped, once, naming the freeze.
    skips = [step.decision for step in steps if isinstance(step.decision, Skip)]
    assert len(skips) == 1 and skips[0].run_id == RUN
    assert skips[0].event.event_type == "Warning" and skips[0].event.reason == "RestartSkipped"
    assert "year-end close" in skips[0].reason and "restarts.windowMinutes (60)" in skips[0].reason
    assert ticker.status.last_run == SCHEDULED and ticker.status.last_result == "Skipped"
    assert ticker.status.held is None
    assert isinstance(steps[-1].decision, Idle)
    # The next day's run, after the freeze, runs.
    steps = ticker.ticks(SCHEDULED + timedelta(days=1), SCHEDULED + timedelta(days=1, minutes=10))
    assert stamps(steps) == list(DEFAULT_RESTART_ORDER)


def test_a_run_due_outside_the_windows_waits_and_starts_when_the_window_opens() -> None:
    # The window opens at 05:00 UTC, 30 minutes after the 04:30 run: inside its 60-minute catch-up window.
    opening = SCHEDULED + timedelta(minutes=30)
    ticker = Ticker(gated({"windows": [{"schedule": "0 5 * * *", "durationMinutes": 60}]}))
    before = ticker.ticks(SCHEDULED, opening)
    assert stamps(before) == [] and all(isinstance(step.decision, Hold) for step in before)
    first = before[0].decision
    assert isinstance(first, Hold) and first.run_id == RUN and first.reason == "outside the maintenance windows"
    assert first.deadline == SCHEDULED + timedelta(hours=1)
    assert ticker.status.held == SCHEDULED and ticker.status.last_run == SCHEDULED - timedelta(days=1)
    opened = ticker.tick(opening)
    assert isinstance(opened.decision, Stamp) and opened.decision.run_id == RUN
    assert opened.status.held is None and opened.status.last_run == SCHEDULED  # the run keeps its scheduled id
    steps = ticker.ticks(opening + TICK, opening + timedelta(minutes=20))
    assert any(isinstance(step.decision, Finish) for step in steps)
    assert all(d.restarted_at == RUN for d in ticker.cluster.deployments.values())


def test_a_run_whose_window_opens_after_the_catch_up_window_is_skipped() -> None:
    # The window opens at 06:00, 90 minutes after 04:30: windowMinutes 60 has passed by then.
    ticker = Ticker(gated({"windows": [{"schedule": "0 6 * * *", "durationMinutes": 60}]}))
    steps = ticker.ticks(SCHEDULED, SCHEDULED + timedelta(hours=2))
    assert stamps(steps) == []
    skip = next(step for step in steps if isinstance(step.decision, Skip))
    assert isinstance(skip.decision, Skip) and "outside the maintenance windows" in skip.decision.reason
    assert skip.status.last_result == "Skipped" and skip.status.last_run == SCHEDULED
    # Skipped when the catch-up window ended (the first tick after 05:30), not when the window opened.
    first_after = SCHEDULED + timedelta(hours=1)
    assert steps.index(skip) == int((first_after - SCHEDULED) / TICK) + 1


def test_a_run_in_progress_is_not_interrupted_when_the_window_closes() -> None:
    # A 5-minute window from 04:30: the run needs longer than that, and finishes.
    ticker = Ticker(gated({"windows": [{"schedule": "30 4 * * *", "durationMinutes": 5}]}))
    steps = ticker.ticks(SCHEDULED, SCHEDULED + timedelta(minutes=20))
    assert stamps(steps) == list(DEFAULT_RESTART_ORDER)
    assert any(isinstance(step.decision, Finish) for step in steps)
    assert ticker.status.last_result == "Succeeded"


def test_a_freeze_starting_mid_run_does_not_interrupt_it() -> None:
    start = SCHEDULED + timedelta(minutes=1)
    ticker = Ticker(gated({"freezes": [freeze(start, start + timedelta(days=1))]}))
    steps = ticker.ticks(SCHEDULED, SCHEDULED + timedelta(minutes=20))
    assert stamps(steps) == list(DEFAULT_RESTART_ORDER)


def test_a_manual_trigger_is_not_gated() -> None:
    frozen = gated({"freezes": [freeze(SCHEDULED - timedelta(days=1), SCHEDULED + timedelta(days=1))]})
    ticker = Ticker(frozen)
    ticker.trigger = "please"
    first = ticker.tick(SCHEDULED + timedelta(hours=6))
    assert isinstance(first.decision, Stamp) and first.decision.run_id == manual_run_id("please")


def test_a_manual_trigger_covers_a_held_run() -> None:
    ticker = Ticker(gated({"windows": [{"schedule": "0 22 * * *", "durationMinutes": 60}]}))
    assert isinstance(ticker.tick(SCHEDULED).decision, Hold)
    ticker.trigger = "now"
    started = ticker.tick(SCHEDULED + TICK)
    assert isinstance(started.decision, Stamp) and started.status.held is None
    steps = ticker.ticks(SCHEDULED + 2 * TICK, SCHEDULED + timedelta(hours=2))
    assert not any(isinstance(step.decision, Skip | Hold) for step in steps)


def test_a_fresh_apply_now_override_opens_maintenance_for_the_scheduled_run() -> None:
    frozen = gated({"freezes": [freeze(SCHEDULED - timedelta(days=1), SCHEDULED + timedelta(days=1))]})
    ticker = Ticker(frozen)
    assert isinstance(ticker.tick(SCHEDULED).decision, Hold)
    ticker.override = Override(SCHEDULED + timedelta(minutes=10), "hotfix")
    assert isinstance(ticker.tick(SCHEDULED + timedelta(minutes=10)).decision, Stamp)
    stale = Ticker(frozen)
    stale.override = Override(SCHEDULED - timedelta(hours=2), "yesterday's hotfix")
    assert isinstance(stale.tick(SCHEDULED).decision, Hold)


def test_without_maintenance_nothing_is_held() -> None:
    ticker = Ticker(gated({}))
    assert isinstance(ticker.tick(SCHEDULED).decision, Stamp)
    assert ticker.status.held is None


def test_a_held_run_is_skipped_when_restarts_are_disabled_meanwhile() -> None:
    spec = gated({"windows": [{"schedule": "0 22 * * *", "durationMinutes": 60}]})
    ticker = Ticker(spec)
    assert isinstance(ticker.tick(SCHEDULED).decision, Hold)
    ticker.spec = spec.model_copy(update={"restarts": spec.restarts.model_copy(update={"enabled": False})})
    step = ticker.tick(SCHEDULED + TICK)
    assert isinstance(step.decision, Skip) and "disabled or suspended" in step.decision.reason
    assert step.status.held is None


def test_a_run_moved_by_spring_forward_waits_for_a_window_in_its_zone() -> None:
    # The spring-forward day in Oslo: a 02:30 restart (held to 03:00 CEST) in a window opening at 03:15 local.
    spec = gated(
        {"windows": [{"schedule": "15 3 * * *", "durationMinutes": 30, "timeZone": "Europe/Oslo"}]},
        schedule="30 2 * * *",
        timeZone="Europe/Oslo",
    )
    ticker = Ticker(spec, RestartsStatus(last_run=datetime(2026, 3, 28, 1, 30, tzinfo=UTC)))
    steps = ticker.ticks(datetime(2026, 3, 29, 0, 55, tzinfo=UTC), datetime(2026, 3, 29, 1, 30, tzinfo=UTC))
    holds = [step.decision for step in steps if isinstance(step.decision, Hold)]
    assert holds and holds[0].run_id == "20260329T010000Z"  # 03:00 CEST, the end of the gap
    assert stamps(steps)[0] == DEFAULT_RESTART_ORDER[0]
    first_stamp = next(step for step in steps if isinstance(step.decision, Stamp))
    assert first_stamp.status.last_run == datetime(2026, 3, 29, 1, tzinfo=UTC)
    assert first_stamp.status.stamped_at == datetime(2026, 3, 29, 1, 15, tzinfo=UTC)  # held until 03:15 CEST
