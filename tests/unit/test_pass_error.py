"""The pure side of a pass that failed with an unexpected exception (`reconcile.pass_error`): the message shown,
the status and Event planned from the previous status, and the daemon's retry decision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tradingstack.api import Condition, TradingStackStatus
from tradingstack.errors import ApiPermanentError, ApiTemporaryError, NotLeaderError
from tradingstack.kube.actions import PostEvent, WriteStatus
from tradingstack.reconcile.pass_error import (
    INTERNAL,
    MESSAGE_LIMIT,
    REASON,
    after_error,
    describe_error,
    error_status,
    plan_error_report,
)

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
EARLIER = NOW - timedelta(hours=1)
GENERATED = "Zq3xT9vLk2PmW8rB5nYc1HdF4gJs6AeU"  # the shape of a generated password (token_urlsafe(24))


def ready_status() -> TradingStackStatus:
    return TradingStackStatus(
        observed_generation=3,
        phase="Ready",
        conditions=[
            Condition(type="Degraded", status="False", reason="AsExpected", last_transition_time=EARLIER),
            Condition(type="Ready", status="True", reason="AllComponentsReady", last_transition_time=EARLIER),
        ],
        ready_summary="5/5",
    )


def degraded(status: TradingStackStatus) -> Condition:
    return next(c for c in status.conditions if c.type == "Degraded")


def test_the_message_names_the_type_and_the_first_line() -> None:
    error = ValueError("Attribute's length must be >= 1 and <= 64, but it was 70\nsecond line: a dumped document")
    assert describe_error(error) == "ValueError: Attribute's length must be >= 1 and <= 64, but it was 70"
    assert describe_error(KeyError("tls.crt")) == "KeyError: 'tls.crt'"
    assert describe_error(RuntimeError()) == "RuntimeError"


def test_a_long_message_is_cut() -> None:
    described = describe_error(ValueError("x" * 5000))
    assert len(described) == len("ValueError: ") + MESSAGE_LIMIT and described.endswith("...")


@pytest.mark.parametrize(
    "message",
    [
        f"could not connect to postgresql://trader:{GENERATED}@quantum-trader-postgres:5432/trading",
        f"bad value password={GENERATED}",
        f"unexpected Secret data {{'password': '{GENERATED}'}}",
        f"unexpected key {GENERATED}",
        "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIB0\n-----END EC PRIVATE KEY-----",
        "key 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 not found",
        "data " + "TUhjQ0FRRUVJQjBhYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3ODk=",
    ],
)
def test_what_looks_like_a_credential_is_masked(message: str) -> None:
    described = describe_error(ValueError(message))
    assert "***" in described
    assert GENERATED not in described and "MHcCAQEEIB0" not in described and "9f86d081884c7d659a2f" not in described
    assert "TUhjQ0FRRUVJQjBh" not in described


def test_names_stay_readable() -> None:
    message = "Deployment/quantum-trader-api2 in namespace trading-desk-2: revision 3f9c0a1b2e"
    assert describe_error(ValueError(message)) == f"ValueError: {message}"


def test_the_status_becomes_degraded_with_the_error_and_keeps_the_rest() -> None:
    previous = ready_status()
    status = error_status(previous, "ValueError: boom", 4, NOW)
    condition = degraded(status)
    assert (condition.status, condition.reason, condition.message) == ("True", REASON, "ValueError: boom")
    assert condition.last_transition_time == NOW and condition.observed_generation == 4
    assert status.phase == "Degraded"
    # What the failed pass did not observe is left as it was, the generation it did not complete included.
    assert status.observed_generation == 3 and status.ready_summary == "5/5"
    assert next(c for c in status.conditions if c.type == "Ready") == previous.conditions[1]


def test_a_new_error_writes_the_status_then_one_warning_event() -> None:
    actions = plan_error_report("trading", "qt", ready_status(), "ValueError: boom", 4, NOW)
    assert [type(a) for a in actions] == [WriteStatus, PostEvent]
    write, event = actions
    assert isinstance(write, WriteStatus) and (write.namespace, write.name) == ("trading", "qt")
    assert write.document["phase"] == "Degraded"
    assert {"type": "Degraded", "status": "True", "reason": REASON, "message": "ValueError: boom"}.items() <= next(
        c for c in write.document["conditions"] if c["type"] == "Degraded"
    ).items()
    assert event == PostEvent("Warning", REASON, "ValueError: boom")


def test_the_same_error_again_plans_nothing_and_another_error_is_reported() -> None:
    reported = error_status(ready_status(), "ValueError: boom", 4, NOW)
    assert plan_error_report("trading", "qt", reported, "ValueError: boom", 4, NOW + timedelta(seconds=8)) == []
    other = plan_error_report("trading", "qt", reported, "KeyError: 'x'", 4, NOW + timedelta(seconds=8))
    assert [type(a) for a in other] == [WriteStatus, PostEvent]
    condition = next(c for c in other[0].document["conditions"] if c["type"] == "Degraded")  # type: ignore[union-attr]
    assert condition["message"] == "KeyError: 'x'"
    assert condition["lastTransitionTime"] == NOW.isoformat().replace("+00:00", "Z")  # still True: kept


def test_a_stack_without_status_gets_one() -> None:
    actions = plan_error_report("trading", "qt", TradingStackStatus(), "ValueError: boom", 1, NOW)
    assert [type(a) for a in actions] == [WriteStatus, PostEvent]


def test_unexpected_errors_back_off_like_temporary_ones_up_to_the_cap() -> None:
    delays, backoff = [], 1.0
    for _ in range(12):
        retry = after_error(ValueError("boom"), backoff, 300.0)
        assert retry.reason == INTERNAL and retry.internal
        delays.append(retry.delay)
        backoff = retry.backoff
    assert delays == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]


def test_api_errors_keep_their_handling() -> None:
    temporary = after_error(ApiTemporaryError("503", delay=5), 1.0, 300.0)
    assert (temporary.reason, temporary.delay, temporary.backoff, temporary.internal) == (
        "ApiTemporaryError", 5, 2, False,
    )  # fmt: skip
    assert after_error(NotLeaderError("not the leader", delay=1), 4.0, 300.0).reason == "NotLeaderError"
    permanent = after_error(ApiPermanentError("403 Forbidden", 403), 8.0, 300.0)
    assert (permanent.reason, permanent.delay, permanent.backoff, permanent.internal) == (
        "ApiPermanentError", None, 8.0, False,
    )  # fmt: skip
