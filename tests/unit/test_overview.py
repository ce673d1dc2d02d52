"""`tradingstack status`: the one-screen text from a status and its Warning Events (pure, golden)."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.golden import assert_golden
from tests.unit.test_metrics import status
from tradingstack.api.status import HaltStatus, RolloutStatus
from tradingstack.overview import overview_document, overview_text
from tradingstack.reconcile.restarts import HALTED


def test_the_overview_of_a_stack_with_a_failed_backup_and_a_warning() -> None:
    body = {
        "metadata": {"namespace": "trading", "name": "qt"},
        "status": status("qt-redis-1", health="DEGRADED").model_dump(mode="json", by_alias=True, exclude_none=True),
    }
    warnings = [
        {"reason": "ApplyFailed", "message": f"Deployment/qt-{i}: refused", "lastTimestamp": f"2026-12-02T0{i}:00:00Z"}
        for i in range(7)
    ]
    document = overview_document(body, warnings)
    assert [w["message"] for w in document["warnings"]] == [f"Deployment/qt-{i}: refused" for i in range(2, 7)]
    assert_golden("overview.txt", overview_text(document, datetime(2026, 12, 2, 6, 30, tzinfo=UTC)))


def test_the_overview_lists_the_rollouts_that_are_not_idle() -> None:
    stored = status("qt-redis-1").model_copy(
        update={
            "rollouts": {
                "api": RolloutStatus(current_revision="a1", last_good_revision="a1"),
                "risk": RolloutStatus(
                    current_revision="a1", target_revision="b2", bad_revision="b2", step="RolledBack", message="why"
                ),
            }
        }
    )
    body = {"metadata": {"namespace": "trading", "name": "qt"}, "status": stored.model_dump(mode="json", by_alias=True)}
    text = overview_text(overview_document(body, []), datetime(2026, 12, 2, 6, 30, tzinfo=UTC))
    assert "Rollouts\n  risk: RolledBack b2 (runs a1): why\n" in text and "  api:" not in text


def test_the_overview_of_a_halted_stack_leads_with_the_halt() -> None:
    halted = status("qt-redis-1").model_copy(
        update={
            "halt": HaltStatus(since=datetime(2026, 12, 2, 6, 0, tzinfo=UTC), by="alice", reason="runaway orders",
                               services=["execution"]),
        }
    )  # fmt: skip
    halted = halted.model_copy(update={"restarts": halted.restarts.model_copy(update={"paused": HALTED})})
    body = {"metadata": {"namespace": "trading", "name": "qt"},
            "status": halted.model_dump(mode="json", by_alias=True, exclude_none=True)}  # fmt: skip
    text = overview_text(overview_document(body, []), datetime(2026, 12, 2, 6, 30, tzinfo=UTC))
    lines = text.splitlines()
    assert lines[1] == "  HALTED since 2026-12-02 06:00:00Z (30m ago) by alice: runaway orders"
    assert lines[2] == "    stopped, egress cut: execution"
    assert f"  paused: {HALTED}" in lines
