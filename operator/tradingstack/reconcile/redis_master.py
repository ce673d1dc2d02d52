"""Which Redis pod carries the master label, and whether a failover happened: a pure decision.

The caller observes the sentinels (`tradingstack.redisclient.observe_master`, read-only queries) and lists the
Redis pods with the pods currently labelled `trading.quantumtrader.dev/redis-role=master`; this module says
what to change. Sentinel owns failover: the operator only follows it. When the sentinels do not agree on a
master (mid-failover, partition, sentinels down) the decision is to change nothing at all, so the operator
can never point the master Service at a server that Sentinel has not promoted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from tradingstack.api.status import RedisStatus
from tradingstack.contract import MASTER_ROLE, Label
from tradingstack.contract.sentinel import MasterObservation
from tradingstack.kube.actions import Action, PatchLabels, PostEvent

FAILOVER_REASON = "RedisFailover"
MASTER_OBSERVED_REASON = "RedisMasterObserved"


@dataclass(frozen=True)
class MasterDecision:
    """What to apply; with `changed` False there is nothing to send to the API server."""

    label: str | None
    """Pod to label as master (None: it already carries the label, or nothing may change)."""

    unlabel: tuple[str, ...]
    """Pods that carry the master label but are not the master."""

    status: RedisStatus
    """Value for status.redis (the recorded one when nothing changed)."""

    event: PostEvent | None
    """Event to post on the TradingStack."""

    explanation: str
    """Why, for the operator's log."""

    @property
    def changed(self) -> bool:
        return self.label is not None or bool(self.unlabel) or self.event is not None


def _no_action(recorded: RedisStatus, explanation: str) -> MasterDecision:
    return MasterDecision(label=None, unlabel=(), status=recorded, event=None, explanation=explanation)


def decide_master(
    observation: MasterObservation,
    recorded: RedisStatus,
    pods: Sequence[str],
    labelled: Sequence[str],
    now: datetime,
) -> MasterDecision:
    """Follow the master the sentinels agree on.

    `pods`: names of the Redis pods that exist; `labelled`: those carrying the master label; `now`: the time
    recorded as lastFailover when the master changed.
    """
    if observation.master is None:
        return _no_action(recorded, f"no action: {observation.describe()}")
    master = observation.master.pod_name
    if master not in pods:
        return _no_action(recorded, f"no action: {observation.describe()}, which is not a Redis pod of this stack")

    label = None if master in labelled else master
    unlabel = tuple(sorted(pod for pod in labelled if pod != master))
    if recorded.master == master:
        return MasterDecision(label, unlabel, recorded, None, f"{master} is still the master")
    if recorded.master is None:
        event = PostEvent("Normal", MASTER_OBSERVED_REASON, f"Redis master is {master} ({observation.describe()})")
        return MasterDecision(label, unlabel, RedisStatus(master=master), event, event.message)
    event = PostEvent(
        "Warning",
        FAILOVER_REASON,
        f"Redis master changed from {recorded.master} to {master} ({observation.describe()})",
    )
    return MasterDecision(label, unlabel, RedisStatus(master=master, last_failover=now), event, event.message)


def master_actions(decision: MasterDecision, namespace: str) -> list[Action]:
    """The writes of a decision, in order: label the master, unlabel the others, then the Event."""
    actions: list[Action] = []
    if decision.label is not None:
        actions.append(PatchLabels("Pod", decision.label, namespace, {Label.REDIS_ROLE: MASTER_ROLE}))
    actions += [PatchLabels("Pod", pod, namespace, {Label.REDIS_ROLE: None}) for pod in decision.unlabel]
    if decision.event is not None:
        actions.append(decision.event)
    return actions
