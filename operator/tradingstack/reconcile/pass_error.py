"""What a pass that ended in an unexpected exception (a bug: not an API error) leaves visible, and when it is
tried again. Pure: `StackReconciler` reads the live status and carries out the actions planned here; the stack's
daemon (`handlers.run_stack`) asks `after_error` how long to wait.

The stack gets `Degraded=True` with reason `ReconcileError` and a short message naming the exception (its type
and the first line of its message, with anything shaped like a credential masked), phase `Degraded`, and one
Warning Event `ReconcileError` per distinct error: a retry failing the same way writes nothing. The next pass
that succeeds computes the whole status again (`reconcile.status.compute_status`), which replaces the condition.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from tradingstack.api import TradingStackStatus
from tradingstack.components.assess import ConditionUpdate
from tradingstack.errors import ApiPermanentError, ApiTemporaryError
from tradingstack.kube.actions import Action, PostEvent, WriteStatus
from tradingstack.logs import MASK, mask_text
from tradingstack.reconcile.plan import status_document
from tradingstack.reconcile.status import set_condition

REASON = "ReconcileError"
"""The Degraded condition's reason and the Warning Event's."""
INTERNAL = "InternalError"
"""The reconcile-errors metric's reason for an unexpected exception."""
MESSAGE_LIMIT = 200
"""Characters of the exception's message kept: enough to recognise it, too few to carry a document."""

_PEM = re.compile(r"-----BEGIN [A-Z ]+-----.*?(-----END [A-Z ]+-----|$)", re.DOTALL)
_TOKEN = re.compile(r"[A-Za-z0-9+_=-]{16,}")
"""A run that may be base64 (a Secret's `data`, a PEM body) or a generated password: masked when it mixes
upper and lower case letters and digits, which Kubernetes names (lower case) and words never do. Not across
a `/`, so `Deployment/quantum-trader-api2` stays readable (a base64 run is cut there into pieces, each masked)."""
_HEX = re.compile(r"\b[0-9a-fA-F]{32,}\b")


def _masked_token(match: re.Match[str]) -> str:
    token = match.group(0)
    mixed = any(c.isupper() for c in token) and any(c.islower() for c in token) and any(c.isdigit() for c in token)
    return MASK if mixed else token


def describe_error(error: BaseException) -> str:
    """`<type>: <first line of the message>`, masked and cut to `MESSAGE_LIMIT`. Only the first line: later
    lines of a message are where documents go (a pydantic error's input values, a dumped object). Masked: URL
    passwords and `key=value` credentials (as the logs are), PEM blocks, long base64-looking and hex runs."""
    text = _PEM.sub(MASK, str(error)).strip()
    first = text.splitlines()[0] if text else ""
    first = _HEX.sub(MASK, _TOKEN.sub(_masked_token, mask_text(first)))
    if len(first) > MESSAGE_LIMIT:
        first = first[: MESSAGE_LIMIT - 3] + "..."
    name = type(error).__name__
    return f"{name}: {first}" if first else name


def _reported(previous: TradingStackStatus) -> str | None:
    """The message of the ReconcileError the status already shows, if it does."""
    degraded = next((c for c in previous.conditions if c.type == "Degraded"), None)
    if degraded is not None and degraded.status == "True" and degraded.reason == REASON:
        return degraded.message
    return None


def error_status(previous: TradingStackStatus, message: str, generation: int, now: datetime) -> TradingStackStatus:
    """`previous` with Degraded=True ReconcileError and phase Degraded; everything else as it was (what the
    failed pass did not get to observe is not guessed)."""
    conditions = set_condition(
        list(previous.conditions), "Degraded", ConditionUpdate("True", REASON, message), now, generation
    )
    return previous.model_copy(update={"phase": "Degraded", "conditions": sorted(conditions, key=lambda c: c.type)})


def plan_error_report(
    namespace: str, name: str, previous: TradingStackStatus, message: str, generation: int, now: datetime
) -> list[Action]:
    """The status write and Warning Event for a pass that failed with `message` (`describe_error`), given the
    live status `previous`; nothing when that status already reports the same error."""
    if _reported(previous) == message:
        return []
    status = error_status(previous, message, generation, now)
    return [WriteStatus(namespace, name, status_document(status)), PostEvent("Warning", REASON, message)]


@dataclass(frozen=True)
class Retry:
    """What the stack's daemon does after a failed pass."""

    reason: str
    """The reconcile-errors metric's label."""
    delay: float | None
    """Seconds until the next pass; None: the usual resync (or a change wakes it)."""
    backoff: float
    """The backoff of the next failure."""
    internal: bool
    """An unexpected exception (a bug): logged with its traceback, once per distinct error."""


def after_error(error: Exception, backoff: float, cap: float) -> Retry:
    """Temporary API errors and unexpected exceptions are retried with exponential backoff (`backoff`, doubled
    each time, at most `cap`; a temporary error's own delay is a floor); a permanent API error waits for a
    change or the resync. `error` is an `Exception`: cancellation (kopf stopping the daemon) never gets here."""
    doubled = min(backoff * 2, cap)
    if isinstance(error, ApiTemporaryError):
        return Retry(type(error).__name__, min(max(error.delay, backoff), cap), doubled, internal=False)
    if isinstance(error, ApiPermanentError):
        return Retry(type(error).__name__, None, backoff, internal=False)
    return Retry(INTERNAL, min(backoff, cap), doubled, internal=True)
